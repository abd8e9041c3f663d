"""Every rule is built from its params section one way: all keys present, none unknown, typed."""

from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from prodcls_pipeline.compression.variants import DeployRule
from prodcls_pipeline.core.rules import Rule, RuleParamsError
from prodcls_pipeline.release.promotion import PromotionRule
from prodcls_pipeline.validation.checks import ValidationRules


@dataclass(frozen=True)
class ExampleRule(Rule):
    params_section: ClassVar[str] = "stage.example"

    policy: Literal["allow", "fail"]
    count: int
    share: float
    column: str


VALID = {"policy": "allow", "count": 3, "share": 0.5, "column": "ips_b32"}


def test_a_complete_section_builds_the_rule_and_a_whole_number_share_becomes_a_float() -> None:
    rule = ExampleRule.from_params({**VALID, "share": 1})

    assert rule == ExampleRule(policy="allow", count=3, share=1.0, column="ips_b32")
    assert type(rule.share) is float


def test_missing_and_unknown_keys_are_named_with_the_section() -> None:
    params = {key: value for key, value in VALID.items() if key != "count"} | {"shaer": 0.1}

    with pytest.raises(RuleParamsError) as raised:
        ExampleRule.from_params(params)

    assert str(raised.value) == (
        "stage.example: missing count; unknown shaer (expected keys: policy, count, share, column)"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("policy", "maybe", "stage.example.policy must be one of ('allow', 'fail'), got 'maybe'"),
        ("count", 2.5, "stage.example.count must be of type int, got 2.5"),
        ("count", True, "stage.example.count must be an integer, got True"),
        ("share", "0.5", "stage.example.share must be a number, got '0.5'"),
        ("share", False, "stage.example.share must be a number, got False"),
        ("column", 32, "stage.example.column must be of type str, got 32"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(RuleParamsError) as raised:
        ExampleRule.from_params({**VALID, key: value})

    assert str(raised.value) == message


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(RuleParamsError, match="stage.example.policy"):
        ExampleRule(policy="sometimes", count=1, share=0.1, column="x")


def test_a_section_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(RuleParamsError, match="stage.example must be a mapping"):
        ExampleRule.from_params(["allow", 3])


@pytest.mark.parametrize(
    ("rule", "params"),
    [
        (
            ValidationRules,
            {
                "new_class_policy": "allow",
                "min_images_per_class": 10,
                "max_quarantine_fraction": 0.05,
                "max_class_share_shift": 0.5,
            },
        ),
        (DeployRule, {"max_top1_drop": 0.01, "speed": "ips_b32"}),
        (PromotionRule, {"min_top1": 0.6, "min_gain": 0.005}),
    ],
    ids=["validate", "deploy", "promotion"],
)
def test_the_three_rules_share_the_mechanism(rule: type[Rule], params: dict) -> None:
    assert issubclass(rule, Rule)
    assert vars(rule.from_params(params)) == params
    with pytest.raises(RuleParamsError, match=f"^{rule.params_section}: unknown typo "):
        rule.from_params({**params, "typo": 1})
