"""The `prodcls` command: one click group (click, as Kedro uses) with a command per task.

`main` runs the group and turns every error a user can fix into one line on stderr,
`prodcls: error: <message>`, with exit status 1, or 2 for a bad command line or an input file
that cannot be read; no traceback.
"""

import base64
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd
import yaml

from prodcls_pipeline.audit.documents import FORMATS
from prodcls_pipeline.audit.errors import AuditError
from prodcls_pipeline.core.schema import SPLITS
from prodcls_pipeline.data.drops import READY_MARKER, DropFormatError, scan_drop
from prodcls_pipeline.data.history import (
    DEFAULT_SEED,
    MIN_HISTORY_DROPS,
    NOISE_KINDS,
    RANDOM_NOISE,
    layout_history,
)
from prodcls_pipeline.data.layout import land_drop, layout_drops
from prodcls_pipeline.data.versioning import DvcError, dvc_file_path, find_dvc_root, track_drops
from prodcls_pipeline.watching.listing import DEFAULT_POLL_S, DEFAULT_QUIET_PERIOD_S

if TYPE_CHECKING:
    from prodcls_pipeline.audit.documents import Report
    from prodcls_pipeline.audit.versions import VersionStore
    from prodcls_pipeline.framework.params import ProjectParams

PROG_NAME = "prodcls"
DEFAULT_DROPS_DIR = Path("data/01_raw/drops")
DEFAULT_MODEL_URI = "models:/prodcls@champion"
DEFAULT_TOP_K = 5
PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"
STDOUT = "-"
ARTIFACT_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
# Columns for rich tables when stdout is a file or a pipe, which has no width of its own.
WIDE_TERMINAL = 200
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
USER_ERRORS = (
    UsageError,
    AuditError,
    DropFormatError,
    DvcError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
)

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
    help="Number of drops, the images spread evenly over them.",
)
@click.option(
    "--history",
    type=click.IntRange(min=MIN_HISTORY_DROPS),
    metavar="N",
    help=f"Instead of --count: N (at least {MIN_HISTORY_DROPS}) drops as a realistic history.",
)
@click.option(
    "--label-noise",
    type=click.FloatRange(0, 1, max_open=True),
    metavar="FRACTION",
    help="With --history: one drop gets this fraction of its train labels wrong.",
)
@click.option(
    "--noise-kind",
    type=click.Choice(NOISE_KINDS),
    default=RANDOM_NOISE,
    show_default=True,
    help="With --label-noise: any other class, or another one of the same coarse class.",
)
@click.option(
    "--seed",
    type=int,
    default=DEFAULT_SEED,
    show_default=True,
    help="With --history: the seed that draws the history.",
)
@click.option("--prefix", default="drop", show_default=True, help="Drop name prefix.")
def drops_command(
    source: Path,
    dest: Path | None,
    dest_option: Path | None,
    count: int,
    history: int | None,
    label_noise: float | None,
    noise_kind: str,
    seed: int,
    prefix: str,
) -> int:
    """Lay out a labelled dataset as new drops.

    Copy the images of SOURCE (Grocery Store layout, a folder tree <label>/<image>, or a folder
    with labels.csv) into COUNT new drops, each with a labels.csv, under DEST (default:
    data/01_raw/drops). Inside a DVC repository each new drop is then `dvc add`ed, as
    `prodcls land` does. SOURCE is never modified and existing drops are never overwritten.

    With --history N the N drops tell a story instead, drawn from --seed: a big base drop,
    regular ones, one dominated by a few classes, a re-delivery of images already delivered,
    and a class that first arrives in the last drop. --label-noise FRACTION gets that fraction
    of one drop's train labels wrong; the truth goes beside DEST, in <prefix>-label-noise.csv.
    """
    if dest and dest_option and dest != dest_option:
        raise UsageError(f"Two different destinations given: {dest} and {dest_option}")
    destination = dest or dest_option or DEFAULT_DROPS_DIR
    _check_history_options(history, label_noise)
    if history is None:
        drops = layout_drops(source, destination, count, prefix)
        click.echo(f"Laid out {len(drops)} drop(s) from {source} into {destination}:")
        _describe_drops(drops)
    else:
        laid_out = layout_history(
            source,
            destination,
            history,
            label_noise=label_noise or 0.0,
            noise_kind=noise_kind,
            seed=seed,
            prefix=prefix,
        )
        drops = list(laid_out.drops)
        click.echo(
            f"Laid out a history of {len(drops)} drops from {source} into {destination} "
            f"(seed {seed}):"
        )
        _describe_drops(drops, laid_out.roles)
        for line in laid_out.story():
            click.echo(f"  {line}")
        if laid_out.truth_file is None:
            click.echo("  no label noise: --label-noise FRACTION adds a drop with wrong labels")
    _version_drops(drops, destination)
    return 0


def _check_history_options(history: int | None, label_noise: float | None) -> None:
    """--history and --count exclude each other; the noise and seed options need --history."""
    context = click.get_current_context()

    def given(name: str) -> bool:
        return context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT

    if history is not None and given("count"):
        raise UsageError("--history and --count exclude each other: give one of them")
    if history is None:
        history_only = [
            f"--{name.replace('_', '-')}"
            for name in ("label_noise", "noise_kind", "seed")
            if given(name)
        ]
        if history_only:
            raise UsageError(f"{', '.join(history_only)}: only with --history N")
    elif label_noise is None and given("noise_kind"):
        raise UsageError("--noise-kind needs --label-noise FRACTION")


@prodcls.command(name="land")
@click.argument("source", type=_PATH)
@click.option("--name", metavar="ID", help="Drop id (default: the source folder's name).")
@click.option(
    "--dest",
    type=_PATH,
    default=DEFAULT_DROPS_DIR,
    show_default=True,
    metavar="DEST",
    help="Drops folder.",
)
def land_command(source: Path, name: str | None, dest: Path) -> int:
    """Land one drop folder and version it with DVC.

    Copy SOURCE (a folder tree <label>/<image> or a folder with labels.csv) to DEST/<ID>, then
    `dvc add` it: its files go into the DVC cache and DEST/<ID>.dvc names their exact version.
    SOURCE is never modified and an existing drop is never overwritten.
    """
    drop = land_drop(source, dest, name)
    click.echo(f"Landed {source} as {drop}:")
    _describe_drops([drop])
    _version_drops([drop], dest)
    return 0


def _describe_drops(drops: list[Path], roles: Sequence[tuple[str, ...]] = ()) -> None:
    """One line per drop: files, labels, pinned splits, and its roles in a history if given."""
    for drop, drop_roles in zip(drops, roles or [()] * len(drops), strict=True):
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
            + (f"  [{', '.join(drop_roles)}]" if drop_roles else "")
        )


def _version_drops(drops: list[Path], destination: Path) -> None:
    """`dvc add` the new drops when they lie in a DVC repository, and say what to commit."""
    repo_root = find_dvc_root(destination)
    if repo_root is None:
        click.echo(f"{destination} is not inside a DVC repository: the drops are not versioned.")
        return
    versions = track_drops(drops, repo_root)
    for drop, version in zip(drops, versions, strict=True):
        click.echo(
            f"  {version.drop} versioned: {dvc_file_path(drop)} names md5 {version.dvc_hash} "
            f"({version.files} files, {version.bytes:,} bytes, in the DVC cache)"
        )
    dvc_files = " ".join(
        str(dvc_file_path(drop).resolve().relative_to(repo_root.resolve())) for drop in drops
    )
    click.echo(
        f"Next: dvc repro, read data/08_reporting/, then git add {dvc_files} dvc.lock && git commit"
    )


@prodcls.command(name="watch")
@click.argument("drops_dir", type=_PATH, default=DEFAULT_DROPS_DIR, required=False)
@click.option(
    "--quiet-period",
    type=click.FloatRange(min=0),
    default=DEFAULT_QUIET_PERIOD_S,
    show_default=True,
    metavar="SECONDS",
    help=f"A drop without a {READY_MARKER} file is complete once unchanged this long.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_POLL_S,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between two looks at the drops folder.",
)
@click.option("--commit", is_flag=True, help="git commit the drop's .dvc, dvc.lock and reports.")
@click.option("--once", is_flag=True, help="Handle the drops complete now, then exit.")
def watch_command(
    drops_dir: Path, quiet_period: float, poll: float, commit: bool, once: bool
) -> int:
    """Land and train each new drop as it arrives: the continuous loop.

    Watch DROPS_DIR (default: data/01_raw/drops) for new drop folders. A drop is complete when
    it holds a _READY file or has not changed for --quiet-period; then, one drop at a time (a
    lock under .dvc/tmp/ holds off other watchers), it is `dvc add`ed and `dvc repro` runs. Each
    outcome is a line of logs/watch.jsonl. A failed run is logged and watching goes on; raw data
    is never modified or removed. SIGINT/SIGTERM stop it cleanly, passing the signal to a run.
    """
    from prodcls_pipeline.watching.loop import Watcher, WatchSettings, stop_on_signals
    from prodcls_pipeline.watching.runner import git_work_tree

    if not drops_dir.is_dir():
        raise FileNotFoundError(f"Drops folder {drops_dir} does not exist")
    repo_root = find_dvc_root(drops_dir)
    if repo_root is None:
        raise UsageError(f"{drops_dir} is not inside a DVC repository (no .dvc folder above it)")
    if commit and not git_work_tree(repo_root):
        raise UsageError(f"--commit needs a git working tree, and {repo_root} is not in one")
    settings = WatchSettings(
        drops_dir=drops_dir.resolve(),
        repo_root=repo_root,
        quiet_period_s=quiet_period,
        poll_s=poll,
        commit=commit,
        once=once,
    )
    watcher = Watcher(settings, say=_say, echo=click.echo)
    with stop_on_signals(watcher.request_stop):
        watcher.run()
    if watcher.stop_signal is not None:
        _say(f"stopped on {signal.Signals(watcher.stop_signal).name}")
    return 0


def _say(message: str) -> None:
    click.echo(f"{PROG_NAME} watch: {message}")


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
    # The model gets the images themselves: a served model reads no paths.
    encoded = [base64.b64encode(path.read_bytes()).decode("ascii") for path in images]
    table = pyfunc.predict(pd.DataFrame({serving.IMAGE_COLUMN: encoded}), params={"top_k": top_k})
    table.insert(0, "image", [str(path) for path in images])
    if as_json:
        click.echo(json.dumps(table.to_dict("records"), indent=2, ensure_ascii=False))
    else:
        click.echo(_text_table(table))
    return 0


@prodcls.group(name="audit")
def audit_group() -> None:
    """Audit model versions: which data, code and params made each, and how two differ.

    Reads the MLflow registry ($MLFLOW_TRACKING_URI, else ./mlruns) and each version's lineage
    record. Every command prints tables; --format json|md|html writes the report as well (to
    --output, or to stdout without the tables); the HTML is one self-contained file.
    """


def _audit_options(command: Callable) -> Callable:
    command = click.option(
        "--output",
        type=_PATH,
        metavar="FILE",
        help="Write the report here ('-': stdout); the format follows the suffix if not given.",
    )(command)
    command = click.option(
        "--format", "output_format", type=click.Choice(FORMATS), help="Report format."
    )(command)
    return click.option(
        "--model",
        "model_name",
        metavar="NAME",
        help="Registered model (default: package.registered_model_name of params.yaml).",
    )(command)


@audit_group.command(name="list")
@_audit_options
def audit_list_command(
    model_name: str | None, output_format: str | None, output: Path | None
) -> int:
    """Every version: when, alias, drops, images per split, hashes, commit, metrics, gates."""
    from prodcls_pipeline.audit.reports import list_report, version_row

    settings = _audit_settings(model_name)
    rows = [version_row(version) for version in settings.store.all()]
    if not rows:
        raise UsageError(f"No versions of {settings.store.model_name} are registered yet")
    _emit(list_report(settings.store.model_name, rows), rows, output_format, output)
    return 0


@audit_group.command(name="show")
@click.argument("version", type=_AT_LEAST_ONE)
@_audit_options
def audit_show_command(
    version: int, model_name: str | None, output_format: str | None, output: Path | None
) -> int:
    """One version in full: lineage, gates, metrics and its model card."""
    from prodcls_pipeline.audit.reports import show_data, show_report

    data = show_data(_audit_settings(model_name).store.get(version))
    _emit(show_report(data), data, output_format, output)
    return 0


@audit_group.command(name="diff")
@click.argument("first", type=_AT_LEAST_ONE, metavar="V1")
@click.argument("second", type=_AT_LEAST_ONE, metavar="V2")
@_audit_options
def audit_diff_command(
    first: int,
    second: int,
    model_name: str | None,
    output_format: str | None,
    output: Path | None,
) -> int:
    """What changed from V1 to V2: data, labels, params, code, metrics, significance, gates."""
    from prodcls_pipeline.audit.comparison import compare_versions
    from prodcls_pipeline.audit.reports import diff_report

    settings = _audit_settings(model_name)
    diff = compare_versions(
        settings.store.get(first),
        settings.store.get(second),
        repo_root=Path.cwd(),
        resamples=settings.params.audit.bootstrap_resamples,
        confidence_level=settings.params.audit.confidence_level,
        seed=settings.params.seed,
    )
    _emit(diff_report(diff), diff, output_format, output)
    return 0


@audit_group.command(name="reproduce")
@click.argument("version", type=_AT_LEAST_ONE)
@click.option(
    "--target",
    metavar="STAGE",
    help="The last dvc.yaml stage to re-run (default: evaluate, which makes every metric).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary project for inspection.")
@_audit_options
def audit_reproduce_command(
    version: int,
    target: str | None,
    keep: bool,
    model_name: str | None,
    output_format: str | None,
    output: Path | None,
) -> int:
    """Re-make VERSION from its record alone and compare every metric with the recorded one.

    In a temporary folder (the working tree is not touched): the version's commit as a git
    worktree plus its recorded diff, its params.yaml, its drops restored from the DVC cache by
    hash; then `dvc repro --no-run-cache TARGET`. Exit status 1 when anything differs.
    """
    from tqdm import tqdm

    from prodcls_pipeline.audit.reports import reproduce_report
    from prodcls_pipeline.audit.reproduction import DEFAULT_TARGET, reproduce_version

    settings = _audit_settings(model_name)
    audited = settings.store.get(version)
    target = target or DEFAULT_TARGET
    stages = _stages_through(target)
    with tqdm(total=len(stages), desc=f"reproduce v{version}", unit="stage") as progress:
        result = reproduce_version(
            audited,
            Path.cwd(),
            target=target,
            keep=keep,
            on_stage=lambda stage: (progress.set_postfix_str(stage), progress.update(1)),
        )
    _emit(reproduce_report(result), result, output_format, output)
    return 0 if result["all_equal"] else USER_ERROR_STATUS


@dataclass(frozen=True)
class _AuditSettings:
    params: "ProjectParams"
    store: "VersionStore"


def _audit_settings(model_name: str | None) -> _AuditSettings:
    """params.yaml checked once, and the model's versions in the project's MLflow store."""
    from prodcls_pipeline.audit.versions import VersionStore
    from prodcls_pipeline.core.tracking import set_tracking
    from prodcls_pipeline.framework.params import check_params

    params_file = Path(PARAMS_FILE)
    if not params_file.is_file():
        raise UsageError(f"No {PARAMS_FILE} here: run prodcls audit from the project root")
    params = check_params(yaml.safe_load(params_file.read_text(encoding="utf-8")))
    # The audit reads small artifacts one by one: MLflow's bar for each would bury the tables.
    os.environ.setdefault(ARTIFACT_PROGRESS_ENV, "false")
    set_tracking(project_root=Path.cwd())
    return _AuditSettings(params, VersionStore(model_name or params.package.registered_model_name))


def _stages_through(target: str) -> list[str]:
    """The dvc.yaml stages up to `target`, in file order (the order they run in)."""
    stages = list(yaml.safe_load(Path(DVC_FILE).read_text(encoding="utf-8"))["stages"])
    if target not in stages:
        raise UsageError(f"No stage {target!r} in {DVC_FILE}: choose one of {', '.join(stages)}")
    return stages[: stages.index(target) + 1]


def _emit(report: "Report", data: object, output_format: str | None, output: Path | None) -> None:
    """Tables on the terminal, and the report file when asked for one."""
    from rich.console import Console

    from prodcls_pipeline.audit.documents import print_rich, render

    if output is not None and output_format is None:
        output_format = output.suffix.lstrip(".")
        if output_format not in FORMATS:
            raise UsageError(f"Cannot tell the format of {output}: give --format json|md|html")
    if output_format and (output is None or str(output) == STDOUT):
        click.echo(render(report, data, output_format), nl=False)
        return
    print_rich(report, Console(width=None if sys.stdout.isatty() else WIDE_TERMINAL))
    if output_format and output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render(report, data, output_format), encoding="utf-8")
        click.echo(f"Wrote {output}")


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
