"""The promotion gate: a challenger replaces the champion only when it is measurably better.

Both models are scored by the same code on the same test images (today's split), so a champion
trained on an older split is judged on the data the challenger is judged on. Without a champion
the absolute floor alone decides, and the record says so.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from prodcls_pipeline.core.rules import Rule
from prodcls_pipeline.core.scores import classification_scores
from prodcls_pipeline.core.tables import markdown_table

PROMOTED = "promoted"
REJECTED = "rejected"


@dataclass(frozen=True)
class PromotionRule(Rule):
    """Promote when top-1 ≥ `min_top1` and, if a champion exists, top-1 gain ≥ `min_gain`."""

    params_section: ClassVar[str] = "package.promotion"

    min_top1: float
    min_gain: float

    def describe(self) -> str:
        return (
            f"promote when test top-1 >= {self.min_top1:.4f} and, if a champion exists, "
            f"top-1 - champion top-1 >= {self.min_gain:.4f} on the same test images"
        )


def score(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Top-1 and macro-F1 over the classes present in the truth (the champion may know others)."""
    if not truth:
        raise ValueError("The test split is empty: the gate has nothing to score the models on")
    return {
        **classification_scores(truth, predicted, labels=sorted(set(truth))),
        "test_images": len(truth),
    }


def decide(
    challenger: dict[str, Any], champion: dict[str, Any] | None, rule: PromotionRule
) -> dict[str, Any]:
    """The decision record: both models (version and metrics), the rule, the verdict, the reason.

    `challenger` and `champion` are {"version": int, "metrics": score(...)}.
    """
    top1 = challenger["metrics"]["top1"]
    if top1 < rule.min_top1:
        verdict, reason = REJECTED, f"top-1 {top1:.4f} is below the floor {rule.min_top1:.4f}"
    elif champion is None:
        verdict = PROMOTED
        reason = (
            f"no champion yet: the floor alone decides, and top-1 {top1:.4f} clears "
            f"{rule.min_top1:.4f}"
        )
    else:
        gain = top1 - champion["metrics"]["top1"]
        verdict = PROMOTED if gain >= rule.min_gain else REJECTED
        comparison = "reaches" if verdict == PROMOTED else "falls short of"
        reason = (
            f"top-1 {top1:.4f} vs champion v{champion['version']} "
            f"{champion['metrics']['top1']:.4f} on the same {challenger['metrics']['test_images']} "
            f"test images: gain {gain:+.4f} {comparison} the minimum {rule.min_gain:+.4f}"
        )
    return {
        "challenger": challenger,
        "champion": champion,
        "rule": {**asdict(rule), "text": rule.describe()},
        "verdict": verdict,
        "reason": reason,
    }


def render_decision(record: dict[str, Any]) -> str:
    """The decision record as Markdown, for people and for the model version's artifacts."""
    champion = record["champion"]
    rows = [_model_row("challenger", record["challenger"])]
    rows += [_model_row("champion", champion)] if champion else []
    header = ["role", "version", "top-1", "macro-F1", "test images"]
    lines = [
        f"# Promotion decision: {record['model_name']} v{record['challenger']['version']}",
        "",
        f"**Verdict: {record['verdict']}.** {record['reason']}.",
        "",
        f"Rule: {record['rule']['text']}.",
        "",
        markdown_table(header, rows),
    ]
    if champion is None:
        lines += ["", "There was no champion: this is the first model judged by the gate."]
    return "\n".join(lines) + "\n"


def _model_row(role: str, model: dict[str, Any]) -> list[str]:
    metrics = model["metrics"]
    return [
        role,
        f"v{model['version']}",
        f"{metrics['top1']:.4f}",
        f"{metrics['macro_f1']:.4f}",
        str(metrics["test_images"]),
    ]
