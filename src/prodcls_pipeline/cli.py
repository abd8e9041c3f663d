"""The `prodcls` command: one click group (click, as Kedro uses) with a command per task.

`main` runs the group and turns every error a user can fix into one line on stderr,
`prodcls: error: <message>`, with exit status 1, or 2 for a bad command line or an input file
that cannot be read; no traceback.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import click
import pandas as pd

from prodcls_pipeline.core.schema import SPLITS
from prodcls_pipeline.data.drops import DropFormatError, scan_drop
from prodcls_pipeline.data.layout import layout_drops

PROG_NAME = "prodcls"
DEFAULT_DROPS_DIR = Path("data/01_raw/drops")
DEFAULT_MODEL_URI = "models:/prodcls@champion"
DEFAULT_TOP_K = 5
# The exit status of a bad command line, used for an input file that cannot be read too.
INPUT_ERROR_STATUS = 2
USER_ERROR_STATUS = 1

# Kedro imports `<package>.cli` and fails unless it holds a click group named `cli`, whose
# commands it adds to `kedro`. prodcls adds none there: its own commands live under `prodcls`.
cli = click.Group(name="prodcls_kedro_commands")


class UsageError(Exception):
    """A command line that parses but asks for something impossible."""


class InputError(UsageError):
    """An input file that is missing or unreadable: exit status 2, not 1."""


# Errors a user can fix from the message alone: shown without a stack trace.
USER_ERRORS = (UsageError, DropFormatError, FileNotFoundError, FileExistsError, NotADirectoryError)

_PATH = click.Path(path_type=Path)
_AT_LEAST_ONE = click.IntRange(min=1)


@click.group(name=PROG_NAME, context_settings={"help_option_names": ["-h", "--help"]})
def prodcls() -> None:
    """Product photo classifier: data drops, models, audits."""


@prodcls.command(name="drops")
@click.argument("source", type=_PATH)
@click.argument("dest", type=_PATH, required=False)
@click.option("--dest", "dest_option", type=_PATH, metavar="DEST", help="Same as DEST.")
@click.option(
    "--count",
    type=_AT_LEAST_ONE,
    default=1,
    show_default=True,
    metavar="COUNT",
    help="Number of drops.",
)
@click.option("--prefix", default="drop", show_default=True, help="Drop name prefix.")
def drops_command(
    source: Path, dest: Path | None, dest_option: Path | None, count: int, prefix: str
) -> int:
    """Lay out a labelled dataset as new drops.

    Copy the images of SOURCE (Grocery Store layout, a folder tree <label>/<image>, or a folder
    with labels.csv) into COUNT new drops, each with a labels.csv, under DEST (default:
    data/01_raw/drops). SOURCE is never modified and existing drops are never overwritten.
    """
    if dest and dest_option and dest != dest_option:
        raise UsageError(f"Two different destinations given: {dest} and {dest_option}")
    destination = dest or dest_option or DEFAULT_DROPS_DIR
    drops = layout_drops(source, destination, count, prefix)
    click.echo(f"Laid out {len(drops)} drop(s) from {source} into {destination}:")
    for drop in drops:
        files = scan_drop(drop)
        labels = {file.label for file in files}
        pinned = ", ".join(
            f"{split} {number}"
            for split in SPLITS
            if (number := sum(file.pinned_split == split for file in files))
        )
        click.echo(
            f"  {drop.name}: {len(files)} files, {len(labels)} labels"
            + (f", pinned {pinned}" if pinned else "")
        )
    return 0


@prodcls.command(name="predict")
@click.argument("images", type=_PATH, nargs=-1, required=True, metavar="IMAGE...")
@click.option(
    "--model",
    default=DEFAULT_MODEL_URI,
    show_default=True,
    metavar="URI",
    help="MLflow model URI.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option(
    "--top-k",
    type=_AT_LEAST_ONE,
    default=DEFAULT_TOP_K,
    show_default=True,
    metavar="K",
    help="Ranked labels per image in the --json output.",
)
def predict_command(images: tuple[Path, ...], model: str, as_json: bool, top_k: int) -> int:
    """Classify product photos with a registered model.

    Classify each IMAGE with the pyfunc model at --model. The registry is $MLFLOW_TRACKING_URI,
    else the project's sqlite store under ./mlruns.
    """
    # Imported here: mlflow and onnxruntime take seconds to import, and only `predict` needs them.
    from prodcls_pipeline.core.tracking import set_tracking
    from prodcls_serving import model as serving

    # Every image is checked before the model loads, so a typo fails fast and names the file.
    for path in images:
        try:
            serving.read_image(path)
        except serving.ImageInputError as error:
            raise InputError(f"{path}: {error.reason}") from error
    set_tracking(project_root=Path.cwd())
    try:
        pyfunc = serving.load_model(model)
    except serving.ModelLoadError as error:
        raise UsageError(str(error)) from error
    table = pyfunc.predict(
        pd.DataFrame({serving.IMAGE_COLUMN: [str(path) for path in images]}),
        params={"top_k": top_k},
    )
    table.insert(0, "image", [str(path) for path in images])
    if as_json:
        click.echo(json.dumps(table.to_dict("records"), indent=2, ensure_ascii=False))
    else:
        click.echo(_text_table(table))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run `prodcls` on `argv` (default: the process's arguments); returns the exit status."""
    try:
        status = prodcls.main(
            args=None if argv is None else list(argv), prog_name=PROG_NAME, standalone_mode=False
        )
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.format_message(), err=True)
        return error.exit_code
    except click.UsageError as error:
        if error.ctx is not None:
            click.echo(error.ctx.get_usage(), err=True)
            click.echo(f"Try '{error.ctx.command_path} --help' for help.", err=True)
        _report(error.format_message())
        return error.exit_code
    except click.ClickException as error:
        _report(error.format_message())
        return error.exit_code
    except click.Abort:
        _report("aborted")
        return USER_ERROR_STATUS
    except USER_ERRORS as error:
        _report(str(error))
        return INPUT_ERROR_STATUS if isinstance(error, InputError) else USER_ERROR_STATUS
    return status or 0


def _report(message: str) -> None:
    click.echo(f"{PROG_NAME}: error: {message}", err=True)
