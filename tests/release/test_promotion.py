"""The promotion rule: floor first, then the gain over a champion scored on the same images."""

import pytest

from prodcls_pipeline.release.promotion import (
    PROMOTED,
    REJECTED,
    PromotionRule,
    decide,
    render_decision,
    score,
)

RULE = PromotionRule(min_top1=0.6, min_gain=0.005)


def model(version: int, top1: float) -> dict:
    return {
        "version": version,
        "metrics": {"top1": top1, "macro_f1": top1 - 0.1, "test_images": 200},
    }


def test_score_counts_hits_and_macro_f1_over_the_true_classes() -> None:
    truth = ["apple", "apple", "pear", "pear"]
    predicted = ["apple", "pear", "pear", "kiwi"]
    assert score(truth, predicted) == {"top1": 0.5, "macro_f1": 0.5833, "test_images": 4}
    with pytest.raises(ValueError, match="empty"):
        score([], [])


def test_without_a_champion_the_floor_alone_decides() -> None:
    promoted = decide(model(1, 0.61), None, RULE)
    assert promoted["verdict"] == PROMOTED
    assert promoted["reason"].startswith("no champion yet: the floor alone decides")
    assert promoted["champion"] is None
    rejected = decide(model(1, 0.59), None, RULE)
    assert rejected["verdict"] == REJECTED
    assert "below the floor 0.6000" in rejected["reason"]


def test_a_challenger_needs_the_minimum_gain_over_the_champion() -> None:
    champion = model(3, 0.80)
    assert decide(model(4, 0.806), champion, RULE)["verdict"] == PROMOTED
    worse = decide(model(4, 0.78), champion, RULE)
    assert worse["verdict"] == REJECTED
    assert "gain -0.0200 falls short of the minimum +0.0050" in worse["reason"]
    assert "champion v3 0.8000 on the same 200 test images" in worse["reason"]
    assert decide(model(4, 0.803), champion, RULE)["verdict"] == REJECTED


def test_the_floor_applies_even_when_the_champion_is_worse() -> None:
    record = decide(model(5, 0.55), model(4, 0.40), RULE)
    assert record["verdict"] == REJECTED
    assert "below the floor" in record["reason"]


def test_the_record_renders_both_models_the_rule_and_the_reason() -> None:
    record = {"model_name": "prodcls", **decide(model(4, 0.78), model(3, 0.80), RULE)}
    text = render_decision(record)
    assert text.startswith("# Promotion decision: prodcls v4")
    assert "**Verdict: rejected.**" in text
    assert "| challenger | v4 | 0.7800 | 0.6800 | 200 |" in text
    assert "| champion | v3 | 0.8000 | 0.7000 | 200 |" in text
    assert RULE.describe() in text
    first = render_decision({"model_name": "prodcls", **decide(model(1, 0.7), None, RULE)})
    assert "There was no champion" in first


def test_rule_from_params() -> None:
    assert PromotionRule.from_params({"min_top1": 0.6, "min_gain": 0.005}) == RULE
