"""The training loop under torchrun: two CPU processes (gloo) in a real process group, DDP
averaging the gradients of each rank's share of every batch."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONFIG

from prodcls_pipeline.training.checkpoints import CheckpointStore
from prodcls_pipeline.training.distributed import (
    DistributedConfig,
    Rank,
    launch,
    shard,
    torchrun_command,
)
from prodcls_pipeline.training.modes import fit_head

# No dropout and unweighted classes: two shares of a batch then average to the batch's gradient.
EXACT = dataclasses.replace(CONFIG, dropout=0.0, class_balance="none", max_epochs=6)
TWO_PROCESSES = DistributedConfig(processes=2)


def blobs(seed: int, per_class: int, classes: int = 3, dim: int = 8):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 2, size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels] + rng.normal(0, 1.5, size=(len(labels), dim))
    return torch.from_numpy(features.astype(np.float32)), labels


def fit(config, checkpoints: CheckpointStore | None = None):
    x_train, y_train = blobs(0, per_class=30)
    x_val, y_val = blobs(1, per_class=10)
    return fit_head(x_train, y_train, x_val, y_val, 3, config, 7, checkpoints, "run")


def test_two_processes_train_as_one_process_does_and_a_rerun_resumes_rank_0s_checkpoint(
    tmp_path: Path,
) -> None:
    single = fit(EXACT)
    checkpoints = CheckpointStore(tmp_path / "checkpoints")
    config = dataclasses.replace(EXACT, distributed=TWO_PROCESSES)
    ddp = fit(config, checkpoints)

    assert (single.processes, ddp.processes) == (1, 2)
    assert ddp.history["val_accuracy"].max() > 0.9
    np.testing.assert_allclose(
        ddp.history["val_accuracy"], single.history["val_accuracy"], atol=1 / 30
    )
    np.testing.assert_allclose(ddp.history["train_loss"], single.history["train_loss"], rtol=1e-4)
    torch.testing.assert_close(
        ddp.model.head.weight, single.model.head.weight, rtol=1e-4, atol=1e-5
    )

    saved = checkpoints.load()
    assert saved is not None and saved["epoch"] == len(ddp.history), "rank 0 saved each epoch"
    # Mark the finished run's best weights: a resumed run restores them, a fresh one cannot.
    saved["best_state"]["head.weight"] += 1.0
    checkpoints.save(saved)
    again = fit(config, checkpoints)
    assert again.history.equals(ddp.history)
    torch.testing.assert_close(again.model.head.weight, ddp.model.head.weight + 1.0)


def test_a_failing_worker_fails_the_launch_with_its_error(capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(RuntimeError, match="torchrun exited with 1"):
        launch(int, ("not a number",), {}, TWO_PROCESSES, "cpu")
    assert "invalid literal for int() with base 10: 'not a number'" in capfd.readouterr().err


def test_each_rank_takes_every_world_size_th_sample() -> None:
    batch = list(range(10))
    assert shard(batch, Rank(rank=1, world_size=2, local_rank=1)) == [1, 3, 5, 7, 9]
    assert shard(batch, Rank(rank=0, world_size=4, local_rank=0)) == [0, 4, 8]
    assert shard([5], Rank(rank=1, world_size=2, local_rank=1)) == [5]
    assert shard(batch, None) == batch


def test_several_nodes_meet_at_the_rendezvous_endpoint(tmp_path: Path) -> None:
    config = DistributedConfig(processes=2, nodes=3, rendezvous_endpoint="head:29400")
    command = torchrun_command(config, tmp_path / "spec.pkl", tmp_path / "result.pt")
    assert "--nnodes=3" in command and "--nproc-per-node=2" in command
    assert "--rdzv-endpoint=head:29400" in command and "--standalone" not in command
    assert "--standalone" in torchrun_command(TWO_PROCESSES, tmp_path / "s", tmp_path / "r")
    params = {"processes": 2, "nodes": 2, "rendezvous_endpoint": "", "work_dir": ""}
    with pytest.raises(ValueError, match="rendezvous_endpoint"):
        DistributedConfig.from_params(params)
