"""The post-compression fine-tune: recovery keeps pruned zeros, distillation moves the student
towards its teacher, the frozen parts stay frozen, and a seed fixes the result."""

import torch
from torch import nn

from prodcls_pipeline.distillation import (
    distillation_loss,
    fine_tune_student,
    recalibrate_batch_norm,
)
from prodcls_pipeline.pruning import prune_unstructured, weight_sparsity

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


def test_distillation_moves_the_student_towards_the_teacher() -> None:
    teacher, student = model(1).eval(), model(2)
    before = kl_to(teacher, student)
    fine_tune_student(
        student,
        batches(),
        teacher=teacher,
        trainable=lambda name: True,
        epochs=30,
        learning_rate=0.01,
        seed=0,
        temperature=2.0,
        alpha=1.0,
    )
    assert kl_to(teacher, student) < 0.5 * before


def test_recovery_keeps_pruned_weights_at_zero_and_frozen_parts_fixed() -> None:
    pruned = prune_unstructured(model(3), 0.5)
    frozen = {k: v.clone() for k, v in pruned.state_dict().items() if not k.startswith("3.")}
    fine_tune_student(
        pruned,
        batches(),
        trainable=lambda name: name.startswith("3."),
        epochs=3,
        learning_rate=0.05,
        seed=0,
        keep_zeros=True,
    )
    assert weight_sparsity(pruned) >= 0.5
    # Parameters and batch-norm statistics of the frozen layers are untouched.
    assert all(torch.equal(pruned.state_dict()[k], v) for k, v in frozen.items())


def test_the_same_seed_gives_the_same_weights() -> None:
    def tuned() -> dict[str, torch.Tensor]:
        student = fine_tune_student(
            model(4),
            batches(),
            teacher=model(5),
            trainable=lambda name: True,
            epochs=2,
            learning_rate=0.01,
            seed=7,
        )
        return student.state_dict()

    first, second = tuned(), tuned()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_batch_norm_recalibration_measures_the_data_it_is_given() -> None:
    network = model(6)
    network[1].momentum = 0.3
    inputs, _ = problem()
    recalibrate_batch_norm(network, batches())

    with torch.no_grad():
        hidden = network[0](inputs)
    torch.testing.assert_close(network[1].running_mean, hidden.mean(dim=0))
    assert network[1].momentum == 0.3 and not network.training
