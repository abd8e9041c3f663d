"""The `prodcls` command. Each subcommand is a function that adds its parser to `SUBCOMMANDS`."""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click
import pandas as pd

from prodcls_pipeline.data.drops import SPLITS, DropFormatError, scan_drop
from prodcls_pipeline.data.layout import layout_drops

DEFAULT_DROPS_DIR = Path("data/01_raw/drops")
DEFAULT_MODEL_URI = "models:/prodcls@champion"
# argparse's exit status for a bad command line, used for an input file that cannot be read too.
INPUT_ERROR_STATUS = 2

# Kedro imports `<package>.cli` and fails unless it holds a click group named `cli`, whose
# commands it adds to `kedro`. prodcls adds none there: its own commands live under `prodcls`.
cli = click.Group(name="prodcls_kedro_commands")


class UsageError(Exception):
    """A command line that parses but asks for something impossible."""


class InputError(UsageError):
    """An input file that is missing or unreadable: exit status 2, not 1."""


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


def add_predict_command(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify product photos with a registered model",
        description=(
            "Classify each IMAGE with the pyfunc model at --model. The registry is "
            "$MLFLOW_TRACKING_URI, else the project's sqlite store under ./mlruns."
        ),
    )
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="photo to classify")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_URI,
        metavar="URI",
        help=f"MLflow model URI (default: {DEFAULT_MODEL_URI})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=5,
        metavar="K",
        help="ranked labels per image in the --json output (default: 5)",
    )
    parser.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    # Imported here: mlflow and onnxruntime take seconds to import, and only `predict` needs them.
    import mlflow

    from prodcls_pipeline.core.tracking import tracking_uri
    from prodcls_serving import model as serving

    # Every image is checked before the model loads, so a typo fails fast and names the file.
    for path in args.images:
        try:
            serving.read_image(path)
        except serving.ImageInputError as error:
            raise InputError(f"{path}: {error.reason}") from error
    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    try:
        model = serving.load_model(args.model)
    except serving.ModelLoadError as error:
        raise UsageError(str(error)) from error
    table = model.predict(
        pd.DataFrame({serving.IMAGE_COLUMN: [str(path) for path in args.images]}),
        params={"top_k": args.top_k},
    )
    table.insert(0, "image", [str(path) for path in args.images])
    if args.json:
        print(json.dumps(table.to_dict("records"), indent=2, ensure_ascii=False))
    else:
        print(_text_table(table))
    return 0


def _text_table(predictions: pd.DataFrame) -> str:
    """image, label, probability and coarse label in aligned columns, one image a line."""
    rows = [["image", "label", "probability", "coarse"]] + [
        [row.image, row.label, f"{row.probability:.3f}", row.coarse_label or "-"]
        for row in predictions.itertuples()
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


SUBCOMMANDS: list[Callable[[Subparsers], None]] = [add_drops_command, add_predict_command]


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
        return INPUT_ERROR_STATUS if isinstance(error, InputError) else 1
