"""Warm start: a training run that begins from the weights of the registry's champion.

The train run logs its classifier checkpoint into its MLflow run; the package stage registers a
model version from that same run, so the version an alias names leads back to the checkpoint it
was trained as. A warm run copies the champion's head rows of the classes it knows (by label),
initialises rows for new classes, drops classes that are gone, and starts the tuned backbone
blocks from the champion's. Anything that makes the champion's weights meaningless for this run
(another backbone, weights, mode, split block or preprocessing), or a champion that cannot be
read, falls back to training from scratch with the reason recorded: a warm start never crashes
a run and never silently changes what it trains.

Checkpoints are read with `weights_only=True`: nothing but tensors and plain values is ever
unpickled from the registry.
"""

import dataclasses
import io
import logging
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from torch import nn

from prodcls_pipeline.core.digests import sha256_bytes
from prodcls_pipeline.core.tracking import tracking_uri as project_tracking_uri
from prodcls_pipeline.training.loop import TrainingConfig

logger = logging.getLogger(__name__)

COLD = "none"
# The `champion` policy starts from the version this registry alias names; the same name as
# release.registry.CHAMPION, which training may not import (tests tie the two together).
CHAMPION = "champion"
POLICIES = (COLD, CHAMPION)
# train params that shape only a warm run: a cold run's fingerprint leaves them out, so setting
# them while `warm_start: none` does not cost an interrupted cold run its resume.
WARM_START_PARAMS = (
    "warm_start",
    "warm_start_epochs",
    "warm_start_lr_scale",
    "warm_start_replay",
)
# Where in its run the train stage logs the classifier checkpoint (data/06_models/classifier.pt).
CHECKPOINT_ARTIFACT_PATH = "checkpoint"
CHECKPOINT_FILE = "classifier.pt"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_ARTIFACT_PATH}/{CHECKPOINT_FILE}"
# The checkpoint keys a warm start reads (written by the train stage's `_checkpoint`).
REQUIRED_KEYS = ("backbone", "weights_sha256", "mode", "labels", "preprocessing", "head")
RECORD_KEYS = ("policy", "from_version", "from_run_id", "checkpoint_sha256", "fallback_reason")
TAG_PREFIX = "warm_start."
# How the registry says "no such model" and "no such alias": no champion yet, a cold start.
_NO_CHAMPION_ERRORS = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
# A digest is shortened to this many characters in messages.
_SHORT = 12


class ChampionCheckpointError(RuntimeError):
    """The champion exists but its checkpoint cannot be fetched or read."""


@dataclass(frozen=True)
class ChampionCheckpoint:
    """The checkpoint the train run of a registered version logged, and where it came from."""

    version: int
    run_id: str
    sha256: str
    checkpoint: dict[str, Any]


@dataclass(frozen=True)
class WarmTarget:
    """What a champion must share with this run for its weights to mean anything here."""

    backbone: str
    weights_sha256: str
    mode: str
    partial_block: int
    preprocessing: dict[str, Any]
    network: nn.Module  # the freshly built backbone: its state dict's keys and shapes


@dataclass(frozen=True)
class WarmStart:
    """Where a run starts from. `checkpoint` is the champion's when the run is warm; a fallback
    keeps the champion's identity (if one was found) beside the reason it was not used."""

    policy: str
    from_version: int | None = None
    from_run_id: str | None = None
    checkpoint_sha256: str | None = None
    fallback_reason: str | None = None
    checkpoint: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.checkpoint is not None

    def record(self) -> dict[str, Any]:
        """What the classifier checkpoint, the MLflow run and the lineage record keep."""
        return {key: getattr(self, key) for key in RECORD_KEYS}

    def fingerprint_source(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """What a warm run adds to the resume fingerprint (the parent and its exact bytes, and
        how long and fast it trains from them); None for a cold run, fallbacks included, which
        trains exactly as `warm_start: none` does."""
        if not self.active:
            return None
        return {
            "from_version": self.from_version,
            "checkpoint_sha256": self.checkpoint_sha256,
            **{key: params[key] for key in WARM_START_PARAMS},
        }


def resolve_warm_start(
    policy: str, model_name: str, target: WarmTarget, tracking_uri: str | None = None
) -> WarmStart:
    """The run's starting point under `policy`. `none` touches no registry; `champion` reads
    `model_name@champion` from `tracking_uri` (default: the project's store) and falls back to
    from-scratch, with the reason logged and recorded, when there is no usable champion."""
    if policy not in POLICIES:
        raise ValueError(f"train.warm_start must be one of {POLICIES}, not {policy!r}")
    if policy == COLD:
        return WarmStart(COLD)
    uri = tracking_uri or project_tracking_uri()
    try:
        champion = load_champion_checkpoint(model_name, uri)
    except ChampionCheckpointError as error:
        return _fallback(policy, str(error))
    if champion is None:
        reason = f"cold start: {model_name!r} has no {CHAMPION!r} version yet in {uri}"
        logger.info("train.warm_start is %r, but %s; training from scratch", policy, reason)
        return WarmStart(policy, fallback_reason=reason)
    source = {
        "from_version": champion.version,
        "from_run_id": champion.run_id,
        "checkpoint_sha256": champion.sha256,
    }
    problem = incompatibility(champion.checkpoint, target)
    if problem is not None:
        return _fallback(policy, f"champion v{champion.version} is incompatible: {problem}", source)
    logger.info(
        "Warm start from %s@%s = v%d (run %s, checkpoint sha256 %s)",
        model_name,
        CHAMPION,
        champion.version,
        champion.run_id,
        champion.sha256[:_SHORT],
    )
    return WarmStart(policy, **source, checkpoint=champion.checkpoint)


def load_champion_checkpoint(
    model_name: str, tracking_uri: str, alias: str = CHAMPION
) -> ChampionCheckpoint | None:
    """The checkpoint logged by the train run of the version `model_name@alias`, or None when
    there is no such version. Raises ChampionCheckpointError when it cannot be fetched or read."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in _NO_CHAMPION_ERRORS:
            return None
        raise ChampionCheckpointError(
            f"the registry at {tracking_uri} is unreadable: {error}"
        ) from error
    if not version.run_id:
        raise ChampionCheckpointError(f"champion v{version.version} names no run")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(version.run_id, CHECKPOINT_ARTIFACT, folder)
            data = Path(path).read_bytes()
        except (MlflowException, OSError) as error:
            raise ChampionCheckpointError(
                f"champion v{version.version}'s run {version.run_id} has no {CHECKPOINT_ARTIFACT} "
                f"(trained before train runs logged their checkpoint?): {error}"
            ) from error
    try:
        checkpoint = read(data)
    except ChampionCheckpointError as error:
        raise ChampionCheckpointError(f"champion v{version.version}: {error}") from error
    return ChampionCheckpoint(int(version.version), version.run_id, sha256_bytes(data), checkpoint)


def read(data: bytes) -> dict[str, Any]:
    """A checkpoint from its bytes, tensors and plain values only (never arbitrary pickles)."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ChampionCheckpointError(
            f"the champion's checkpoint is unreadable: {error}"
        ) from error
    if not isinstance(checkpoint, dict):
        raise ChampionCheckpointError("the champion's checkpoint is not a dict")
    return checkpoint


def checkpoint_bytes(checkpoint: dict[str, Any]) -> bytes:
    """The bytes of `checkpoint` as the catalog saves classifier.pt."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def log_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Log `checkpoint` into the active MLflow run, where a later warm start fetches it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CHECKPOINT_FILE
        path.write_bytes(checkpoint_bytes(checkpoint))
        mlflow.log_artifact(str(path), artifact_path=CHECKPOINT_ARTIFACT_PATH)


def record_tags(record: dict[str, Any]) -> dict[str, str]:
    """`warm_start.<key>` MLflow tags of a warm-start record; an unset value is ""."""
    return {
        f"{TAG_PREFIX}{key}": "" if value is None else str(value) for key, value in record.items()
    }


def incompatibility(checkpoint: dict[str, Any], target: WarmTarget) -> str | None:
    """Why the champion's weights cannot seed this run, or None when they can."""
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        return f"its checkpoint lacks {', '.join(missing)}"
    expected = {
        "backbone": target.backbone,
        "weights_sha256": target.weights_sha256,
        "mode": target.mode,
        "preprocessing": target.preprocessing,
    }
    for key, value in expected.items():
        if checkpoint[key] != value:
            return f"{key} {_shown(checkpoint[key])} differs from this run's {_shown(value)}"
    if target.mode == "partial" and checkpoint.get("partial_block") != target.partial_block:
        return (
            f"partial_block {checkpoint.get('partial_block')} differs from this run's "
            f"{target.partial_block}"
        )
    features = target.network.num_features
    if checkpoint["head"]["weight"].shape[1] != features:
        return f"its head takes {checkpoint['head']['weight'].shape[1]} features, not {features}"
    if target.mode != "head":
        return _state_mismatch(checkpoint.get("backbone_state_dict"), target.network.state_dict())
    return None


def remap_head(
    state: dict[str, torch.Tensor],
    old_labels: list[str],
    new_labels: list[str],
    init_head: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """A head for `new_labels` (in their order): the rows of `state` (a head for `old_labels`)
    for labels it knows, the rows of `init_head` (a fresh head for `new_labels`) for new ones;
    rows of labels no longer present are dropped."""
    if state["weight"].shape[0] != len(old_labels):
        raise ValueError(
            f"The head has {state['weight'].shape[0]} rows for {len(old_labels)} labels"
        )
    if init_head["weight"].shape != (len(new_labels), state["weight"].shape[1]):
        raise ValueError(
            f"The fresh head is {tuple(init_head['weight'].shape)}, not "
            f"({len(new_labels)}, {state['weight'].shape[1]})"
        )
    row_of = {label: row for row, label in enumerate(old_labels)}
    remapped = {name: tensor.detach().clone() for name, tensor in init_head.items()}
    for row, label in enumerate(new_labels):
        if label in row_of:
            for name, tensor in remapped.items():
                tensor[row] = state[name][row_of[label]]
    return remapped


def champion_head(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The champion's head as it was trained: the train stage folds the fitted temperature into
    the saved head, which would otherwise scale every copied logit by 1/T."""
    temperature = float(checkpoint.get("temperature") or 1.0)
    return {name: tensor * temperature for name, tensor in checkpoint["head"].items()}


def head_initialiser(warm: WarmStart, labels: list[str]) -> Callable[[nn.Linear], None] | None:
    """For a warm run, what turns the freshly initialised head into the remapped champion's."""
    if not warm.active:
        return None
    old_labels = list(warm.checkpoint["labels"])
    known = set(old_labels) & set(labels)
    logger.info(
        "Warm head: %d classes copied from the champion, %d new, %d dropped",
        len(known),
        len(set(labels) - known),
        len(set(old_labels) - known),
    )
    trained = champion_head(warm.checkpoint)

    @torch.no_grad()
    def initialise(head: nn.Linear) -> None:
        head.load_state_dict(remap_head(trained, old_labels, labels, head.state_dict()))

    return initialise


def load_backbone(backbone: nn.Module, warm: WarmStart) -> None:
    """Start the backbone (the blocks partial/full modes tune) from the champion's, in place."""
    if warm.active and "backbone_state_dict" in warm.checkpoint:
        backbone.load_state_dict(warm.checkpoint["backbone_state_dict"])


def warm_config(config: TrainingConfig, warm: WarmStart, params: dict[str, Any]) -> TrainingConfig:
    """A warm run's schedule: `warm_start_epochs` instead of `max_epochs` (the champion is trained
    already; early stopping still applies) and both learning rates scaled."""
    if not warm.active:
        return config
    scale = params["warm_start_lr_scale"]
    return dataclasses.replace(
        config,
        max_epochs=params["warm_start_epochs"],
        learning_rate=config.learning_rate * scale,
        backbone_learning_rate=config.backbone_learning_rate * scale,
    )


def _fallback(policy: str, reason: str, source: dict[str, Any] | None = None) -> WarmStart:
    logger.warning("train.warm_start is %r, but %s: training from scratch", policy, reason)
    return WarmStart(policy, **(source or {}), fallback_reason=reason)


def _state_mismatch(
    saved: dict[str, torch.Tensor] | None, fresh: dict[str, torch.Tensor]
) -> str | None:
    if saved is None:
        return "its checkpoint carries no backbone_state_dict"
    if saved.keys() != fresh.keys():
        different = sorted(saved.keys() ^ fresh.keys())
        return f"its backbone has other parameters ({', '.join(different[:3])}, ...)"
    for name, tensor in fresh.items():
        if saved[name].shape != tensor.shape:
            return f"backbone {name} is {tuple(saved[name].shape)}, not {tuple(tensor.shape)}"
    return None


def _shown(value: Any) -> str:
    """A value for a message; digests shortened."""
    if isinstance(value, str) and len(value) > 2 * _SHORT:
        return repr(value[:_SHORT] + "…")
    return repr(value)
