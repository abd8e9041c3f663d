"""The `prodcls` command. Each subcommand is a function that adds its parser to `SUBCOMMANDS`."""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from prodcls_pipeline.drops import SPLITS, DropFormatError, layout_drops, scan_drop

DEFAULT_DROPS_DIR = Path("data/01_raw/drops")

# Kedro imports `<package>.cli` and fails unless it holds a click group named `cli`, whose
# commands it adds to `kedro`. prodcls adds none there: its own commands live under `prodcls`.
cli = click.Group(name="prodcls_kedro_commands")


class UsageError(Exception):
    """A command line that parses but asks for something impossible."""


# Errors a user can fix from the message alone: shown without a stack trace.
USER_ERRORS = (UsageError, DropFormatError, FileNotFoundError, FileExistsError, NotADirectoryError)

Subparsers = argparse._SubParsersAction


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_drops_command(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "drops",
        help="lay out a labelled dataset as new drops",
        description=(
            "Copy the images of SOURCE (Grocery Store layout, a folder tree <label>/<image>, or "
            "a folder with labels.csv) into COUNT new drops, each with a labels.csv. "
            "SOURCE is never modified and existing drops are never overwritten."
        ),
    )
    parser.add_argument("source", type=Path, metavar="SOURCE", help="dataset folder to lay out")
    parser.add_argument(
        "dest",
        type=Path,
        nargs="?",
        metavar="DEST",
        help=f"drops folder (default: {DEFAULT_DROPS_DIR})",
    )
    parser.add_argument(
        "--dest", type=Path, dest="dest_option", metavar="DEST", help="same as DEST"
    )
    parser.add_argument(
        "--count",
        type=positive_int,
        default=1,
        metavar="COUNT",
        help="number of drops (default: 1)",
    )
    parser.add_argument("--prefix", default="drop", help="drop name prefix (default: drop)")
    parser.set_defaults(run=run_drops)


def run_drops(args: argparse.Namespace) -> int:
    if args.dest and args.dest_option and args.dest != args.dest_option:
        raise UsageError(f"Two different destinations given: {args.dest} and {args.dest_option}")
    destination = args.dest or args.dest_option or DEFAULT_DROPS_DIR
    drops = layout_drops(args.source, destination, args.count, args.prefix)
    print(f"Laid out {len(drops)} drop(s) from {args.source} into {destination}:")
    for drop in drops:
        files = scan_drop(drop)
        labels = {file.label for file in files}
        pinned = ", ".join(
            f"{split} {number}"
            for split in SPLITS
            if (number := sum(file.pinned_split == split for file in files))
        )
        print(
            f"  {drop.name}: {len(files)} files, {len(labels)} labels"
            + (f", pinned {pinned}" if pinned else "")
        )
    return 0


SUBCOMMANDS: list[Callable[[Subparsers], None]] = [add_drops_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prodcls", description="Product photo classifier: data drops, models, audits."
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for add_command in SUBCOMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"prodcls: error: {error}", file=sys.stderr)
        return 1
