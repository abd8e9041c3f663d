"""The post-compression fine-tune: recovery keeps pruned zeros, distillation moves the student
towards its teacher, the frozen parts stay frozen, and a seed fixes the result."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prodcls_pipeline.compression.pruning import prune_unstructured, zero_masks
from prodcls_pipeline.training.distillation import (
    distillation_loss,
    fine_tune_if_better,
    fine_tune_student,
    top1_accuracy,
)

FEATURES, CLASSES = 6, 3


def problem() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, FEATURES, generator=generator)
    return inputs, inputs[:, :CLASSES].argmax(dim=1)


def batches():
    inputs, targets = problem()
    return lambda: zip(inputs.split(16), targets.split(16), strict=True)


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, CLASSES)
    )


def kl_to(teacher: nn.Module, student: nn.Module) -> float:
    inputs, _ = problem()
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
    fine_tune_student(
        student,
        batches(),
        teacher=teacher,
        trainable=lambda name: True,
        epochs=10,
        learning_rate=0.01,
        seed=0,
        temperature=2.0,
        alpha=1.0,
    )
    # The teacher only answers: in eval mode (its batch-norm statistics unchanged), no grads.
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in taught.items())
    assert all(parameter.grad is None for parameter in teacher.parameters())
    assert kl_to(teacher, student) < 0.5 * before


def test_recovery_keeps_pruned_weights_at_zero() -> None:
    pruned = prune_unstructured(model(3), 0.5)
    masks = zero_masks(pruned)
    before = {name: tensor.clone() for name, tensor in pruned.state_dict().items()}
    fine_tune_student(
        pruned,
        batches(),
        trainable=lambda name: True,
        epochs=3,
        learning_rate=0.05,
        seed=0,
        keep_zeros=True,
    )
    after = pruned.state_dict()
    for name, mask in masks.items():
        assert torch.equal(after[name] != 0, mask), name
        assert not torch.equal(after[name], before[name]), f"{name} did not train"


def test_frozen_parameters_and_batch_norm_statistics_stay_fixed() -> None:
    network = model(4)
    frozen = {k: v.clone() for k, v in network.state_dict().items() if not k.startswith("3.")}
    fine_tune_student(
        network,
        batches(),
        trainable=lambda name: name.startswith("3."),
        epochs=2,
        learning_rate=0.05,
        seed=0,
    )
    assert all(torch.equal(network.state_dict()[k], v) for k, v in frozen.items())
    assert not network.training


def test_the_seed_fixes_the_shuffled_order_and_so_the_weights() -> None:
    loader = DataLoader(TensorDataset(*problem()), batch_size=8, shuffle=True)

    def tuned(seed: int) -> dict[str, torch.Tensor]:
        student = fine_tune_student(
            model(5),
            lambda: loader,
            teacher=model(6),
            trainable=lambda name: True,
            epochs=2,
            learning_rate=0.01,
            seed=seed,
        )
        return student.state_dict()

    first, second, other = tuned(7), tuned(7), tuned(8)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_top1_accuracy_counts_the_highest_logit() -> None:
    identity = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3))
    images = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [5.0, 0, 0]])
    targets = torch.tensor([0, 1, 2, 2])
    assert (
        top1_accuracy(identity, lambda: [(images[:2], targets[:2]), (images[2:], targets[2:])])
        == 0.75
    )


def test_a_fine_tune_that_helps_on_val_is_kept() -> None:
    untrained = model(9)
    guarded = fine_tune_if_better(
        untrained, batches(), batches=batches(), trainable=lambda name: True, epochs=5,
        learning_rate=0.05, seed=0,
    )  # fmt: skip
    assert guarded.kept and guarded.val_top1_after > guarded.val_top1_before
    assert guarded.model is not untrained
    assert top1_accuracy(guarded.model, batches()) == guarded.val_top1_after
    assert "kept: val top-1" in guarded.describe("3 recovery epochs")


def test_a_fine_tune_that_hurts_on_val_is_discarded() -> None:
    trained = fine_tune_student(
        model(9), batches(), trainable=lambda name: True, epochs=10, learning_rate=0.05, seed=0
    )
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    inputs, targets = problem()
    wrong_labels = lambda: zip(inputs.split(16), ((targets + 1) % CLASSES).split(16), strict=True)  # noqa: E731
    guarded = fine_tune_if_better(
        trained, batches(), batches=wrong_labels, trainable=lambda name: True, epochs=5,
        learning_rate=0.05, seed=0,
    )  # fmt: skip
    assert not guarded.kept and guarded.model is trained
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in before.items())
    assert guarded.describe("3 recovery epochs").startswith("3 recovery epochs discarded")


def test_a_weight_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        fine_tune_student(
            model(7), batches(), trainable=lambda name: True, epochs=1, learning_rate=0.01,
            seed=0, teacher=model(8), alpha=1.5,
        )  # fmt: skip
