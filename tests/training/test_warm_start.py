"""Warm start from the registry's champion: head remapping, compatibility and its fallbacks, the
resume fingerprint, and a round trip through a throwaway sqlite registry."""

import dataclasses
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import mlflow
import numpy as np
import pandas as pd
import pytest
import timm
import torch
from helpers import CONFIG, project_params
from mlflow import MlflowClient

from prodcls_pipeline.core.tracking import (
    TRACKING_URI_ENV,
    reset_tracking,
    sqlite_tracking_uri,
    use_project_tracking,
)
from prodcls_pipeline.framework.params import TrainParams
from prodcls_pipeline.models.backbones import preprocessing_for
from prodcls_pipeline.models.classifier import make_checkpoint
from prodcls_pipeline.pipelines.train.nodes import track_training
from prodcls_pipeline.release.registry import CHAMPION as REGISTRY_CHAMPION
from prodcls_pipeline.training import warm_start
from prodcls_pipeline.training.modes import fit_head, run_fingerprint
from prodcls_pipeline.training.warm_start import (
    CHAMPION,
    CHECKPOINT_ARTIFACT,
    COLD,
    POLICIES,
    ChampionCheckpointError,
    WarmStart,
    WarmTarget,
    champion_head,
    checkpoint_bytes,
    head_initialiser,
    incompatibility,
    load_backbone,
    read,
    remap_head,
    resolve_warm_start,
    warm_config,
)

MODEL_NAME = "prodcls-warm-test"
FEATURES = 5
WEIGHTS = "a" * 64
BLOCK = 1
OLD_LABELS = ["apple", "banana", "carrot"]
# banana is gone, date is new, and the order is not the champion's.
NEW_LABELS = ["date", "carrot", "apple"]
TEMPERATURE = 2.0


def tiny_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("test_efficientnet", num_classes=0).eval()


def target(network: torch.nn.Module, **overrides: Any) -> WarmTarget:
    values = {
        "backbone": "test_efficientnet",
        "weights_sha256": WEIGHTS,
        "mode": "partial",
        "partial_block": BLOCK,
        "preprocessing": preprocessing_for("efficientnet_lite0").to_dict(),
        "network": network,
    }
    return WarmTarget(**{**values, **overrides})


def champion_checkpoint(network: torch.nn.Module) -> dict[str, Any]:
    """What the train stage saves for a partial run of `target(network)`."""
    generator = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(network.num_features, len(OLD_LABELS))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator))
    checkpoint = make_checkpoint(
        "test_efficientnet",
        None,
        OLD_LABELS,
        ["fruit", "fruit", "vegetable"],
        preprocessing_for("efficientnet_lite0"),
        head,
        network.state_dict(),
    )
    checkpoint.update(
        mode="partial",
        partial_block=BLOCK,
        best_epoch=3,
        temperature=TEMPERATURE,
        weights_sha256=WEIGHTS,
        warm_start=WarmStart(COLD).record(),
        trained_on={"0" * 64: OLD_LABELS[0]},
        replay={"new": 1, "replayed": 0, "available": 1},
    )
    return checkpoint


def warm(checkpoint: dict[str, Any]) -> WarmStart:
    return WarmStart(CHAMPION, 1, "run", "b" * 64, checkpoint=checkpoint)


def params(**overrides: Any) -> dict[str, Any]:
    return {**project_params()["train"], **overrides}


# ── the head ───────────────────────────────────────────────────────────────────────────


def test_known_rows_are_copied_new_ones_initialised_and_gone_ones_dropped() -> None:
    state = {"weight": torch.arange(15.0).reshape(3, FEATURES), "bias": torch.tensor([1.0, 2, 3])}
    fresh = {"weight": -torch.ones(3, FEATURES), "bias": -torch.ones(3)}

    head = remap_head(state, OLD_LABELS, NEW_LABELS, fresh)

    assert torch.equal(head["weight"][0], fresh["weight"][0])  # date: new
    assert torch.equal(head["weight"][1], state["weight"][2])  # carrot
    assert torch.equal(head["weight"][2], state["weight"][0])  # apple
    assert head["bias"].tolist() == [-1.0, 3.0, 1.0]
    assert not any(torch.equal(row, state["weight"][1]) for row in head["weight"])  # banana
    assert torch.equal(fresh["weight"], -torch.ones(3, FEATURES)), "the fresh head is not changed"


def test_a_head_of_other_shapes_is_refused() -> None:
    state = {"weight": torch.zeros(3, FEATURES), "bias": torch.zeros(3)}
    with pytest.raises(ValueError, match="rows for 2 labels"):
        remap_head(state, OLD_LABELS[:2], NEW_LABELS, state)
    with pytest.raises(ValueError, match="fresh head"):
        remap_head(state, OLD_LABELS, NEW_LABELS, {"weight": torch.zeros(3, 4)})


def test_the_champion_head_is_unfolded_from_its_temperature() -> None:
    checkpoint = champion_checkpoint(tiny_backbone())
    unfolded = champion_head(checkpoint)
    assert torch.allclose(unfolded["weight"], checkpoint["head"]["weight"] * TEMPERATURE)


def test_a_warm_head_mode_run_starts_from_the_remapped_champion() -> None:
    features = 8
    state = {"weight": torch.randn(3, features), "bias": torch.randn(3)}
    checkpoint = {"labels": OLD_LABELS, "head": state, "temperature": 1.0}
    frozen = dataclasses.replace(CONFIG, max_epochs=1, learning_rate=0.0, temperature_scaling=False)
    inputs, labels = torch.randn(12, features), np.arange(12) % 3

    result = fit_head(
        inputs, labels, inputs, labels, 3, frozen, seed=0,
        warm_head=head_initialiser(warm(checkpoint), NEW_LABELS),
    )  # fmt: skip

    # A learning rate of 0 leaves the head as the warm start set it.
    assert torch.equal(result.model.head.weight[1], state["weight"][2])
    assert torch.equal(result.model.head.weight[2], state["weight"][0])


# ── compatibility ──────────────────────────────────────────────────────────────────────


def test_a_matching_champion_is_compatible_and_seeds_the_backbone() -> None:
    champion = tiny_backbone(seed=1)
    fresh = tiny_backbone(seed=2)
    checkpoint = champion_checkpoint(champion)
    assert incompatibility(checkpoint, target(fresh)) is None

    load_backbone(fresh, warm(checkpoint))

    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in champion.state_dict().items())


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"backbone": "efficientnet_lite0"}, "backbone 'efficientnet_lite0' differs"),
        ({"weights_sha256": "c" * 64}, "weights_sha256 'cccccccccccc…' differs"),
        ({"mode": "full"}, "mode 'full' differs from this run's 'partial'"),
        ({"partial_block": 0}, "partial_block 0 differs from this run's 1"),
        ({"preprocessing": {"input_size": 1}}, "preprocessing {'input_size': 1} differs"),
        ({"head": {"weight": torch.zeros(3, 2)}}, "its head takes 2 features"),
        ({"backbone_state_dict": {"other.weight": torch.zeros(1)}}, "other parameters"),
    ],
)
def test_an_incompatible_champion_is_named_with_the_reason(
    edit: dict[str, Any], reason: str
) -> None:
    network = tiny_backbone()
    assert reason in incompatibility({**champion_checkpoint(network), **edit}, target(network))


class Payload:
    """Anything but tensors and plain values: what a weights-only load must refuse."""


def test_only_weights_are_ever_unpickled() -> None:
    assert read(checkpoint_bytes({"head": {"weight": torch.ones(1)}}))["head"]["weight"] == 1
    with pytest.raises(ChampionCheckpointError, match="unreadable"):
        read(checkpoint_bytes({"head": Payload()}))
    with pytest.raises(ChampionCheckpointError, match="unreadable"):
        read(b"not a checkpoint")
    with pytest.raises(ChampionCheckpointError, match="not a dict"):
        read(checkpoint_bytes([torch.ones(1)]))


def test_a_checkpoint_missing_keys_is_incompatible() -> None:
    network = tiny_backbone()
    checkpoint = champion_checkpoint(network)
    del checkpoint["weights_sha256"], checkpoint["backbone_state_dict"]
    assert incompatibility(checkpoint, target(network)) == "its checkpoint lacks weights_sha256"
    checkpoint["weights_sha256"] = WEIGHTS
    assert "no backbone_state_dict" in incompatibility(checkpoint, target(network))


# ── the run: schedule, fingerprint, `none` ─────────────────────────────────────────────


def test_a_warm_run_trains_warm_start_epochs_at_scaled_rates() -> None:
    run = params(warm_start_epochs=2, warm_start_lr_scale=0.5)
    config = warm_config(CONFIG, warm({}), run)
    assert (config.max_epochs, config.early_stopping_patience) == (
        2,
        CONFIG.early_stopping_patience,
    )
    assert config.learning_rate == CONFIG.learning_rate * 0.5
    assert config.backbone_learning_rate == CONFIG.backbone_learning_rate * 0.5
    assert warm_config(CONFIG, WarmStart(CHAMPION, fallback_reason="cold start"), run) is CONFIG


def test_the_fingerprint_tells_warm_from_cold_and_one_champion_from_another() -> None:
    splits = pd.DataFrame({"sha256": ["a", "b"], "label": ["x", "y"], "split": ["train", "val"]})
    run = params(warm_start=CHAMPION)

    def fingerprint(start: WarmStart, values: dict[str, Any] = run) -> str:
        return run_fingerprint(values, 0, splits, {}, WEIGHTS, start.fingerprint_source(values))

    cold = fingerprint(WarmStart(COLD))
    from_v1 = fingerprint(warm({}))
    from_v2 = fingerprint(WarmStart(CHAMPION, 2, "run", "b" * 64, checkpoint={}))
    other_bytes = fingerprint(WarmStart(CHAMPION, 1, "run", "c" * 64, checkpoint={}))
    shorter = fingerprint(warm({}), params(warm_start=CHAMPION, warm_start_epochs=1))
    assert len({cold, from_v1, from_v2, other_bytes, shorter}) == 5
    # A fallback trains exactly as a cold run does, so it may resume a cold run's checkpoint.
    assert fingerprint(WarmStart(CHAMPION, 1, "run", "b" * 64, fallback_reason="x")) == cold


def test_none_keeps_the_fingerprint_of_a_run_without_warm_start_params() -> None:
    splits = pd.DataFrame({"sha256": ["a"], "label": ["x"], "split": ["train"]})
    before = {k: v for k, v in params().items() if k not in warm_start.WARM_START_PARAMS}
    now = params(warm_start=COLD, warm_start_epochs=1, warm_start_lr_scale=0.1)
    source = WarmStart(COLD).fingerprint_source(now)
    assert run_fingerprint(now, 0, splits, {}, WEIGHTS, source) == run_fingerprint(
        before, 0, splits, {}, WEIGHTS
    )


def test_none_reads_no_registry_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("warm_start: none must not open the registry")

    monkeypatch.setattr(warm_start, "MlflowClient", refuse)
    monkeypatch.setattr(warm_start, "project_tracking_uri", refuse)
    start = resolve_warm_start(COLD, MODEL_NAME, target(tiny_backbone()))
    assert start.record() == {
        "policy": "none",
        "from_version": None,
        "from_run_id": None,
        "checkpoint_sha256": None,
        "fallback_reason": None,
    }
    assert head_initialiser(start, NEW_LABELS) is None
    assert warm_config(CONFIG, start, params()) is CONFIG
    backbone = tiny_backbone()
    before = {name: tensor.clone() for name, tensor in backbone.state_dict().items()}
    load_backbone(backbone, start)
    assert all(torch.equal(before[name], tensor) for name, tensor in backbone.state_dict().items())


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="train.warm_start must be one of"):
        resolve_warm_start("latest", MODEL_NAME, target(tiny_backbone()))


def test_the_policies_are_the_params_choices_and_the_registry_alias() -> None:
    assert get_args(TrainParams.model_fields["warm_start"].annotation) == POLICIES
    assert CHAMPION == REGISTRY_CHAMPION


# ── round trip through a registry ──────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sqlite store as the project's store, shared by this module's tests (creating one takes
    seconds); each test registers its own model name. No network."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network access attempted: {address}")

    root = tmp_path_factory.mktemp("registry")
    uri = sqlite_tracking_uri(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TRACKING_URI_ENV, uri)
        patch.chdir(root)
        patch.setattr(socket.socket, "connect", refuse)
        yield uri
    # Later tests must not inherit this store through MLflow's global tracking URI.
    reset_tracking()


@pytest.fixture
def model_name(registry: str, request: pytest.FixtureRequest) -> str:
    """A registered model name of the test's own in the shared store."""
    return f"{MODEL_NAME}-{request.node.name.removeprefix('test_')}"


def train_run(classifier: dict[str, Any]) -> str:
    """The train stage's MLflow run for `classifier`, as `track_training` logs it."""
    history = pd.DataFrame(
        [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5, "learning_rate": 0}]
    )
    splits = pd.DataFrame({"split": ["train", "val"]})
    train_params = TrainParams.model_validate(params(experiment_name="warm-test"))
    return track_training(classifier, history, splits, train_params, seed=0)["run_id"]


def register(model_name: str, run_id: str, alias: str = CHAMPION) -> int:
    """A model version of `run_id` (as the package stage registers one from the train run)."""
    client = MlflowClient()
    client.create_registered_model(model_name)
    version = client.create_model_version(model_name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model_name, alias, version.version)
    return int(version.version)


def test_the_champion_checkpoint_is_found_through_its_alias_and_loaded(
    registry: str, model_name: str
) -> None:
    champion = tiny_backbone(seed=1)
    checkpoint = champion_checkpoint(champion)
    run_id = train_run(checkpoint)
    version = register(model_name, run_id)
    logged = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT)
    )
    tags = MlflowClient().get_run(run_id).data.tags

    fresh = tiny_backbone(seed=2)
    start = resolve_warm_start(CHAMPION, model_name, target(fresh), tracking_uri=registry)

    assert start.active and tags["warm_start.policy"] == COLD
    assert start.record() == {
        "policy": CHAMPION,
        "from_version": version,
        "from_run_id": run_id,
        "checkpoint_sha256": hashlib.sha256(logged.read_bytes()).hexdigest(),
        "fallback_reason": None,
    }
    assert start.checkpoint["labels"] == OLD_LABELS
    assert torch.equal(start.checkpoint["head"]["weight"], checkpoint["head"]["weight"])
    load_backbone(fresh, start)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in champion.state_dict().items())


def test_no_champion_is_a_cold_start(model_name: str) -> None:
    register(model_name, train_run(champion_checkpoint(tiny_backbone())), alias="challenger")
    start = resolve_warm_start(CHAMPION, model_name, target(tiny_backbone()))
    assert not start.active
    assert start.fallback_reason.startswith(f"cold start: '{model_name}' has no 'champion'")
    assert start.from_version is None
    unknown = resolve_warm_start(CHAMPION, "no-such-model", target(tiny_backbone()))
    assert unknown.fallback_reason.startswith("cold start")


def test_a_champion_without_a_logged_checkpoint_falls_back(model_name: str) -> None:
    use_project_tracking("warm-test")
    with mlflow.start_run() as run:
        mlflow.log_param("backbone", "test_efficientnet")
    register(model_name, run.info.run_id)
    start = resolve_warm_start(CHAMPION, model_name, target(tiny_backbone()))
    assert not start.active
    assert f"has no {CHECKPOINT_ARTIFACT}" in start.fallback_reason


def test_an_incompatible_champion_falls_back_and_is_recorded(model_name: str) -> None:
    network = tiny_backbone()
    version = register(model_name, train_run(champion_checkpoint(network)))
    start = resolve_warm_start(CHAMPION, model_name, target(network, mode="full"))
    assert not start.active and start.from_version == version
    assert start.fallback_reason == (
        f"champion v{version} is incompatible: mode 'partial' differs from this run's 'full'"
    )
    assert head_initialiser(start, NEW_LABELS) is None
