"""Laying a dataset out as a realistic history of drops: roles, late class, imbalance,
re-delivery, label noise and its truth, reproducibility, and the refusals."""

import csv
import hashlib
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from prodcls_pipeline.data.drops import DropFormatError, scan_drops
from prodcls_pipeline.data.history import (
    BASE,
    IMBALANCED,
    IMBALANCED_CLASS_COUNT,
    LATE_CLASS,
    NOISY,
    RANDOM_NOISE,
    REDELIVERY,
    ROLES,
    TRUTH_COLUMNS,
    WITHIN_COARSE_NOISE,
    HistoryLayout,
    layout_history,
)

# coarse class -> its fine classes: three with siblings, one alone (never flipped within it).
CLASSES = {
    "Apple": ["Golden-Delicious", "Granny-Smith"],
    "Juice": ["Orange-Juice", "Apple-Juice", "Grape-Juice"],
    "Milk": ["Standard-Milk", "Light-Milk"],
    "Kiwi": ["Kiwi"],
}
SPLIT_SIZES = {"train": 16, "val": 4, "test": 4}
IMAGE_SIDE = 8
NOISE = 0.2
# "Mostly": the dominant classes make up at least this share of the imbalanced drop, while no
# other drop (but the late class's, which its new class dominates) has two classes this big.
MOSTLY = 2 / 3


def write_grocery_store(root: Path, classes: dict[str, list[str]] = CLASSES) -> Path:
    """A tiny dataset in the Grocery Store layout: classes.csv, <split>.txt, real JPEGs."""
    rows = ["Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int)"]
    lines: dict[str, list[str]] = {split: [] for split in SPLIT_SIZES}
    fine_id = 0
    for coarse_id, (coarse, fines) in enumerate(classes.items()):
        for fine in fines:
            rows.append(f"{fine},{fine_id},{coarse},{coarse_id}")
            for split, size in SPLIT_SIZES.items():
                for number in range(size):
                    relative = f"{split}/{coarse}/{fine}/{fine}_{number:03d}.jpg"
                    write_noise_jpeg(root / relative, seed=f"{relative}")
                    lines[split].append(f"{relative}, {fine_id}, {coarse_id}")
            fine_id += 1
    (root / "classes.csv").write_text("\n".join(rows) + "\n")
    for split, split_lines in lines.items():
        (root / f"{split}.txt").write_text("\n".join(split_lines) + "\n")
    return root


def write_noise_jpeg(path: Path, seed: str) -> None:
    # Random pixels: every image has bytes of its own, as real photos do.
    pixels = random.Random(seed).randbytes(IMAGE_SIDE * IMAGE_SIDE * 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", (IMAGE_SIDE, IMAGE_SIDE), pixels).save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared and read-only: copy it before changing anything."""
    return write_grocery_store(tmp_path_factory.mktemp("grocery"))


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read_rows(drop: Path) -> list[dict[str, str]]:
    with (drop / "labels.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        row["sha256"] = hashlib.sha256((drop / row["path"]).read_bytes()).hexdigest()
    return rows


def true_labels(dataset: Path) -> dict[str, tuple[str, str]]:
    """path -> (fine, coarse), from the dataset's own folder names."""
    return {
        path.relative_to(dataset).as_posix(): (path.parent.name, path.parent.parent.name)
        for path in dataset.rglob("*.jpg")
    }


def history(dataset: Path, where: Path, count: int = 6, **options) -> HistoryLayout:
    return layout_history(dataset, where / "drops", count, **options)


def test_every_role_is_played_and_the_layout_says_so(dataset, tmp_path):
    before = tree_digest(dataset)
    laid_out = history(dataset, tmp_path, label_noise=NOISE)

    assert [drop.name for drop in laid_out.drops] == [f"drop-{n:03d}" for n in range(1, 7)]
    assert laid_out.roles[0] == (BASE,)
    assert {role for roles in laid_out.roles for role in roles} == set(ROLES)
    for role in (BASE, IMBALANCED, NOISY, REDELIVERY, LATE_CLASS):
        assert len(laid_out.with_role(role)) == 1, role
    assert laid_out.with_role(LATE_CLASS) == (laid_out.drops[-1],)
    assert laid_out.with_role(NOISY)[0] not in (laid_out.drops[0], *laid_out.with_role(REDELIVERY))
    assert {file.drop for file in scan_drops(tmp_path / "drops")} == {
        drop.name for drop in laid_out.drops
    }, "the drops folder holds the drops and nothing else"
    assert tree_digest(dataset) == before, "the source must not be modified"


def test_the_shortest_history_doubles_up_roles(dataset, tmp_path):
    laid_out = history(dataset, tmp_path, count=4, label_noise=NOISE)
    assert laid_out.roles == ((BASE,), (IMBALANCED, NOISY), (REDELIVERY,), (LATE_CLASS,))


def test_every_image_is_delivered_once_and_the_late_class_only_at_the_end(dataset, tmp_path):
    laid_out = history(dataset, tmp_path)
    (late_drop,) = laid_out.with_role(LATE_CLASS)
    (late_class,) = laid_out.late_classes
    source = true_labels(dataset)
    delivered = Counter()
    for drop in laid_out.drops:
        rows = read_rows(drop)
        labels = {row["label"] for row in rows}
        if drop in laid_out.with_role(REDELIVERY):
            continue
        delivered.update(row["path"] for row in rows)
        assert (late_class in labels) == (drop == late_drop), drop.name
        for row in rows:
            assert (row["label"], row["coarse_label"]) == source[row["path"]]
            assert row["split"] == row["path"].split("/")[0], "the official split stays pinned"
    assert delivered == Counter(dict.fromkeys(source, 1)), (
        "each image in exactly one drop but the re-delivery"
    )


def test_the_imbalanced_drop_is_mostly_a_few_classes(dataset, tmp_path):
    laid_out = history(dataset, tmp_path)
    (imbalanced,) = laid_out.with_role(IMBALANCED)
    for drop in set(laid_out.drops) - set(laid_out.with_role(LATE_CLASS)):
        labels = Counter(row["label"] for row in read_rows(drop))
        top = labels.most_common(IMBALANCED_CLASS_COUNT)
        share = sum(number for _, number in top) / labels.total()
        if drop == imbalanced:
            assert {label for label, _ in top} == set(laid_out.imbalanced_classes)
            assert share >= MOSTLY
        else:
            assert share < MOSTLY, drop.name


def test_the_re_delivery_adds_no_new_image_label_pair(dataset, tmp_path):
    laid_out = history(dataset, tmp_path, count=5, label_noise=NOISE)
    (redelivery,) = laid_out.with_role(REDELIVERY)
    index = laid_out.drops.index(redelivery)
    earlier = {
        (row["sha256"], row["label"], row["split"])
        for drop in laid_out.drops[:index]
        for row in read_rows(drop)
    }
    again = {(row["sha256"], row["label"], row["split"]) for row in read_rows(redelivery)}
    assert index >= 1 and again and again <= earlier


@pytest.mark.parametrize("kind", [RANDOM_NOISE, WITHIN_COARSE_NOISE])
def test_label_noise_and_its_truth(dataset, tmp_path, kind):
    laid_out = history(dataset, tmp_path, label_noise=NOISE, noise_kind=kind)
    (noisy,) = laid_out.with_role(NOISY)
    source = true_labels(dataset)
    coarse_of = {fine: coarse for fine, coarse in source.values()}
    wrong = {
        (drop.name, row["path"]): row
        for drop in laid_out.drops
        for row in read_rows(drop)
        if (row["label"], row["coarse_label"]) != source[row["path"]]
    }
    train = [row for row in read_rows(noisy) if row["split"] == "train"]
    assert laid_out.truth_file == tmp_path / "drop-label-noise.csv"
    with laid_out.truth_file.open(newline="") as stream:
        truth = list(csv.DictReader(stream))

    assert len(wrong) == laid_out.wrong_labels == round(NOISE * len(train))
    assert {(row["drop"], row["path"]) for row in truth} == set(wrong)
    assert tuple(truth[0]) == TRUTH_COLUMNS
    for row in truth:
        given = wrong[row["drop"], row["path"]]
        assert row["drop"] == noisy.name and given["split"] == "train"
        assert row["sha256"] == given["sha256"]
        assert (row["given_label"], row["given_coarse_label"]) == (
            given["label"],
            given["coarse_label"],
        )
        assert (row["true_label"], row["true_coarse_label"]) == source[row["path"]]
        assert row["given_label"] != row["true_label"]
        assert row["given_coarse_label"] == coarse_of[row["given_label"]]
        assert row["given_label"] not in laid_out.late_classes, "a late class arrives later"
        if kind == WITHIN_COARSE_NOISE:
            assert row["given_coarse_label"] == row["true_coarse_label"] != "Kiwi"


def test_random_noise_also_crosses_coarse_classes(dataset, tmp_path):
    laid_out = history(dataset, tmp_path, label_noise=0.5, noise_kind=RANDOM_NOISE)
    with laid_out.truth_file.open(newline="") as stream:
        truth = list(csv.DictReader(stream))
    assert any(row["given_coarse_label"] != row["true_coarse_label"] for row in truth)


def test_same_seed_same_history_whatever_the_file_order(dataset, tmp_path):
    shuffled = shutil.copytree(dataset, tmp_path / "shuffled")
    for split_file in shuffled.glob("*.txt"):
        split_file.write_text("\n".join(reversed(split_file.read_text().splitlines())) + "\n")
    first = history(dataset, tmp_path / "a", label_noise=NOISE, seed=7)
    second = history(shuffled, tmp_path / "b", label_noise=NOISE, seed=7)
    other = history(dataset, tmp_path / "c", label_noise=NOISE, seed=8)

    def contents(laid_out: HistoryLayout) -> list[dict[str, str]]:
        return [tree_digest(drop) for drop in laid_out.drops]

    assert contents(first) == contents(second)
    assert first.truth_file.read_bytes() == second.truth_file.read_bytes()
    assert (first.roles, first.late_classes) == (second.roles, second.late_classes)
    assert contents(first) != contents(other)


def test_too_short_a_history_is_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="at least 4 drops"):
        history(dataset, tmp_path, count=3)
    assert not (tmp_path / "drops").exists()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"label_noise": 1.0}, ValueError, "fraction"),
        ({"label_noise": NOISE, "noise_kind": "sideways"}, ValueError, "noise_kind"),
        ({"truth_file": Path("truth.csv")}, ValueError, "label_noise"),
        ({"prefix": "../up"}, DropFormatError, "Prefix"),
    ],
)
def test_impossible_options_are_refused(dataset, tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        history(dataset, tmp_path, **options)
    assert not list((tmp_path / "drops").glob("drop-*"))


def test_the_truth_file_never_goes_inside_the_drops_folder(dataset, tmp_path):
    with pytest.raises(ValueError, match="outside the drops folder"):
        history(dataset, tmp_path, label_noise=NOISE, truth_file=tmp_path / "drops" / "t.csv")


@pytest.mark.parametrize("existing", ["drops/drop-003", "drop-label-noise.csv"])
def test_nothing_is_overwritten(dataset, tmp_path, existing):
    (tmp_path / "drops").mkdir()
    target = tmp_path / existing
    if target.suffix:
        target.write_text("mine\n")
    else:
        target.mkdir()
    with pytest.raises(FileExistsError, match="Refusing to overwrite"):
        history(dataset, tmp_path, label_noise=NOISE)
    assert sorted(path.name for path in (tmp_path / "drops").iterdir()) == (
        [] if target.suffix else ["drop-003"]
    )
    if target.suffix:
        assert target.read_text() == "mine\n"


def test_within_coarse_noise_needs_coarse_classes_with_siblings(tmp_path):
    lonely = write_grocery_store(tmp_path / "lonely", {name: [name] for name in "ABCDE"})
    with pytest.raises(DropFormatError, match="only 0 of its"):
        history(lonely, tmp_path, label_noise=NOISE, noise_kind=WITHIN_COARSE_NOISE)
    assert not list((tmp_path / "drops").glob("drop-*"))


def test_label_noise_needs_pinned_splits(tmp_path):
    for number in range(60):
        write_noise_jpeg(tmp_path / "tree" / "ABCDE"[number % 5] / f"{number}.jpg", str(number))
    with pytest.raises(DropFormatError, match="no train-split images"):
        history(tmp_path / "tree", tmp_path, label_noise=NOISE)
