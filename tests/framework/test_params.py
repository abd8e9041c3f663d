"""The typed sections of params.yaml: what they accept, what they refuse and how they say so."""

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from helpers import REPO
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.validation.type_extractor import TypeExtractor
from pydantic import BaseModel

from benchmarks.common import CONFIGS_DIR, load_configuration
from prodcls_pipeline.framework.params import (
    AdversarialParams,
    DriftParams,
    DuplicatesParams,
    LabelQualityParams,
    ParamsFileError,
    ProjectParams,
    Section,
    TrainParams,
    ValidateParams,
    check_params,
)
from prodcls_pipeline.pipeline_registry import register_pipelines
from prodcls_pipeline.training.adversarial import ATTACKS
from prodcls_pipeline.training.loop import CLASS_BALANCES, EARLY_STOPPING_METRICS
from prodcls_pipeline.training.losses import LOSSES
from prodcls_pipeline.training.modes import MODES
from prodcls_pipeline.training.optim import OPTIMIZERS, SCHEDULES
from prodcls_pipeline.validation.checks import ValidationRules
from prodcls_pipeline.validation.drift import POLICIES as DRIFT_POLICIES
from prodcls_pipeline.validation.duplicates import POLICIES as DUPLICATE_POLICIES
from prodcls_pipeline.validation.label_quality import FILTER_METHODS
from prodcls_pipeline.validation.label_quality import POLICIES as LABEL_QUALITY_POLICIES

Edit = Callable[[dict[str, Any]], None]


def _params() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _edited(edit: Edit) -> dict[str, Any]:
    params = copy.deepcopy(_params())
    edit(params)
    return params


def _sections(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """`model` and every model nested in it."""
    yield model
    for field in model.model_fields.values():
        for candidate in (field.annotation, *get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from _sections(candidate)


def test_params_yaml_is_valid_and_reads_back_unchanged() -> None:
    params = _params()
    assert check_params(params).model_dump(by_alias=True) == params


@pytest.mark.parametrize("section", ["train", "compress"])
def test_sections_handed_on_whole_keep_every_value_and_type(section: str) -> None:
    # train and compress nodes pass their section's dump to the areas; the run fingerprint and
    # the MLflow params are computed from it, so it must be params.yaml's section exactly.
    raw = _params()[section]
    model = ProjectParams.model_fields[section].annotation
    assert json.dumps(model.model_validate(raw).model_dump()) == json.dumps(raw)


@pytest.mark.parametrize("config", sorted(CONFIGS_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_benchmark_configuration_is_valid(config: Path) -> None:
    base = _params()
    check_params(load_configuration(config, base).params(base))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda params: params["train"].update(lerning_rate=0.01),
            "params.yaml: unknown key 'lerning_rate' in section 'train'",
        ),
        (
            lambda params: params["train"]["adversarial"].update(epsilom=0.01),
            "params.yaml: unknown key 'epsilom' in section 'train.adversarial'",
        ),
        (
            lambda params: params["compress"]["deploy_rule"].update(sped="ips_b1"),
            "params.yaml: unknown key 'sped' in section 'compress.deploy_rule'",
        ),
        (
            lambda params: params.update(trian={"max_epochs": 3}),
            "params.yaml: unknown section 'trian'",
        ),
        (
            lambda params: params["validate"].pop("min_images_per_class"),
            "params.yaml: missing key 'min_images_per_class' in section 'validate'",
        ),
        (lambda params: params.pop("split"), "params.yaml: missing section 'split'"),
        (
            lambda params: params.update(evaluate=None),
            "params.yaml: section 'evaluate' must be a mapping of keys, got None",
        ),
    ],
)
def test_unknown_and_missing_keys_are_named_with_their_section(edit: Edit, message: str) -> None:
    with pytest.raises(ParamsFileError) as raised:
        check_params(_edited(edit))
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            lambda params: params["train"].update(max_epochs="6"),
            "key 'max_epochs' in section 'train'",
        ),
        (
            lambda params: params["train"].update(max_epochs=6.5),
            "key 'max_epochs' in section 'train'",
        ),
        (lambda params: params["train"].update(resume="no"), "key 'resume' in section 'train'"),
        (lambda params: params["train"].update(mode="parital"), "key 'mode' in section 'train'"),
        (lambda params: params["ingest"].update(max_side=0), "key 'max_side' in section 'ingest'"),
        (lambda params: params.update(seed=-1), "key 'seed'"),
        (
            lambda params: params["split"].update(test_fraction=1.0),
            "key 'test_fraction' in section 'split'",
        ),
        (
            lambda params: params["compress"]["pruning"].update(channel_fractions=[0.25, 1.0]),
            "key 'channel_fractions[1]' in section 'compress.pruning'",
        ),
        (
            lambda params: params["evaluate"]["corruptions"].update(jpeg_quality="high"),
            "key 'jpeg_quality' in section 'evaluate.corruptions'",
        ),
    ],
)
def test_a_wrong_value_is_refused_naming_its_key(edit: Edit, named: str) -> None:
    with pytest.raises(ParamsFileError) as raised:
        check_params(_edited(edit))
    (line,) = str(raised.value).splitlines()
    assert line.startswith(f"params.yaml: {named}: ")


def test_every_problem_gets_its_own_line() -> None:
    def two_typos(params: dict[str, Any]) -> None:
        params["train"].update(lerning_rate=0.01)
        params["split"].update(val_fraction="0.2")

    with pytest.raises(ParamsFileError) as raised:
        check_params(_edited(two_typos))
    assert str(raised.value).splitlines() == [
        "params.yaml: key 'val_fraction' in section 'split': Input should be a valid number, "
        "got '0.2'",
        "params.yaml: unknown key 'lerning_rate' in section 'train'",
    ]


def test_every_section_at_every_depth_forbids_unknown_keys() -> None:
    sections = set(_sections(ProjectParams))
    assert AdversarialParams in sections
    assert all(issubclass(section, Section) for section in sections)
    assert {section.model_config.get("extra") for section in sections} == {"forbid"}


@pytest.mark.parametrize(
    ("model", "field", "choices"),
    [
        (TrainParams, "mode", MODES),
        (TrainParams, "optimizer", OPTIMIZERS),
        (TrainParams, "schedule", SCHEDULES),
        (TrainParams, "loss", LOSSES),
        (TrainParams, "class_balance", CLASS_BALANCES),
        (TrainParams, "early_stopping_metric", EARLY_STOPPING_METRICS),
        (AdversarialParams, "attack", ATTACKS),
        (
            ValidateParams,
            "new_class_policy",
            get_args(ValidationRules.__annotations__["new_class_policy"]),
        ),
        (DriftParams, "class_distribution", DRIFT_POLICIES),
        (DriftParams, "image_distribution", DRIFT_POLICIES),
        (LabelQualityParams, "filter_by", FILTER_METHODS),
        (LabelQualityParams, "policy", LABEL_QUALITY_POLICIES),
        (DuplicatesParams, "label_conflicts", DUPLICATE_POLICIES),
        (DuplicatesParams, "split_leaks", DUPLICATE_POLICIES),
    ],
)
def test_choices_are_the_areas_own(model: type[BaseModel], field: str, choices: tuple) -> None:
    assert get_args(model.model_fields[field].annotation) == tuple(choices)


# Read by the `prodcls audit` command, not by any node.
COMMAND_SECTIONS = {"audit"}


def test_kedro_validates_every_section_a_node_reads() -> None:
    bootstrap_project(REPO)
    sections = {
        field.alias or name: field.annotation
        for name, field in ProjectParams.model_fields.items()
        if isinstance(field.annotation, type)
        and issubclass(field.annotation, Section)
        and (field.alias or name) not in COMMAND_SECTIONS
    }
    assert TypeExtractor(register_pipelines()).extract_types_from_pipelines() == sections


def test_kedro_hands_nodes_the_typed_sections() -> None:
    bootstrap_project(REPO)
    with KedroSession.create(project_path=REPO) as session:
        params = session.load_context().params
    assert isinstance(params["train"], TrainParams)
    assert params["train"].adversarial.attack == _params()["train"]["adversarial"]["attack"]


def test_runtime_overrides_are_checked_at_start_up_too() -> None:
    bootstrap_project(REPO)
    overrides = {"train": {"max_epoch": 3}}
    with (
        KedroSession.create(project_path=REPO, runtime_params=overrides) as session,
        pytest.raises(ParamsFileError, match=r"unknown key 'max_epoch' in section 'train'$"),
    ):
        session.load_context()
