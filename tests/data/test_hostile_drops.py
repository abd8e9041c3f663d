"""Drops that hold more than plain image files: links, special files, labels typed loosely.

Nothing outside a drop reaches the image store, nothing is opened that is no regular file,
nothing is skipped silently, and the raw drop is left byte for byte as it came.
"""

import hashlib
import os
import socket
import unicodedata
from pathlib import Path

import pytest
from helpers import SMALL_INGEST, awkward_files, project_params
from PIL import Image

from prodcls_pipeline.core.schema import QUARANTINED
from prodcls_pipeline.data.drops import build_manifest, scan_drops
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.data.layout import land_drop

SETTINGS = SMALL_INGEST
LINK_REASON = "links are never followed"


def digest(folder: Path) -> dict[str, str]:
    """Every entry below `folder` as itself: a link by its target text, a file by its bytes."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            entries[name] = "-> " + os.readlink(path)
        elif path.is_file():
            entries[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


@pytest.fixture
def linked_drop(tmp_path: Path, make_image) -> tuple[Path, Path, Path]:
    """drops/d1 with one real photo and every kind of link; a secret photo outside the drops."""
    root = tmp_path / "drops"
    outside = make_image(tmp_path / "secret" / "Kiwi" / "secret.jpg", color=(1, 2, 3))
    drop = root / "d1"
    real = make_image(drop / "apple" / "a.jpg", color=(200, 10, 10))
    (drop / "apple" / "to_outside.jpg").symlink_to(outside)
    (drop / "apple" / "to_inside.jpg").symlink_to(real)
    (drop / "Kiwi").symlink_to(outside.parent, target_is_directory=True)
    (drop / "pear").mkdir()
    (drop / "pear" / "loop.jpg").symlink_to(drop / "pear" / "loop.jpg")
    (drop / "pear" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    return root, drop, outside


def test_no_link_is_followed_and_each_is_quarantined_with_its_reason(linked_drop, tmp_path):
    root, drop, outside = linked_drop
    before = digest(drop)
    store = ImageStore(tmp_path / "store")

    manifest = build_manifest(root, scan_drops(root), store, SETTINGS)

    by_path = manifest.set_index("source_path")
    assert by_path.loc["d1/apple/a.jpg", "status"] == "ok"
    linked = ["d1/Kiwi", "d1/apple/to_inside.jpg", "d1/apple/to_outside.jpg"]
    linked += ["d1/pear/dangling.jpg", "d1/pear/loop.jpg"]
    assert sorted(by_path.index.drop("d1/apple/a.jpg")) == linked
    for path in linked:
        assert by_path.loc[path, "status"] == QUARANTINED, path
        assert LINK_REASON in by_path.loc[path, "quarantine_reason"], path
    secret = hashlib.sha256(outside.read_bytes()).hexdigest()
    assert secret not in set(manifest["sha256"]) and secret not in store
    assert digest(drop) == before


def test_a_labels_csv_row_naming_a_link_is_quarantined_not_followed(tmp_path, make_image):
    root = tmp_path / "drops"
    outside = make_image(tmp_path / "secret.jpg")
    drop = root / "d1"
    make_image(drop / "img" / "1.jpg")
    (drop / "img" / "2.jpg").symlink_to(outside)
    (drop / "labels.csv").write_text("path,label\nimg/1.jpg,Kiwi\nimg/2.jpg,Kiwi\n")

    manifest = build_manifest(root, scan_drops(root), ImageStore(tmp_path / "s"), SETTINGS)

    by_path = manifest.set_index("source_path")
    assert by_path.loc["d1/img/1.jpg", "status"] == "ok"
    assert by_path.loc["d1/img/2.jpg", "status"] == QUARANTINED
    assert LINK_REASON in by_path.loc["d1/img/2.jpg", "quarantine_reason"]


def test_a_fifo_or_socket_is_quarantined_without_being_opened(tmp_path, make_image):
    root = tmp_path / "drops"
    make_image(root / "d1" / "apple" / "a.jpg")
    # Opening a FIFO nobody writes to blocks forever: reaching the assertion proves it was not.
    os.mkfifo(root / "d1" / "apple" / "pipe.jpg")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "d1" / "apple" / "socket.jpg"))
    before = digest(root)

    try:
        manifest = build_manifest(root, scan_drops(root), ImageStore(tmp_path / "s"), SETTINGS)
    finally:
        listener.close()

    by_path = manifest.set_index("source_path")
    for name in ("pipe.jpg", "socket.jpg"):
        entry = by_path.loc[f"d1/apple/{name}"]
        assert entry["status"] == QUARANTINED, name
        assert entry["quarantine_reason"] == "not a regular file", name
    assert digest(root) == before


def test_a_folder_named_like_an_image_is_no_file(tmp_path, make_image):
    """In a folder tree a folder is a label, never a candidate; a labels.csv row naming a folder
    is quarantined, the folder never opened."""
    root = tmp_path / "drops"
    make_image(root / "tree" / "apple" / "a.jpg")
    (root / "tree" / "apple" / "empty.jpg").mkdir()
    make_image(root / "listed" / "1.jpg", color=(9, 9, 9))
    make_image(root / "listed" / "photo.jpg" / "inside.jpg", color=(8, 8, 8))
    (root / "listed" / "labels.csv").write_text("path,label\n1.jpg,apple\nphoto.jpg,apple\n")
    before = digest(root)

    manifest = build_manifest(root, scan_drops(root), ImageStore(tmp_path / "s"), SETTINGS)

    by_path = manifest.set_index("source_path")
    assert dict(by_path["quarantine_reason"]) == {
        "listed/1.jpg": "",
        "listed/photo.jpg": "not a regular file",
        "listed/photo.jpg/inside.jpg": "no label: file is not listed in labels.csv",
        "tree/apple/a.jpg": "",
    }
    assert digest(root) == before


def test_a_linked_drop_folder_is_not_read(tmp_path, make_image, caplog):
    root = tmp_path / "drops"
    make_image(tmp_path / "elsewhere" / "apple" / "a.jpg")
    root.mkdir()
    (root / "d1").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    assert scan_drops(root) == []
    assert "a symbolic link is never followed" in caplog.text


def test_labels_are_one_class_whatever_their_whitespace_and_unicode_form(tmp_path, make_image):
    root = tmp_path / "drops"
    cafe_nfd = unicodedata.normalize("NFD", "Café au lait")
    make_image(root / "d1" / "Kiwi " / "a.jpg", color=(1, 1, 1))
    make_image(root / "d1" / "Kiwi" / "b.jpg", color=(2, 2, 2))
    make_image(root / "d1" / cafe_nfd / "c.jpg", color=(3, 3, 3))
    make_image(root / "d2" / "1.jpg", color=(4, 4, 4))
    make_image(root / "d2" / "2.jpg", color=(5, 5, 5))
    (root / "d2" / "labels.csv").write_text(
        "path,label,coarse_label\n1.jpg,  Kiwi,Fruit\n2.jpg,Café  au\tlait, Drinks\n",
        encoding="utf-8",
    )

    labels = {
        file.source_path.split("/")[-1]: (file.label, file.given_label) for file in scan_drops(root)
    }

    assert labels == {
        "a.jpg": ("Kiwi", "Kiwi "),
        "b.jpg": ("Kiwi", ""),
        "c.jpg": ("Café au lait", cafe_nfd),
        "1.jpg": ("Kiwi", "  Kiwi"),
        "2.jpg": ("Café au lait", "Café  au\tlait"),
    }
    assert unicodedata.is_normalized("NFC", labels["c.jpg"][0])
    coarse = {
        file.source_path: (file.coarse_label, file.given_coarse_label)
        for file in scan_drops(root)
        if file.drop == "d2"
    }
    assert coarse == {"d2/1.jpg": ("Fruit", ""), "d2/2.jpg": ("Drinks", " Drinks")}


def test_landing_keeps_a_link_a_link_so_what_it_points_to_is_not_copied_in(linked_drop, tmp_path):
    _, drop, outside = linked_drop

    landed = land_drop(drop, tmp_path / "landed")

    assert (landed / "apple" / "to_outside.jpg").is_symlink()
    assert (landed / "Kiwi").is_symlink()
    assert digest(landed) == digest(drop)


def test_os_junk_is_skipped_and_counted_not_quarantined(tmp_path, make_image, caplog):
    root = tmp_path / "drops"
    make_image(root / "d1" / "apple" / "a.jpg")
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "._a.jpg"):
        (root / "d1" / "apple" / junk).write_bytes(b"\x00junk")
    caplog.set_level("INFO")

    files = scan_drops(root)

    assert [file.source_path for file in files] == ["d1/apple/a.jpg"]
    assert "drop d1: skipped 4 hidden or OS junk entries" in caplog.text
    assert "Thumbs.db" in caplog.text and "desktop.ini" in caplog.text


def test_every_awkward_file_is_normalised_or_quarantined_with_its_reason(tmp_path):
    root = tmp_path / "drops"
    expected = awkward_files(root / "d1" / "apple")
    before = digest(root)
    production = IngestSettings.from_params(project_params()["ingest"])
    store = ImageStore(tmp_path / "store")

    manifest = build_manifest(root, scan_drops(root), store, production)

    outcomes = {}
    for row in manifest.itertuples():
        name = row.source_path.rsplit("/", 1)[1]
        if row.status == "ok":
            outcomes[name] = f"ok {row.format} {row.width}x{row.height}"
            assert store.open(row.sha256).mode == "RGB", name
        else:
            outcomes[name] = f"quarantined {row.quarantine_reason}"
    assert outcomes.keys() == expected.keys()
    for name, outcome in expected.items():
        assert outcomes[name].startswith(outcome), (name, outcomes[name])
    assert digest(root) == before


def test_a_stored_copy_carries_no_exif_or_gps(tmp_path, make_image):
    root = tmp_path / "drops"
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make
    exif[0x8825] = {1: "N", 2: (59.0, 19.0, 48.0)}  # GPS IFD: latitude
    photo = make_image(root / "d1" / "apple" / "a.jpg", size=(80, 60), exif=exif)
    assert Image.open(photo).getexif()  # the original has it
    store = ImageStore(tmp_path / "store")

    [row] = build_manifest(root, scan_drops(root), store, SETTINGS).itertuples()

    copy = Image.open(store.path(row.sha256))
    assert dict(copy.getexif()) == {}
    assert "exif" not in copy.info and "icc_profile" not in copy.info


def test_an_empty_drop_is_named_in_the_log(tmp_path, caplog):
    (tmp_path / "drops" / "d1").mkdir(parents=True)
    (tmp_path / "drops" / "d1" / ".DS_Store").write_bytes(b"junk")

    assert scan_drops(tmp_path / "drops") == []
    assert "Drop d1 holds no files" in caplog.text
