"""The tasks of the one training loop and the fine-tunes on it: the distillation loss, which
modules train, the teacher only answering, the step hook that keeps pruned weights at zero, and
the guard that keeps a fine-tune only if it raises val top-1."""

import pytest
import torch
from torch import nn

from prodcls_pipeline.compression.pruning import prune_unstructured, zero_keeper, zero_masks
from prodcls_pipeline.models.classifier import ProductClassifier
from prodcls_pipeline.training.fine_tune import FineTune, fine_tune, fine_tune_if_better
from prodcls_pipeline.training.loop import evaluate
from prodcls_pipeline.training.samples import TensorSamples
from prodcls_pipeline.training.tasks import (
    ClassificationTask,
    DistillationTask,
    RecoveryTask,
    distillation_loss,
)

FEATURES, CLASSES = 6, 3


def samples(wrong_labels: bool = False) -> TensorSamples:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, FEATURES, generator=generator)
    targets = inputs[:, :CLASSES].argmax(dim=1)
    if wrong_labels:
        targets = (targets + 1) % CLASSES
    return TensorSamples(inputs, targets.numpy())


def model(seed: int) -> ProductClassifier:
    torch.manual_seed(seed)
    return ProductClassifier(
        nn.Sequential(nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU()),
        nn.Linear(16, CLASSES),
    )


def settings(epochs: int, learning_rate: float = 0.05, trainable=lambda name: True) -> FineTune:
    return FineTune(trainable, epochs, learning_rate, batch_size=16, seed=0)


def kl_to(teacher: nn.Module, student: nn.Module) -> float:
    inputs = samples().inputs
    with torch.no_grad():
        return float(distillation_loss(student.eval()(inputs), teacher.eval()(inputs), 2.0))


def test_distillation_loss_is_t_squared_times_the_kl_of_softened_outputs() -> None:
    student, teacher = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    p, q = (teacher / 3).softmax(1), (student / 3).softmax(1)
    expected = 9 * (p * (p / q).log()).sum(1).mean()

    torch.testing.assert_close(distillation_loss(student, teacher, 3.0), expected)
    assert float(distillation_loss(teacher, teacher, 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_moves_the_student_towards_the_teacher() -> None:
    teacher, student = model(1), model(2)
    taught = {k: v.clone() for k, v in teacher.state_dict().items()}
    before = kl_to(teacher, student)
    teacher.train()
    task = DistillationTask(teacher, temperature=2.0, alpha=1.0)
    fine_tune(student, task, samples(), samples(), settings(10, 0.01))
    # The teacher only answers: in eval mode (its batch-norm statistics unchanged), no grads.
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in taught.items())
    assert all(parameter.grad is None for parameter in teacher.parameters())
    assert kl_to(teacher, student) < 0.5 * before


def test_recovery_keeps_pruned_weights_at_zero() -> None:
    pruned = prune_unstructured(model(3), 0.5)
    masks = zero_masks(pruned)
    before = {name: tensor.clone() for name, tensor in pruned.state_dict().items()}
    fine_tune(pruned, RecoveryTask(zero_keeper(pruned)), samples(), samples(), settings(3))
    after = pruned.state_dict()
    for name, mask in masks.items():
        assert torch.equal(after[name] != 0, mask), name
        assert not torch.equal(after[name], before[name]), f"{name} did not train"


def test_recovery_without_the_hook_lets_pruned_weights_move() -> None:
    pruned = prune_unstructured(model(3), 0.5)
    masks = zero_masks(pruned)
    fine_tune(pruned, RecoveryTask(), samples(), samples(), settings(3))
    after = pruned.state_dict()
    assert any(not torch.equal(after[name] != 0, mask) for name, mask in masks.items())


def test_frozen_parameters_and_batch_norm_statistics_stay_fixed() -> None:
    network = model(4)
    frozen = {k: v.clone() for k, v in network.state_dict().items() if not k.startswith("head.")}
    tuned = fine_tune(
        network,
        RecoveryTask(),
        samples(),
        samples(),
        settings(2, trainable=lambda name: name.startswith("head.")),
    )
    assert all(torch.equal(network.state_dict()[k], v) for k, v in frozen.items())
    assert not tuned.training


def test_classification_trains_every_module_batch_norm_included() -> None:
    network = model(4)
    statistics = network.backbone[1].running_mean.clone()
    task = ClassificationTask(nn.CrossEntropyLoss())
    fine_tune(
        network, task, samples(), samples(), settings(2, trainable=lambda name: "head" in name)
    )
    assert not torch.equal(network.backbone[1].running_mean, statistics)


def test_the_seed_fixes_the_shuffled_order_and_so_the_weights() -> None:
    def tuned(seed: int) -> dict[str, torch.Tensor]:
        config = FineTune(lambda name: True, 2, 0.01, batch_size=8, seed=seed)
        task = DistillationTask(model(6), temperature=4.0, alpha=0.5)
        return fine_tune(model(5), task, samples(), samples(), config).state_dict()

    first, second, other = tuned(7), tuned(7), tuned(8)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_a_weight_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DistillationTask(model(8), temperature=4.0, alpha=1.5)


def test_a_fine_tune_with_nothing_trainable_is_refused() -> None:
    with pytest.raises(ValueError, match="trainable"):
        fine_tune(
            model(7), RecoveryTask(), samples(), samples(), settings(1, trainable=lambda n: False)
        )


def test_a_fine_tune_that_helps_on_val_is_kept() -> None:
    untrained = model(9)
    guarded = fine_tune_if_better(untrained, RecoveryTask(), samples(), samples(), settings(5))
    assert guarded.kept and guarded.val_top1_after > guarded.val_top1_before
    assert guarded.model is not untrained
    assert evaluate(guarded.model, samples(), settings(5).config())[1] == guarded.val_top1_after
    assert "kept: val top-1" in guarded.describe("3 recovery epochs")


def test_a_fine_tune_that_hurts_on_val_is_discarded() -> None:
    trained = fine_tune(model(9), RecoveryTask(), samples(), samples(), settings(10))
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    guarded = fine_tune_if_better(
        trained, RecoveryTask(), samples(wrong_labels=True), samples(), settings(5)
    )
    assert not guarded.kept and guarded.model is trained
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in before.items())
    assert guarded.describe("3 recovery epochs").startswith("3 recovery epochs discarded")
