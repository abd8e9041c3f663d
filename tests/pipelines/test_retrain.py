"""`dvc repro train` after a finished run: an identical run resumes its checkpoint and changes
nothing, a change to the training code trains again from the first epoch.

Head mode on half the bundled sample keeps each run to seconds once the embeddings are cached.
"""

from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import SAMPLE_DIR, copy_project, run

pytestmark = pytest.mark.e2e

MAX_EPOCHS = 3
RESUMED = f"Resuming training after epoch {MAX_EPOCHS}"
OTHER_RUN = "is of another run"
# A bug in the training code: the labels of every batch reversed against its images.
TRAINING_CODE_CHANGE = (
    "\n\nClassificationTask.loss = lambda self, model, inputs, labels: self.loss_fn(\n"
    "    model(inputs), labels.flip(0)\n)\n"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("retrain") / "prodcls"
    copy_project(root, {"train": {"mode": "head", "max_epochs": MAX_EPOCHS, "views_per_image": 1}})
    staging = root.parent / "staging"
    run(root, "prodcls", "drops", str(SAMPLE_DIR), "--dest", str(staging), "--count", "2")
    run(root, "prodcls", "land", str(staging / "drop-001"))
    run(root, "dvc", "repro", "train")
    return root


def head_of(project: Path) -> torch.Tensor:
    classifier = torch.load(project / "data" / "06_models" / "classifier.pt", weights_only=True)
    return classifier["head"]["weight"]


def trained_epochs(project: Path) -> list[int]:
    return pd.read_csv(project / "data" / "08_reporting" / "training_history.csv")["epoch"].tolist()


def test_an_identical_run_resumes_its_finished_checkpoint(project: Path) -> None:
    first = head_of(project)
    output = run(project, "dvc", "repro", "--force", "--single-item", "train")
    log = output.stdout + output.stderr
    assert RESUMED in log, log[-3000:]
    assert torch.equal(head_of(project), first)


def test_a_change_to_the_training_code_trains_from_the_first_epoch(project: Path) -> None:
    first = head_of(project)
    with (project / "src" / "prodcls_pipeline" / "training" / "tasks.py").open("a") as module:
        module.write(TRAINING_CODE_CHANGE)
    assert "train" in run(project, "dvc", "status", "--json").stdout

    output = run(project, "dvc", "repro", "--single-item", "train")
    log = output.stdout + output.stderr
    assert OTHER_RUN in log and RESUMED not in log, log[-3000:]
    assert trained_epochs(project) == list(range(1, MAX_EPOCHS + 1))
    assert not torch.equal(head_of(project), first)
