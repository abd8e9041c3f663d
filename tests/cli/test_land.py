"""`prodcls land` copies a drop in and versions it with DVC; `prodcls drops` versions the drops
it lays out the same way inside a DVC repository."""

import subprocess
import sys
from pathlib import Path

import pytest

from prodcls_pipeline.cli import main
from prodcls_pipeline.data.versioning import dvc_dir_hash, read_drop_version


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "data" / "01_raw" / "drops").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def source(tmp_path: Path, make_image) -> Path:
    folder = tmp_path / "incoming" / "week-48"
    make_image(folder / "Lime" / "a.jpg", color=(10, 200, 10))
    make_image(folder / "Banana" / "b.jpg", color=(230, 220, 40))
    (folder / ".DS_Store").write_bytes(b"finder noise")
    return folder


def test_land_copies_the_drop_and_dvc_adds_it(project: Path, source: Path, capsys) -> None:
    assert main(["land", str(source), "--name", "wk48"]) == 0

    drop = project / "data" / "01_raw" / "drops" / "wk48"
    assert sorted(path.relative_to(drop).as_posix() for path in drop.rglob("*.jpg")) == [
        "Banana/b.jpg",
        "Lime/a.jpg",
    ]
    assert not (drop / ".DS_Store").exists()
    version = read_drop_version(drop)
    assert version.tracked and version.dvc_hash == dvc_dir_hash(drop, repo_root=project)
    output = capsys.readouterr().out
    assert version.dvc_hash in output
    assert "git add data/01_raw/drops/wk48.dvc dvc.lock" in output
    assert (source / ".DS_Store").is_file(), "the source must not be modified"


def test_land_names_the_drop_after_its_folder(project: Path, source: Path) -> None:
    assert main(["land", str(source)]) == 0
    assert (project / "data" / "01_raw" / "drops" / "week-48.dvc").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [("../escape", "Drop id"), ("bad name", "Drop id"), ("x.dvc", "Drop id")],
)
def test_land_refuses_an_unsafe_drop_id(project: Path, source: Path, capsys, name, message):
    assert main(["land", str(source), "--name", name]) == 1
    assert message in capsys.readouterr().err
    assert list((project / "data" / "01_raw" / "drops").iterdir()) == []


def test_land_never_overwrites_a_drop(project: Path, source: Path, capsys) -> None:
    assert main(["land", str(source)]) == 0
    assert main(["land", str(source)]) == 1
    assert "Refusing to overwrite existing drop" in capsys.readouterr().err


def test_land_refuses_a_folder_without_labelled_files(project: Path, tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loose.jpg").write_bytes(b"no label folder")
    assert main(["land", str(empty)]) == 1
    assert "holds no labelled files" in capsys.readouterr().err


def test_drops_versions_each_drop_inside_a_dvc_repository(project: Path, sample_dir, capsys):
    assert main(["drops", str(sample_dir), "--count", "2", "--prefix", "s"]) == 0
    drops = project / "data" / "01_raw" / "drops"
    assert {path.name for path in drops.glob("*.dvc")} == {"s-001.dvc", "s-002.dvc"}
    assert all(read_drop_version(drops / name).tracked for name in ("s-001", "s-002"))


def test_drops_outside_a_dvc_repository_says_they_are_not_versioned(tmp_path, sample_dir, capsys):
    assert main(["drops", str(sample_dir), str(tmp_path / "staging")]) == 0
    assert "not inside a DVC repository" in capsys.readouterr().out
    assert not list((tmp_path / "staging").glob("*.dvc"))
