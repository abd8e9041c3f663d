"""`prodcls predict` against a champion registered in a temporary sqlite registry."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CHAMPION_URI, LABELS, MODEL_NAME, champion_registry, sample_images

from prodcls_pipeline.cli import main


@pytest.fixture(scope="module")
def registry(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The store, also in $MLFLOW_TRACKING_URI for the whole module, as a user would set it."""
    with champion_registry(tmp_path_factory.mktemp("registry")) as uri:
        yield uri


@pytest.fixture
def photos(registry: str) -> list[str]:
    return [str(path) for path in sample_images(2)]


def test_predict_prints_a_table(photos: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", *photos, "--model", CHAMPION_URI]) == 0

    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["image", "label", "probability", "coarse"]
    assert [row.split()[0] for row in rows] == photos
    assert all(row.split()[1] in LABELS and 0 < float(row.split()[2]) <= 1 for row in rows)


def test_predict_json_lists_the_top_k(photos: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", *photos, "--model", CHAMPION_URI, "--json", "--top-k", "2"]) == 0

    predictions = json.loads(capsys.readouterr().out)
    assert [prediction["image"] for prediction in predictions] == photos
    for prediction in predictions:
        assert set(prediction) == {"image", "label", "coarse_label", "probability", "top_k"}
        assert len(prediction["top_k"]) == 2
        assert prediction["top_k"][0] == {
            "label": prediction["label"],
            "probability": prediction["probability"],
        }


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        (lambda folder: folder / "missing.jpg", "No such file or directory"),
        (lambda folder: folder, "Is a directory"),
        (lambda folder: _write(folder / "notes.jpg", b"not a photo"), "not a decodable image"),
    ],
    ids=["missing", "folder", "not an image"],
)
def test_an_unusable_image_exits_2_naming_it(
    photos: list[str], tmp_path: Path, capsys: pytest.CaptureFixture, make_bad, reason: str
) -> None:
    bad = make_bad(tmp_path)

    assert main(["predict", photos[0], str(bad), "--model", CHAMPION_URI]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"prodcls: error: {bad}: ") and reason in captured.err
    assert len(captured.err.splitlines()) == 1


@pytest.mark.parametrize("uri", [f"models:/{MODEL_NAME}@nobody", "models:/no-such-model@champion"])
def test_a_missing_model_or_alias_is_named(
    photos: list[str], uri: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["predict", photos[0], "--model", uri]) == 1

    error = capsys.readouterr().err
    assert error.startswith(f"prodcls: error: Cannot load model {uri} from sqlite:///")
    assert len(error.splitlines()) == 1


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
