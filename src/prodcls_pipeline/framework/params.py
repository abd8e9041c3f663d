"""The typed sections of params.yaml, checked once at start-up and again by Kedro per node.

Every section is a model that refuses an unknown key (a typo would otherwise be ignored, and the
value it meant to change silently kept), a missing key and a value of the wrong type. Nodes annotate
their `params:<section>` inputs with these models, so Kedro validates the sections a run uses
before any node runs; `ProjectParams` covers the whole file, sections no node reads included.

The bounds are those the areas' own checks (and the libraries they call) enforce; the areas stay
the authority and keep checking what they receive. The choices (`Literal`s) repeat the areas'
constants because the framework imports only the core; tests/framework ties each to its area.
"""

from typing import Annotated, Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from prodcls_pipeline.framework.config_loader import PARAMS_FILE

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
# Below 1: pruning cannot remove every weight, nor val and test take every image.
PartialShare = Annotated[float, Field(ge=0, lt=1)]
Name = Annotated[str, Field(min_length=1)]


class Section(BaseModel):
    """A mapping of params.yaml: every key required and known, every value of its type.

    Strict: "6" is not an int and "no" is not a bool (YAML already types them); an int where a
    float is wanted is accepted, as the areas accept it.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IngestParams(Section):
    max_side: PositiveInt
    normalised_quality: Annotated[int, Field(ge=0, le=100)]
    max_source_bytes: PositiveInt
    max_source_pixels: PositiveInt
    # Longer side over shorter side: 1 is a square, and none is smaller.
    max_aspect_ratio: Annotated[float, Field(ge=1)]
    min_source_side: PositiveInt


Policy = Literal["block", "warn"]


class DriftParams(Section):
    alpha: Annotated[float, Field(gt=0, lt=1)]
    permutations: PositiveInt
    calibration_drops: NonNegativeInt
    max_reference: Annotated[int, Field(ge=2)]
    min_drop_images: Annotated[int, Field(ge=2)]
    min_effect: NonNegativeFloat
    class_distribution: Policy
    image_distribution: Policy


class LabelQualityParams(Section):
    folds: Annotated[int, Field(ge=2)]
    inverse_regularization: PositiveFloat
    max_iterations: PositiveInt
    filter_by: Literal[
        "low_self_confidence",
        "low_normalized_margin",
        "confident_learning",
        "prune_by_noise_rate",
        "prune_by_class",
        "both",
        "predicted_neq_given",
    ]
    max_given_probability: Annotated[float, Field(gt=0, le=1)]
    max_suspect_share: Share
    policy: Policy


class DuplicatesParams(Section):
    threshold: Annotated[float, Field(ge=-1, le=1)]
    label_conflicts: Policy
    split_leaks: Policy


class ValidateParams(Section):
    new_class_policy: Literal["allow", "fail"]
    min_images_per_class: NonNegativeInt
    max_quarantine_fraction: Share
    max_class_share_shift: Share
    drift: DriftParams
    label_quality: LabelQualityParams
    duplicates: DuplicatesParams
    review_thumbnail_size: PositiveInt


class SplitParams(Section):
    val_fraction: PartialShare
    test_fraction: PartialShare


class ColorJitterParams(Section):
    brightness: NonNegativeFloat
    contrast: NonNegativeFloat
    saturation: NonNegativeFloat
    # torchvision shifts hue by at most half a turn either way.
    hue: Annotated[float, Field(ge=0, le=0.5)]


class AugmentParams(Section):
    random_resized_crop_scale: Annotated[list[Share], Field(min_length=2, max_length=2)]
    horizontal_flip_p: Share
    rotation_degrees: Annotated[float, Field(ge=0, le=180)]
    color_jitter: ColorJitterParams
    preview_images: PositiveInt
    preview_views: PositiveInt


class AdversarialParams(Section):
    enabled: bool
    attack: Literal["fgsm", "pgd"]
    epsilon: NonNegativeFloat
    pgd_steps: NonNegativeInt
    pgd_alpha: NonNegativeFloat
    fraction: Share


class DistributedParams(Section):
    processes: PositiveInt
    nodes: PositiveInt
    rendezvous_endpoint: str
    work_dir: str


class TrainParams(Section):
    mode: Literal["head", "partial", "full"]
    backbone: Name
    weights_file: Name | None
    device: Literal["auto", "cpu", "cuda"]
    views_per_image: NonNegativeInt
    embed_batch_size: PositiveInt
    partial_block: NonNegativeInt
    batch_size: PositiveInt
    max_epochs: PositiveInt
    optimizer: Literal["adamw", "sgd"]
    learning_rate: NonNegativeFloat
    backbone_learning_rate: NonNegativeFloat
    momentum: NonNegativeFloat
    nesterov: bool
    weight_decay: NonNegativeFloat
    schedule: Literal["cosine", "step", "constant"]
    warmup_epochs: NonNegativeInt
    step_size: PositiveInt
    step_gamma: NonNegativeFloat
    dropout: Share
    loss: Literal["ce", "focal"]
    focal_gamma: NonNegativeFloat
    label_smoothing: Share
    class_balance: Literal["weights", "sampler", "none"]
    gradient_clip_norm: NonNegativeFloat
    early_stopping_metric: Literal["val_accuracy", "val_loss"]
    early_stopping_patience: NonNegativeInt
    restore_best: bool
    temperature_scaling: bool
    resume: bool
    warm_start: Literal["none", "champion"]
    warm_start_epochs: PositiveInt
    warm_start_lr_scale: PositiveFloat
    warm_start_replay: NonNegativeFloat | None
    adversarial: AdversarialParams
    distributed: DistributedParams
    experiment_name: Name


class CorruptionParams(Section):
    blur_radius: PositiveFloat
    noise_std: NonNegativeFloat
    brightness: NonNegativeFloat
    jpeg_quality: Annotated[int, Field(ge=0, le=100)]


class EvaluateParams(Section):
    top_k: PositiveInt
    calibration_bins: PositiveInt
    worst_mistakes: NonNegativeInt
    robustness_images: PositiveInt
    attack_epsilon: NonNegativeFloat
    pgd_steps: NonNegativeInt
    pgd_alpha: NonNegativeFloat
    corruptions: CorruptionParams


class PruningParams(Section):
    unstructured_sparsities: list[PartialShare]
    channel_fractions: list[PartialShare]
    recovery_epochs: NonNegativeInt
    recovery_learning_rate: NonNegativeFloat


class DistillationParams(Section):
    enabled: bool
    student_channel_fraction: PartialShare
    epochs: NonNegativeInt
    learning_rate: NonNegativeFloat
    temperature: PositiveFloat
    alpha: Share


class DeployRuleParams(Section):
    # Negative would disqualify fp32 itself, and the rule must always pick a variant.
    max_top1_drop: NonNegativeFloat
    speed: Name


class CompressParams(Section):
    calibration_images: PositiveInt
    benchmark_images: PositiveInt
    benchmark_batch_size: PositiveInt
    benchmark_repeats: PositiveInt
    fine_tune_images: PositiveInt
    fine_tune_batch_size: PositiveInt
    pruning: PruningParams
    distillation: DistillationParams
    deploy_rule: DeployRuleParams


class PromotionParams(Section):
    min_top1: Share
    min_gain: float


class PackageParams(Section):
    registered_model_name: Name
    input_example_images: NonNegativeInt
    promotion: PromotionParams


class AuditParams(Section):
    bootstrap_resamples: PositiveInt
    confidence_level: Annotated[float, Field(gt=0, lt=1)]


class ProjectParams(Section):
    """The whole of params.yaml."""

    # numpy's seeded generators refuse a negative seed.
    seed: NonNegativeInt
    ingest: IngestParams
    # `validate` would shadow BaseModel.validate: the field takes the section by its alias.
    validate_: ValidateParams = Field(alias="validate")
    split: SplitParams
    augment: AugmentParams
    train: TrainParams
    evaluate: EvaluateParams
    compress: CompressParams
    package: PackageParams
    audit: AuditParams


class ParamsFileError(click.ClickException):
    """params.yaml does not describe a run: one line per problem, each naming key and section.

    A click exception, so that `kedro run` (and `dvc repro` through it) prints these lines alone,
    without the stack trace and pydantic's report (kept as its cause), and exits with status 1.
    """


def plain_params(parameters: dict[str, Any]) -> dict[str, Any]:
    """Kedro's `parameters` with every typed section back as plain mappings (JSON-ready)."""
    return {
        key: value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value
        for key, value in parameters.items()
    }


def check_params(params: dict[str, Any]) -> ProjectParams:
    """`params` (params.yaml with any runtime overrides) as `ProjectParams`, or a short error."""
    try:
        return ProjectParams.model_validate(params)
    except ValidationError as error:
        problems = [_describe(problem) for problem in error.errors()]
        raise ParamsFileError("\n".join(f"{PARAMS_FILE}: {line}" for line in problems)) from error


def _describe(problem: ErrorDetails) -> str:
    """One pydantic error the way params.yaml reads: `<what> key 'K' in section 'S'`."""
    names: list[str] = []
    for part in problem["loc"]:
        if isinstance(part, int):
            names[-1] += f"[{part}]"
        else:
            names.append(str(part))
    *sections, key = names
    section = ".".join(sections)
    kind = problem["type"]
    if kind == "model_type":
        return f"section '{'.'.join(names)}' must be a mapping of keys, got {problem['input']!r}"
    if kind in ("extra_forbidden", "missing"):
        what = "unknown" if kind == "extra_forbidden" else "missing"
        return (
            f"{what} key '{key}' in section '{section}'" if section else f"{what} section '{key}'"
        )
    where = f"key '{key}' in section '{section}'" if section else f"key '{key}'"
    return f"{where}: {problem['msg']}, got {problem['input']!r}"
