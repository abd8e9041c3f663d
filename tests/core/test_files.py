"""Files written whole or not at all."""

import pytest

from prodcls_pipeline.core.files import atomic_file, atomic_write


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "deep" / "model.bin"
    atomic_write(target, b"version 1")

    with pytest.raises(KeyboardInterrupt), atomic_file(target) as stream:
        stream.write(b"half of version 2")
        raise KeyboardInterrupt  # a kill between the first and the last byte

    assert target.read_bytes() == b"version 1"
    assert [path.name for path in target.parent.iterdir()] == ["model.bin"]


def test_a_write_that_completes_replaces_the_file(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write(target, b"version 1")
    atomic_write(target, b"version 2")
    assert target.read_bytes() == b"version 2"
    assert [path.name for path in tmp_path.iterdir()] == ["model.bin"]
