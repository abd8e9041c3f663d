"""Reading drops, building the manifest incrementally, and laying datasets out as drops."""

import csv
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from prodcls_pipeline.data import drops
from prodcls_pipeline.data.drops import (
    MANIFEST_COLUMNS,
    DropFile,
    DropFormatError,
    build_manifest,
    layout_drops,
    scan_drops,
)
from prodcls_pipeline.data.images import ImageStore

LIMITS = {"max_side": 32, "max_pixels": 1_000_000, "max_source_bytes": 100_000, "quality": 90}


def manifest_of(root: Path, store: ImageStore) -> pd.DataFrame:
    return build_manifest(root, scan_drops(root), store, **LIMITS)


def write_labels(drop: Path, text: str) -> None:
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "labels.csv").write_text(text)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_folder_tree_drop_with_shallow_and_deep_labels(tmp_path, make_image):
    make_image(tmp_path / "d1" / "apple" / "a.jpg")
    make_image(tmp_path / "d1" / "Fruit" / "Citrus" / "Lime" / "l.png")
    make_image(tmp_path / "d1" / "stray.jpg")
    make_image(tmp_path / "d1" / ".hidden" / "x" / "h.jpg")
    (tmp_path / "d1" / "apple" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".gitkeep").write_text("")
    assert scan_drops(tmp_path) == [
        DropFile("d1", "d1/Fruit/Citrus/Lime/l.png", "Lime", "Citrus", ""),
        DropFile("d1", "d1/apple/a.jpg", "apple", "", ""),
        DropFile(
            "d1", "d1/stray.jpg", "", "", "", problem="no label: file is not inside a label folder"
        ),
    ]


def test_labels_csv_drop(tmp_path, make_image):
    drop = tmp_path / "d2"
    make_image(drop / "img" / "1.jpg")
    make_image(drop / "img" / "2.jpg")
    make_image(drop / "unlisted.jpg")
    write_labels(
        drop, "path,label,split,coarse_label\n./img/1.jpg,Lime,val,Citrus\nimg/2.jpg,Kiwi,,\n"
    )
    assert scan_drops(tmp_path) == [
        DropFile("d2", "d2/img/1.jpg", "Lime", "Citrus", "val"),
        DropFile("d2", "d2/img/2.jpg", "Kiwi", "", ""),
        DropFile("d2", "d2/unlisted.jpg", "", "", "", "no label: file is not listed in labels.csv"),
    ]


def test_labels_csv_with_only_required_columns(tmp_path, make_image):
    make_image(tmp_path / "d" / "x.jpg")
    write_labels(tmp_path / "d", "\ufeffpath,label\r\nx.jpg,Lime\r\n\r\n")
    assert scan_drops(tmp_path) == [DropFile("d", "d/x.jpg", "Lime", "", "")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\nx.jpg,Lime\n", "drop 'd', labels.csv: missing column\\(s\\) path"),
        ("path,label,spilt\nx.jpg,Lime,val\n", "unexpected or repeated column"),
        ("path,label,split\nx.jpg,Lime,holdout\n", "line 2: split 'holdout' is not one of"),
        ("path,label\nx.jpg,Lime\n../escape.jpg,Lime\n", "line 3: path '../escape.jpg' escapes"),
        ("path,label\nmissing.jpg,Lime\n", "line 2: path 'missing.jpg' does not exist"),
        ("path,label\nx.jpg,\n", "line 2: empty label"),
        ("path,label\nx.jpg,Lime,extra\n", "line 2: expected 2 fields"),
        ("path,label\nx.jpg,Lime\n./x.jpg,Kiwi\n", "line 3: 'x.jpg' is listed twice"),
    ],
)
def test_malformed_labels_csv_raises_naming_drop_and_line(tmp_path, make_image, text, message):
    make_image(tmp_path / "d" / "x.jpg")
    make_image(tmp_path / "escape.jpg")
    write_labels(tmp_path / "d", text)
    with pytest.raises(DropFormatError, match=message):
        scan_drops(tmp_path)


def test_manifest_columns_dtypes_and_quarantine_reasons(tmp_path, make_image):
    make_image(tmp_path / "d" / "apple" / "a.jpg", size=(64, 40))
    shutil.copy(tmp_path / "d" / "apple" / "a.jpg", tmp_path / "d" / "apple" / "again.jpg")
    (tmp_path / "d" / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / "apple" / "big.jpg").write_bytes(b"\0" * (LIMITS["max_source_bytes"] + 1))
    make_image(tmp_path / "d" / "orphan.png")
    manifest = manifest_of(tmp_path, ImageStore(tmp_path / "store"))

    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert {column: str(manifest[column].dtype) for column in ("width", "height", "bytes")} == {
        "width": "int64",
        "height": "int64",
        "bytes": "int64",
    }
    assert all(pd.api.types.is_string_dtype(manifest[c]) for c in ("sha256", "label", "status"))
    rows = manifest.set_index("source_path")
    good = rows.loc["d/apple/a.jpg"]
    assert (good.width, good.height, good.format, good.status) == (64, 40, "JPEG", "ok")
    assert good.quarantine_reason == "" and good.coarse_label == "" and good.pinned_split == ""
    assert good.sha256 == hashlib.sha256((tmp_path / "d/apple/a.jpg").read_bytes()).hexdigest()
    assert rows.loc["d/apple/again.jpg"].sha256 == good.sha256
    assert rows.loc["d/apple/notes.txt"].quarantine_reason.startswith("not an image")
    assert rows.loc["d/apple/big.jpg"].quarantine_reason.startswith("file too large")
    assert rows.loc["d/orphan.png"].quarantine_reason.startswith("no label")
    assert rows.loc["d/orphan.png"].width == 64  # decoded (and stored) although unusable
    assert set(manifest["status"]) == {"ok", "quarantined"}


def test_second_build_decodes_only_new_images(tmp_path, make_image, monkeypatch):
    decodes = []
    real_decode = drops.decode_image
    monkeypatch.setattr(
        drops, "decode_image", lambda data, *args: decodes.append(data) or real_decode(data, *args)
    )
    raw = tmp_path / "raw"
    make_image(raw / "d1" / "apple" / "a.jpg", color=(255, 0, 0))
    make_image(raw / "d1" / "apple" / "b.jpg", color=(0, 255, 0))
    (raw / "d1" / "apple" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    first = manifest_of(raw, ImageStore(tmp_path / "store"))
    assert len(decodes) == 3

    make_image(raw / "d2" / "pear" / "c.jpg", color=(0, 0, 255))
    shutil.copy(raw / "d1" / "apple" / "a.jpg", raw / "d2" / "pear" / "a-again.jpg")
    second = manifest_of(raw, ImageStore(tmp_path / "store"))  # a fresh handle: a new process

    assert len(decodes) == 4
    assert len(second) == 5
    pd.testing.assert_frame_equal(
        second[second["drop"] == "d1"].reset_index(drop=True), first.reset_index(drop=True)
    )


def test_empty_drops_root_gives_an_empty_manifest_with_the_contract_columns(tmp_path):
    manifest = manifest_of(tmp_path, ImageStore(tmp_path / "store"))
    assert manifest.empty and tuple(manifest.columns) == MANIFEST_COLUMNS


def test_missing_drops_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_drops(tmp_path / "nowhere")


def read_labels(drop: Path) -> list[dict[str, str]]:
    with (drop / "labels.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_layout_of_the_grocery_sample_pins_official_splits_and_class_names(tmp_path, sample_dir):
    before = tree_digest(sample_dir)
    laid_out = layout_drops(sample_dir, tmp_path / "drops", count=2)

    assert [path.name for path in laid_out] == ["drop-001", "drop-002"]
    assert tree_digest(sample_dir) == before
    rows = [row | {"drop": drop.name} for drop in laid_out for row in read_labels(drop)]
    listed = sum(
        len((sample_dir / f"{split}.txt").read_text().splitlines())
        for split in ("train", "val", "test")
    )
    assert len(rows) == listed
    for row in rows:
        assert row["split"] == row["path"].split("/")[0]
        assert row["label"] == row["path"].split("/")[-2]
        copied = tmp_path / "drops" / row["drop"] / row["path"]
        assert copied.read_bytes() == (sample_dir / row["path"]).read_bytes()
    by_label = {row["label"]: row["coarse_label"] for row in rows}
    assert by_label["Granny-Smith"] == "Apple" and by_label["Arla-Standard-Milk"] == "Milk"
    for drop in laid_out:
        assert len({row["label"] for row in read_labels(drop)}) == 12
    assert {file.drop for file in scan_drops(tmp_path / "drops")} == {"drop-001", "drop-002"}


def test_layout_is_deterministic_and_refuses_to_overwrite(tmp_path, sample_dir):
    first = layout_drops(sample_dir, tmp_path / "a", count=3, prefix="batch")
    second = layout_drops(sample_dir, tmp_path / "b", count=3, prefix="batch")
    assert [tree_digest(path) for path in first] == [tree_digest(path) for path in second]
    with pytest.raises(FileExistsError, match="batch-002"):
        layout_drops(sample_dir, tmp_path / "a", count=2, prefix="batch")
    assert not list((tmp_path / "a").glob(".*"))


def test_layout_of_a_generic_folder_tree(tmp_path, make_image):
    make_image(tmp_path / "src" / "Fruit" / "apple" / "a.jpg")
    make_image(tmp_path / "src" / "pear" / "p.jpg", color=(1, 2, 3))
    make_image(tmp_path / "src" / "unlabelled.jpg")
    (drop,) = layout_drops(tmp_path / "src", tmp_path / "drops", count=1)
    assert read_labels(drop) == [
        {"path": "Fruit/apple/a.jpg", "label": "apple", "split": "", "coarse_label": "Fruit"},
        {"path": "pear/p.jpg", "label": "pear", "split": "", "coarse_label": ""},
    ]


def test_layout_of_a_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        layout_drops(tmp_path / "nowhere", tmp_path / "drops", count=1)
