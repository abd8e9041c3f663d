"""A reviewer's decisions on suspected label errors and near-duplicates, and applying them.

The decisions live in a git-versioned CSV file beside the drops
(`data/01_raw/review_decisions.csv`), header `sha256,decision,label,coarse_label,note`, one row
per image:

- `keep`: the given label is right; the image stops counting as a suspect or a near-duplicate
  problem;
- `relabel`: the image's label becomes `label` in every drop holding it; `coarse_label` is needed
  only for a class no image carries yet (an existing class keeps its own coarse label);
- `exclude`: the image is left out of training and evaluation.

The raw drops are never modified: `apply_review` returns a new manifest, and the applied
decisions as a table for the audit. A line starting with `#` is a comment, so the template's
proposals can be pasted whole and each one takes effect only once uncommented.
"""

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prodcls_pipeline.validation.duplicates import PAIR_COLUMNS, PAIR_LABEL_COLUMNS
from prodcls_pipeline.validation.label_quality import SUSPECT_COLUMNS

REVIEW_FILE_NAME = "review_decisions.csv"
# Where the project keeps it (conf/base/catalog.yml `review_decisions`), as messages name it.
REVIEW_FILE = f"data/01_raw/{REVIEW_FILE_NAME}"
# The manifest columns a decision reads or writes.
REVIEWED_COLUMNS = ("sha256", "label", "coarse_label")
REVIEW_COLUMNS = ("sha256", "decision", "label", "coarse_label", "note")
REVIEW_HEADER = ",".join(REVIEW_COLUMNS)
KEEP, RELABEL, EXCLUDE = "keep", "relabel", "exclude"
DECISIONS = (KEEP, RELABEL, EXCLUDE)
# Only a relabel says which label (and coarse label) to use; anywhere else a value there means
# the reviewer expected it to do something, so it is refused rather than silently ignored.
LABEL_FIELDS = ("label", "coarse_label")
COMMENT_PREFIX = "#"

# What the audit shows of each decision that matched an image.
APPLIED_COLUMNS = ("sha256", "decision", "old_label", "new_label", "rows", "note")

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
PROBABILITY_DIGITS = 3
SIMILARITY_DIGITS = 3
# Enough of a sha256 to find the image in the page or the manifest, short enough for a note.
SHORT_SHA256 = 12
# Several labels of one image (a conflict across drops) are shown in one cell.
LABEL_SEPARATOR = ", "
MISSING = "–"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class ReviewFileError(ValueError):
    """The review decisions file (or a decisions table) that cannot be applied as written."""


@dataclass(frozen=True)
class ReviewOutcome:
    """The manifest after the review, and what the review did, for the audit."""

    manifest: pd.DataFrame
    # One row per decision that matched an image, in `APPLIED_COLUMNS`.
    applied: pd.DataFrame
    # Decisions whose sha256 is in no manifest row (an image not delivered yet, or a typo).
    unmatched: pd.DataFrame
    keep: frozenset[str]

    @property
    def reviewed(self) -> frozenset[str]:
        """Images a person has decided on (kept or relabelled): a later check of the labels
        should not flag them again."""
        relabelled = self.applied.loc[self.applied["decision"] == RELABEL, "sha256"]
        return self.keep | frozenset(relabelled)


@dataclass(frozen=True)
class ReviewOption:
    """One decision a reviewer may take on a suspect or a pair: what it means, and its row."""

    meaning: str
    row: str


def empty_decisions() -> pd.DataFrame:
    """No decisions: what a missing file means."""
    return pd.DataFrame(columns=list(REVIEW_COLUMNS), dtype="str")


def read_review_decisions(path: Path) -> pd.DataFrame:
    """The decisions in `path`, checked strictly; a missing file means no decisions."""
    path = Path(path)
    if not path.exists():
        return empty_decisions()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReviewFileError(f"{path}: not UTF-8 text ({error})") from error
    return parse_review_decisions(text, str(path))


def parse_review_decisions(text: str, source: str) -> pd.DataFrame:
    """The decisions in `text` (the file's contents; `source` names it in errors)."""
    # csv's own line counter numbers the physical lines, also inside a quoted multi-line note.
    reader = csv.reader(_without_comments(text))
    header: list[str] | None = None
    records: list[dict[str, str]] = []
    first_line: dict[str, int] = {}
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            where = f"{source}, line {reader.line_num}"
            if header is None:
                header = _checked_header(fields, where)
                continue
            record = _checked_record(_fields_to_record(fields, header, where), where)
            _check_not_repeated(record["sha256"], reader.line_num, first_line, where)
            records.append(record)
    except csv.Error as error:
        raise ReviewFileError(f"{source}, line {reader.line_num}: {error}") from error
    return pd.DataFrame(records, columns=list(REVIEW_COLUMNS), dtype="str")


def _without_comments(text: str) -> Iterator[str]:
    """The lines of `text`, comment lines blanked so line numbers stay those of the file."""
    # newline="" keeps each line's own ending, so CRLF files parse like LF ones.
    for line in io.StringIO(text, newline=""):
        yield "\n" if line.lstrip().startswith(COMMENT_PREFIX) else line


def _checked_header(fields: list[str], where: str) -> list[str]:
    header = [field.strip() for field in fields]
    if tuple(header) != REVIEW_COLUMNS:
        raise ReviewFileError(
            f"{where}: the header must be {REVIEW_HEADER}, found {','.join(header)!r}"
        )
    return header


def _fields_to_record(fields: list[str], header: list[str], where: str) -> dict[str, str]:
    if [field.strip() for field in fields] == header:
        raise ReviewFileError(f"{where}: the header is repeated (pasted twice?)")
    if len(fields) != len(header):
        raise ReviewFileError(
            f"{where}: expected {len(header)} fields ({REVIEW_HEADER}), found {len(fields)}"
        )
    return dict(zip(header, fields, strict=True))


def _checked_record(record: Mapping[str, str], where: str) -> dict[str, str]:
    """One decision, stripped and checked; case does not matter in sha256 and decision."""
    checked = {column: str(record[column]).strip() for column in REVIEW_COLUMNS}
    checked["sha256"] = checked["sha256"].lower()
    checked["decision"] = checked["decision"].lower()
    if not SHA256_PATTERN.fullmatch(checked["sha256"]):
        raise ReviewFileError(
            f"{where}: sha256 {record['sha256']!r} is not 64 hexadecimal characters"
        )
    if checked["decision"] not in DECISIONS:
        raise ReviewFileError(
            f"{where}: decision {record['decision']!r} is not one of {', '.join(DECISIONS)}"
        )
    if checked["decision"] == RELABEL and not checked["label"]:
        raise ReviewFileError(f"{where}: relabel of {checked['sha256']} has no label")
    if checked["decision"] != RELABEL:
        given = [column for column in LABEL_FIELDS if checked[column]]
        if given:
            raise ReviewFileError(
                f"{where}: {checked['decision']} of {checked['sha256']} gives "
                f"{' and '.join(given)}, which only relabel uses: empty it or use relabel"
            )
    return checked


def _check_not_repeated(sha256: str, line: int, first_line: dict[str, int], where: str) -> None:
    if sha256 in first_line:
        raise ReviewFileError(
            f"{where}: sha256 {sha256} is listed twice (first on line {first_line[sha256]}); "
            "keep one decision per image"
        )
    first_line[sha256] = line


def apply_review(manifest: pd.DataFrame, decisions: pd.DataFrame) -> ReviewOutcome:
    """The manifest with the decisions applied (relabelled, excluded rows removed) and what was
    done. Neither input is changed."""
    decisions = _checked_decisions(decisions)
    if any(column not in manifest.columns for column in REVIEWED_COLUMNS):
        # The contract check reports the broken manifest; no decision can be placed in it.
        nothing_applied = pd.DataFrame(columns=list(APPLIED_COLUMNS))
        return ReviewOutcome(manifest, nothing_applied, decisions, frozenset())
    shas = manifest["sha256"]
    matched_mask = decisions["sha256"].isin(set(shas))
    matched = decisions[matched_mask].reset_index(drop=True)
    unmatched = decisions[~matched_mask].reset_index(drop=True)
    relabels = matched[matched["decision"] == RELABEL]
    coarse_of = _target_coarse_labels(manifest, relabels)

    reviewed = manifest.copy()
    new_label = dict(zip(relabels["sha256"], relabels["label"], strict=True))
    relabelled = shas.isin(set(new_label))
    reviewed.loc[relabelled, "label"] = shas[relabelled].map(new_label)
    reviewed.loc[relabelled, "coarse_label"] = shas[relabelled].map(new_label).map(coarse_of)
    excluded = shas.isin(set(matched.loc[matched["decision"] == EXCLUDE, "sha256"]))
    reviewed = reviewed[~excluded].reset_index(drop=True)

    return ReviewOutcome(
        manifest=reviewed,
        applied=_applied_table(manifest, matched),
        unmatched=unmatched,
        keep=frozenset(matched.loc[matched["decision"] == KEEP, "sha256"]),
    )


def _checked_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """A copy of `decisions` as text, held to the same rules as the file (a caller may build the
    table itself)."""
    missing = [column for column in REVIEW_COLUMNS if column not in decisions.columns]
    if missing:
        raise ReviewFileError(f"review decisions lack column(s) {', '.join(missing)}")
    text = decisions[list(REVIEW_COLUMNS)].fillna("").astype(str)
    first_row: dict[str, int] = {}
    records = []
    for position, record in enumerate(text.to_dict("records"), start=1):
        where = f"review decision {position}"
        checked = _checked_record(record, where)
        _check_not_repeated(checked["sha256"], position, first_row, where)
        records.append(checked)
    return pd.DataFrame(records, columns=list(REVIEW_COLUMNS), dtype="str")


def _target_coarse_labels(manifest: pd.DataFrame, relabels: pd.DataFrame) -> dict[str, str]:
    """The coarse label each relabel target gets: an existing class keeps its own, a new class
    takes the one the file gives."""
    labelled = manifest[["label", "coarse_label"]].fillna("")
    labelled = labelled[labelled["label"] != ""]
    known = {
        label: sorted(set(group["coarse_label"])) for label, group in labelled.groupby("label")
    }
    # A dataset without coarse labels has nothing to ask for: a new class gets none either.
    uses_coarse = bool((labelled["coarse_label"] != "").any())
    return {
        label: _coarse_label(label, group, known.get(label), uses_coarse)
        for label, group in relabels.groupby("label")
    }


def _coarse_label(
    label: str, relabels: pd.DataFrame, known: list[str] | None, uses_coarse: bool
) -> str:
    given = sorted(set(relabels["coarse_label"]) - {""})
    where = f"{REVIEW_FILE_NAME}: relabel of {', '.join(relabels['sha256'])} to {label!r}"
    if len(given) > 1:
        raise ReviewFileError(f"{where}: coarse labels {given} disagree; give one")
    if known is not None:
        if given and given[0] not in known:
            raise ReviewFileError(
                f"{where}: class {label!r} already has coarse label {_coarse_names(known)}, "
                f"not {given[0]!r}; leave coarse_label empty"
            )
        if given:
            return given[0]
        if len(known) == 1:
            return known[0]
        raise ReviewFileError(
            f"{where}: class {label!r} has several coarse labels {_coarse_names(known)}; "
            "give the one to use in coarse_label"
        )
    if given:
        return given[0]
    if not uses_coarse:
        return ""
    raise ReviewFileError(
        f"{where}: {label!r} is a new class with no known coarse label; give it in coarse_label"
    )


def _coarse_names(known: Iterable[str]) -> str:
    return " or ".join(repr(name) if name else "(none)" for name in known)


def _applied_table(manifest: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    labels = manifest["label"].fillna("")
    labels_of = labels.groupby(manifest["sha256"]).agg(
        lambda group: LABEL_SEPARATOR.join(sorted(set(group) - {""}))
    )
    rows_of = manifest.groupby("sha256").size()
    old = matched["sha256"].map(labels_of)
    new = old.where(matched["decision"] == KEEP, "").where(
        matched["decision"] != RELABEL, matched["label"]
    )
    applied = pd.DataFrame(
        {
            "sha256": matched["sha256"],
            "decision": matched["decision"],
            "old_label": old,
            "new_label": new,
            "rows": matched["sha256"].map(rows_of).astype("int64"),
            "note": matched["note"],
        },
        columns=list(APPLIED_COLUMNS),
    )
    return applied.astype({column: "str" for column in APPLIED_COLUMNS if column != "rows"})


def review_section(outcome: ReviewOutcome) -> dict[str, object]:
    """What the review did, for the validation report and the audit: the decisions applied and
    those that matched no image."""
    return {
        "file": REVIEW_FILE,
        "applied": outcome.applied.to_dict("records"),
        "unmatched": outcome.unmatched.to_dict("records"),
    }


def decision_row(
    sha256: str, decision: str, label: str = "", coarse_label: str = "", note: str = ""
) -> str:
    """One line of the decisions file, quoted where a value needs it."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([sha256, decision, label, coarse_label, note])
    return buffer.getvalue()


def suspect_options(suspect: Mapping[str, object]) -> tuple[ReviewOption, ...]:
    """Keep the given label, or take the model's suggestion; each row notes the evidence."""
    sha256 = text_value(suspect["sha256"])
    given, suggested = text_value(suspect["given_label"]), text_value(suspect["suggested_label"])
    evidence = (
        f"model suggested {_one_line(suggested)} "
        f"(p={format_number(suspect['suggested_probability'], PROBABILITY_DIGITS)}) over "
        f"{_one_line(given)} (p={format_number(suspect['given_probability'], PROBABILITY_DIGITS)})"
    )
    return (
        ReviewOption(f"keep {given!r}", decision_row(sha256, KEEP, note=f"checked: {evidence}")),
        ReviewOption(
            f"relabel as {suggested!r}", decision_row(sha256, RELABEL, suggested, note=evidence)
        ),
    )


def pair_options(pair: Mapping[str, object]) -> tuple[ReviewOption, ...]:
    """Drop either copy, keep both (not duplicates, or harmless ones), or give b the label of a
    when the two disagree."""
    sha_a, sha_b = text_value(pair["sha256_a"]), text_value(pair["sha256_b"])
    similarity = format_number(pair["similarity"], SIMILARITY_DIGITS)

    def near(other: str) -> str:
        return f"near-duplicate of {other[:SHORT_SHA256]} (similarity {similarity})"

    options = [
        ReviewOption("exclude b", decision_row(sha_b, EXCLUDE, note=near(sha_a))),
        ReviewOption("exclude a", decision_row(sha_a, EXCLUDE, note=near(sha_b))),
        ReviewOption("keep a", decision_row(sha_a, KEEP, note=f"checked: {near(sha_b)}")),
        ReviewOption("keep b", decision_row(sha_b, KEEP, note=f"checked: {near(sha_a)}")),
    ]
    label_a, label_b = (text_value(pair.get(column)) for column in PAIR_LABEL_COLUMNS)
    if label_a and label_b and label_a != label_b:
        options.append(
            ReviewOption(
                f"relabel b as {label_a!r}",
                decision_row(sha_b, RELABEL, label_a, note=f"{near(sha_a)}, labelled as it"),
            )
        )
    return tuple(options)


def review_template_rows(
    suspects: pd.DataFrame, pairs: pd.DataFrame, *, header: bool = False
) -> str:
    """Proposals to paste into the decisions file: per suspect or pair, a comment describing it
    and each possible decision as a commented-out row with its evidence in the note.

    Nothing is prefilled as active: a pasted block of `keep` rows would silence every suspect
    unreviewed. The reviewer uncomments the one row they choose (the file refuses two rows for
    one image), so a pasted template changes nothing until someone decides. `header` starts the
    text with the header line, for a file that does not exist yet.
    """
    lines = [REVIEW_HEADER] if header else []
    for suspect in _records(suspects, SUSPECT_COLUMNS, "suspects"):
        lines.append(f"{COMMENT_PREFIX} Suspected label error: {_suspect_summary(suspect)}")
        lines.extend(_commented(option) for option in suspect_options(suspect))
    for pair in _records(pairs, PAIR_COLUMNS, "near-duplicate pairs"):
        lines.append(f"{COMMENT_PREFIX} Near-duplicates: {_pair_summary(pair)}")
        lines.extend(_commented(option) for option in pair_options(pair))
    return "".join(f"{line}\n" for line in lines)


def _records(table: pd.DataFrame, required: tuple[str, ...], name: str) -> list[dict[str, object]]:
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(f"The {name} table lacks column(s) {', '.join(missing)}")
    return table.to_dict("records")


def _commented(option: ReviewOption) -> str:
    # A row spanning lines (a label with a line break) cannot be commented out line by line.
    if _LINE_BREAK.search(option.row):
        return f"{COMMENT_PREFIX} ({option.meaning}: a label with a line break, write it by hand)"
    return f"{COMMENT_PREFIX} {option.row}"


def _suspect_summary(suspect: Mapping[str, object]) -> str:
    return _one_line(
        f"{text_value(suspect['sha256'])} is labelled {text_value(suspect['given_label'])!r} "
        f"(p={format_number(suspect['given_probability'], PROBABILITY_DIGITS)}); the model "
        f"suggests {text_value(suspect['suggested_label'])!r} "
        f"(p={format_number(suspect['suggested_probability'], PROBABILITY_DIGITS)})"
    )


def _pair_summary(pair: Mapping[str, object]) -> str:
    sides = []
    for side in ("a", "b"):
        details = [
            f"{kind} {text_value(pair.get(f'{kind}_{side}'))!r}"
            for kind in ("label", "split")
            if text_value(pair.get(f"{kind}_{side}"))
        ]
        sides.append(" ".join([f"{side}={text_value(pair[f'sha256_{side}'])}", *details]))
    similarity = format_number(pair["similarity"], SIMILARITY_DIGITS)
    return _one_line(f"{', '.join(sides)}, similarity {similarity}")


def format_number(value: object, digits: int) -> str:
    """A probability or similarity for people; a missing one as a dash."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MISSING
    return MISSING if pd.isna(number) else f"{number:.{digits}f}"


def text_value(value: object) -> str:
    """A cell of a suspects or pairs table as text: a missing value (None, NaN) as empty."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def _one_line(text: str) -> str:
    """`text` on one line: a comment or a note must not spill onto the next line."""
    return _LINE_BREAK.sub(" ", text)
