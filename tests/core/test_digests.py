"""Digests of bytes, files and source folders."""

from pathlib import Path

from prodcls_pipeline.core.digests import sha256_bytes, sha256_file, source_digest

ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_of_bytes_and_of_a_file_are_the_hex_digest(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    assert sha256_bytes(b"abc") == sha256_file(tmp_path / "abc") == ABC


def test_source_digest_changes_with_an_edit_an_addition_and_a_rename(tmp_path: Path) -> None:
    (tmp_path / "area").mkdir()
    module = tmp_path / "area" / "loop.py"
    module.write_text("LR = 0.1\n")
    original = source_digest(tmp_path)

    (tmp_path / "area" / "__pycache__").mkdir()
    (tmp_path / "area" / "__pycache__" / "loop.cpython-311.pyc").write_bytes(b"bytecode")
    (tmp_path / "notes.txt").write_text("not code")
    assert source_digest(tmp_path) == original

    module.write_text("LR = 0.2\n")
    edited = source_digest(tmp_path)
    module.write_text("LR = 0.1\n")
    assert source_digest(tmp_path) == original

    (tmp_path / "area" / "extra.py").write_text("")
    added = source_digest(tmp_path)
    (tmp_path / "area" / "extra.py").unlink()
    module.rename(tmp_path / "area" / "renamed.py")
    assert len({original, edited, added, source_digest(tmp_path)}) == 4
