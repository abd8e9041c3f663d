"""`prodcls` is one click group: help, bad command lines and `python -m` behave alike."""

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest

from prodcls_pipeline import cli
from prodcls_pipeline.cli import main, prodcls


def test_every_command_is_in_one_click_group_and_argparse_is_gone() -> None:
    assert isinstance(prodcls, click.Group)
    assert set(prodcls.commands) == {"audit", "drops", "land", "predict", "watch"}
    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "argparse" not in imported


def test_help_lists_the_commands_and_exits_0(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("Usage: prodcls ")
    assert "drops" in output and "predict" in output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["drops", "somewhere", "--count", "0"], "Invalid value for '--count'"),
        (["predict"], "Missing argument 'IMAGE...'"),
        (["predict", "x.jpg", "--top-k", "many"], "Invalid value for '--top-k'"),
        (["retrain"], "No such command 'retrain'"),
    ],
    ids=["count below 1", "no image", "top-k not a number", "unknown command"],
)
def test_a_bad_command_line_exits_2_with_usage_and_one_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    usage, hint, error = captured.err.splitlines()
    assert usage.startswith("Usage: prodcls") and hint.startswith("Try 'prodcls")
    assert error.startswith(f"prodcls: error: {message}")


def test_no_command_shows_the_help_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    error = capsys.readouterr().err
    assert error.startswith("Usage: prodcls ") and "Traceback" not in error


def test_python_m_runs_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prodcls_pipeline", "drops", str(tmp_path / "nowhere")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("prodcls: error: ") and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
