"""The pyfunc flavour of a model package: decoding, preprocessing parity, prediction, logging."""

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import (
    CHAMPION_URI,
    COARSE_LABELS,
    LABELS,
    PACKAGE_LIMITS,
    SRC,
    champion_registry,
    declared_png,
    forbid_pixel_decoding,
    sample_images,
    write_package,
)
from mlflow.exceptions import MlflowException
from PIL import Image

from prodcls_pipeline.data.preprocessing import Preprocessing, eval_transform
from prodcls_pipeline.release import package as packaging
from prodcls_serving import model as serving
from prodcls_serving.files import MODEL_FILE
from prodcls_serving.inputs import ImageInputError, read_image
from prodcls_serving.model import ModelPackage
from prodcls_serving.preprocessing import preprocess

RED, GREEN, BLUE = (220, 20, 20), (20, 220, 20), (20, 20, 220)


@pytest.fixture(scope="module")
def registry(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with champion_registry(tmp_path_factory.mktemp("registry")) as uri:
        yield uri


@pytest.fixture(scope="module")
def model(registry: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(CHAMPION_URI)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def colour_png(tmp_path: Path, make_image, colour: tuple[int, int, int], **kwargs: Any) -> bytes:
    name = "-".join(str(channel) for channel in colour)
    return make_image(tmp_path / f"{name}.png", color=colour, **kwargs).read_bytes()


def test_read_image_takes_paths_bytes_base64_and_data_uris(tmp_path: Path, make_image) -> None:
    path = make_image(tmp_path / "red.png", color=RED, size=(40, 30))
    data = path.read_bytes()
    items = [
        path,
        str(path),
        data,
        b64(data),
        base64.encodebytes(data).decode("ascii"),  # MIME style, with line breaks
        f"data:image/png;base64,{b64(data)}",
    ]
    for item in items:
        image = read_image(item)
        assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (40, 30), RED)


def test_read_image_is_upright_and_flattens_transparency(tmp_path: Path, make_image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: the stored 40×30 pixels show a 30×40 photo
    rotated = make_image(tmp_path / "rotated.jpg", size=(40, 30), exif=exif)
    transparent = make_image(tmp_path / "clear.png", color=(0, 0, 0, 0), mode="RGBA")

    assert read_image(rotated).size == (30, 40)
    assert read_image(transparent).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b"%PDF-1.7 not a photo", "not a decodable image"),
        (b"", "empty"),
        (b64(b"plain text, validly encoded"), "not a decodable image"),
        ("photos/missing.jpg", "neither an existing file nor base64"),
        ("data:image/png,rawbytes", "a data URI, but not one of base64 data"),
        (Path("photos/missing.jpg"), "cannot read the file (No such file or directory)"),
        (None, "expected a path, bytes or base64 str, got NoneType"),
    ],
)
def test_read_image_names_the_bad_item(item: Any, reason: str) -> None:
    with pytest.raises(ImageInputError, match="^image 3 ") as caught:
        read_image(item, index=3)
    assert reason in str(caught.value) and caught.value.reason.startswith(reason)


def test_a_long_bad_item_is_truncated_in_the_message(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a photo")
    with pytest.raises(ImageInputError) as caught:
        read_image("A" * 100_000)  # valid base64 of bytes that are no image
    message = str(caught.value)
    assert len(message) < 200 and "(100000 characters)" in message
    with pytest.raises(ImageInputError, match="notes.txt"):
        read_image(str(text_file))


@pytest.mark.parametrize(
    ("resize_size", "input_size"),
    [(150, 128), (297, 260)],  # downscale, and the Lite2 upscale
)
@pytest.mark.parametrize("transpose", [False, True], ids=["portrait", "landscape"])
def test_preprocessing_matches_the_training_transform(
    sample_dir: Path, resize_size: int, input_size: int, transpose: bool
) -> None:
    portrait = next(
        path for path in sorted(sample_dir.rglob("*.jpg")) if Image.open(path).height > 300
    )
    image = read_image(portrait)
    if transpose:
        image = image.transpose(Image.Transpose.TRANSPOSE)
    training = Preprocessing(
        input_size=input_size,
        resize_size=resize_size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    spec = packaging.preprocessing_spec(
        training.to_dict(), {"input_dtype": "float32"}, PACKAGE_LIMITS
    )

    served = preprocess(image, spec)
    expected = eval_transform(training)(image).numpy()

    assert served.shape == expected.shape == (3, input_size, input_size)
    assert served.dtype == np.float32
    difference = np.abs(served - expected)
    # Measured: mean 7e-5, max 2 grey levels (PIL's and torch's bicubic kernels differ).
    assert difference.mean() < 1e-3 and difference.max() < 3 / 255 / min(training.std)


def test_pyfunc_predicts_labels_coarse_labels_and_probabilities(
    model: mlflow.pyfunc.PyFuncModel, tmp_path: Path, make_image
) -> None:
    images = [b64(colour_png(tmp_path, make_image, colour)) for colour in (BLUE, RED, GREEN)]

    predictions = model.predict(pd.DataFrame({"image": images}))

    assert list(predictions.columns) == ["label", "coarse_label", "probability", "top_k"]
    assert predictions["label"].tolist() == ["blue", "red", "green"]
    coarse = dict(zip(LABELS, COARSE_LABELS, strict=True))
    assert predictions["coarse_label"].tolist() == [
        coarse[label] for label in ("blue", "red", "green")
    ]
    for row in predictions.itertuples():
        ranked = [entry["probability"] for entry in row.top_k]
        assert len(row.top_k) == len(LABELS)  # the default of 5, capped at the classes
        assert row.top_k[0] == {"label": row.label, "probability": row.probability}
        assert ranked == sorted(ranked, reverse=True)
        assert sum(ranked) == pytest.approx(1.0)
        assert 1 / len(LABELS) < row.probability < 1


def test_pyfunc_takes_top_k_and_real_photos(model: mlflow.pyfunc.PyFuncModel) -> None:
    photos = [b64(path.read_bytes()) for path in sample_images(2)]

    predictions = model.predict(pd.DataFrame({"image": photos}), params={"top_k": 2})

    assert predictions["label"].isin(LABELS).all()
    assert [len(top) for top in predictions["top_k"]] == [2, 2]
    assert all(0 < top[1]["probability"] <= top[0]["probability"] for top in predictions["top_k"])


def test_pyfunc_never_reads_a_path_it_is_sent(model: mlflow.pyfunc.PyFuncModel) -> None:
    photo = sample_images(1)[0]
    for item in (str(photo.resolve()), photo):
        with pytest.raises(MlflowException) as caught:
            model.unwrap_python_model().predict(None, [item])
        assert caught.value.get_http_status_code() == 400
        assert "the served model reads no files" in caught.value.message


def test_pyfunc_rejects_a_non_image_with_a_400_error(model: mlflow.pyfunc.PyFuncModel) -> None:
    photo = b64(sample_images(1)[0].read_bytes())
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame({"image": [photo, b64(b"GIF89a but truncated")]}))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.get_http_status_code() == 400
    assert "image 1 (" in caught.value.message


def test_python_model_also_takes_a_list_or_one_item(
    model: mlflow.pyfunc.PyFuncModel, tmp_path: Path, make_image
) -> None:
    # MLflow's schema check wants a DataFrame; the model itself also takes plain values.
    python_model = model.unwrap_python_model()
    red = colour_png(tmp_path, make_image, RED)

    assert python_model.predict(None, [red, b64(red)])["label"].tolist() == ["red", "red"]
    assert python_model.predict(None, red)["label"].tolist() == ["red"]


def test_predictions_do_not_depend_on_the_batch_size(
    tmp_path: Path, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = ModelPackage.load(write_package(tmp_path / "package"))
    images = [colour_png(tmp_path, make_image, colour) for colour in (RED, GREEN, BLUE, RED, BLUE)]
    whole = package.predict(images)

    monkeypatch.setattr(serving, "BATCH_SIZE", 2)
    pd.testing.assert_frame_equal(package.predict(images), whole)
    assert package.predict([]).empty


def test_logged_model_pins_its_requirements_and_carries_its_code(registry: str) -> None:
    # champion_registry also checks that logging opened no network connection.
    local = Path(mlflow.artifacts.download_artifacts(CHAMPION_URI))
    requirements = (local / "requirements.txt").read_text().split()
    model_info = mlflow.models.get_model_info(CHAMPION_URI)

    assert sorted(name.split("==")[0] for name in requirements) == [
        "mlflow",
        "numpy",
        "onnxruntime",
        "pandas",
        "pillow",
    ]
    assert all("==" in requirement for requirement in requirements)
    assert (local / "artifacts" / "package" / MODEL_FILE).is_file()
    assert model_info.signature.params.to_dict() == [
        {"name": "top_k", "default": 5, "shape": None, "type": "long"}
    ]
    assert model_info.saved_input_example_info["type"] == "dataframe"


def test_the_logged_code_is_the_serving_package_alone(registry: str) -> None:
    code = Path(mlflow.artifacts.download_artifacts(CHAMPION_URI)) / "code"
    package = SRC / "prodcls_serving"

    assert [path.name for path in code.iterdir()] == ["prodcls_serving"]
    logged = {
        path.relative_to(code / "prodcls_serving") for path in code.rglob("*") if path.is_file()
    }
    assert logged == {path.relative_to(package) for path in package.rglob("*.py")}


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (8000, 8000, "too many pixels (8000×8000 > 40000000)"),
        (4000, 100, "aspect ratio too extreme (4000×100, 40.0:1 > 20:1)"),
    ],
)
def test_pyfunc_refuses_an_image_beyond_the_package_limits_before_decoding_it(
    model: mlflow.pyfunc.PyFuncModel,
    monkeypatch: pytest.MonkeyPatch,
    width: int,
    height: int,
    reason: str,
) -> None:
    forbid_pixel_decoding(monkeypatch)
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame({"image": [b64(declared_png(width, height))]}))
    assert caught.value.get_http_status_code() == 400
    assert caught.value.message.startswith("image 0 (") and caught.value.message.endswith(reason)


def test_a_package_carries_the_limits_it_serves_under(tmp_path: Path) -> None:
    package = ModelPackage.load(write_package(tmp_path / "package"))
    assert package.limits == PACKAGE_LIMITS


def test_logging_needs_an_active_run(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="active MLflow run"):
        serving.log_pyfunc_model(tmp_path, "model", [])


# A serving client: mlflow and the pinned requirements, nothing of the training stack.
_CLIENT = """
import base64, importlib.abc, json, sys
import mlflow, pandas as pd

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "timm", "sklearn", "onnx", "kedro"}:
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NotInstalled())
images = [base64.b64encode(open(path, "rb").read()).decode("ascii") for path in sys.argv[2:]]
predictions = mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame({"image": images}))
print(json.dumps({
    "labels": predictions["label"].tolist(),
    "serving": sys.modules["prodcls_serving.model"].__file__,
}))
"""


def test_a_client_without_torch_loads_the_logged_code(registry: str, tmp_path: Path) -> None:
    photos = [str(path) for path in sample_images(2)]
    result = subprocess.run(
        [sys.executable, "-c", _CLIENT, CHAMPION_URI, *photos],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        output["labels"]
        == mlflow.pyfunc.load_model(CHAMPION_URI)
        .predict(pd.DataFrame({"image": [b64(Path(photo).read_bytes()) for photo in photos]}))[
            "label"
        ]
        .tolist()
    )
    # The model's own copy of the code, not the checkout's.
    assert output["serving"].endswith("code/prodcls_serving/model.py")
    assert not output["serving"].startswith(str(Path(serving.__file__).parent))
