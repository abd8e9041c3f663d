"""Reading drops, building the manifest incrementally, and laying datasets out as drops."""

import csv
import dataclasses
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import SMALL_INGEST

from prodcls_pipeline.core.schema import MANIFEST_COLUMNS
from prodcls_pipeline.data import images
from prodcls_pipeline.data.drops import (
    DropFile,
    DropFormatError,
    build_manifest,
    scan_drops,
)
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.data.layout import layout_drops

SETTINGS = SMALL_INGEST


def manifest_of(root: Path, store: ImageStore, settings: IngestSettings = SETTINGS) -> pd.DataFrame:
    return build_manifest(root, scan_drops(root), store, settings)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes of every image the shared decoder is asked to decode from now on."""
    decodes: list[bytes] = []
    real_decode = images.decode_image
    monkeypatch.setattr(
        images,
        "decode_image",
        lambda data, limits: decodes.append(data) or real_decode(data, limits),
    )
    return decodes


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


def test_the_ready_marker_is_not_a_candidate_in_either_format(tmp_path, make_image):
    make_image(tmp_path / "tree" / "apple" / "a.jpg")
    (tmp_path / "tree" / "_READY").write_text("")
    make_image(tmp_path / "csv" / "1.jpg")
    write_labels(tmp_path / "csv", "path,label\n1.jpg,Kiwi\n")
    (tmp_path / "csv" / "_READY").write_text("")
    assert scan_drops(tmp_path) == [
        DropFile("csv", "csv/1.jpg", "Kiwi", "", ""),
        DropFile("tree", "tree/apple/a.jpg", "apple", "", ""),
    ]


def test_landed_only_skips_drops_without_their_dvc_file(tmp_path, make_image, caplog):
    make_image(tmp_path / "landed" / "apple" / "a.jpg")
    (tmp_path / "landed.dvc").write_text("outs:\n- path: landed\n")
    make_image(tmp_path / "copying" / "apple" / "b.jpg")
    assert [file.drop for file in scan_drops(tmp_path)] == ["copying", "landed"]
    assert [file.drop for file in scan_drops(tmp_path, landed_only=True)] == ["landed"]
    assert "Skipping drop copying: it is not landed yet (no copying.dvc)" in caplog.text


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
        ("path,label\n/etc/hostname,Lime\n", "line 2: path '/etc/hostname' escapes"),
        ("path;label\nx.jpg;Lime\n", "missing column"),
        ("path,label\nx.jpg,Lime\nx.jpg,Citr\xfcs\n", "line 3: not UTF-8 \\(byte 0xfc\\)"),
    ],
)
def test_malformed_labels_csv_raises_naming_drop_and_line(tmp_path, make_image, text, message):
    make_image(tmp_path / "d" / "x.jpg")
    make_image(tmp_path / "escape.jpg")
    (tmp_path / "d" / "labels.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DropFormatError, match=message):
        scan_drops(tmp_path)


def test_manifest_columns_dtypes_and_quarantine_reasons(tmp_path, make_image):
    make_image(tmp_path / "d" / "apple" / "a.jpg", size=(64, 40))
    shutil.copy(tmp_path / "d" / "apple" / "a.jpg", tmp_path / "d" / "apple" / "again.jpg")
    (tmp_path / "d" / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / "apple" / "big.jpg").write_bytes(b"\0" * (SETTINGS.max_source_bytes + 1))
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
    assert rows.loc["d/apple/notes.txt"].quarantine_reason.startswith("not a decodable image")
    assert rows.loc["d/apple/big.jpg"].quarantine_reason.startswith("file too large")
    assert rows.loc["d/orphan.png"].quarantine_reason.startswith("no label")
    assert rows.loc["d/orphan.png"].width == 64  # decoded (and stored) although unusable
    assert set(manifest["status"]) == {"ok", "quarantined"}


def test_second_build_decodes_only_new_images(tmp_path, make_image, monkeypatch):
    decodes = count_decodes(monkeypatch)
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


def test_raising_max_source_pixels_releases_what_it_quarantined_and_decodes_nothing_else(
    tmp_path, make_image, monkeypatch
):
    raw, store_root = tmp_path / "raw", tmp_path / "store"
    make_image(raw / "d1" / "apple" / "big.png", size=(1200, 1000))  # 1.2 M pixels
    make_image(raw / "d1" / "apple" / "small.jpg", size=(40, 30))  # kept as it is
    make_image(raw / "d1" / "apple" / "large.png", size=(100, 60))  # downscaled to 32
    make_image(raw / "d1" / "apple" / "long.png", size=(900, 30))  # 30:1
    (raw / "d1" / "apple" / "notes.jpg").write_bytes(b"not a photo")
    before = manifest_of(raw, ImageStore(store_root)).set_index("source_path")
    assert before.loc["d1/apple/big.png", "quarantine_reason"] == (
        "too many pixels (1200×1000 > 1000000)"
    )
    copies = {path: path.stat().st_mtime_ns for path in store_root.rglob("*.jpg")}
    assert len(copies) == 2

    decodes = count_decodes(monkeypatch)
    raised = dataclasses.replace(SETTINGS, max_source_pixels=2_000_000)
    after = manifest_of(raw, ImageStore(store_root), raised).set_index("source_path")

    assert decodes == [(raw / "d1" / "apple" / "big.png").read_bytes()]
    released = after.loc["d1/apple/big.png"]
    assert (released.status, released.width, released.height) == ("ok", 1200, 1000)
    assert ImageStore(store_root).open(released.sha256).size == (32, 27)
    others = after.index != "d1/apple/big.png"
    pd.testing.assert_frame_equal(after[others], before[others])
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in copies.items())
    assert len(list(store_root.rglob("*.jpg"))) == 3


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
