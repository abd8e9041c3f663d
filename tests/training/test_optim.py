import pytest
import torch
from torch import nn

from prodcls_pipeline.training.optim import build_optimizer, learning_rate_factor, parameter_groups


def factors(schedule: str, **overrides) -> list[float]:
    options = {"max_epochs": 6, "warmup_epochs": 2, "step_size": 2, "step_gamma": 0.1}
    options |= overrides
    return [learning_rate_factor(epoch, schedule, **options) for epoch in range(6)]


def test_linear_warmup_then_cosine_to_zero() -> None:
    values = factors("cosine", max_epochs=6, warmup_epochs=2)
    assert values[:2] == pytest.approx([1 / 3, 2 / 3])
    assert values[2] == pytest.approx(1.0)
    assert values[3] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi / 4)).item()))
    assert values == sorted(values[:3]) + sorted(values[2:], reverse=True)[1:]


def test_step_and_constant_schedules() -> None:
    assert factors("step", warmup_epochs=0) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert factors("constant", warmup_epochs=0) == [1.0] * 6
    with pytest.raises(ValueError, match="train.schedule"):
        factors("exponential")


def test_head_and_backbone_learn_at_their_own_rates() -> None:
    backbone, head = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), nn.Linear(4, 2)
    backbone[0].requires_grad_(False)
    groups = parameter_groups(head, backbone, 1e-2, 1e-4)
    assert [(group["name"], group["lr"], len(group["params"])) for group in groups] == [
        ("head", 1e-2, 2),
        ("backbone", 1e-4, 2),
    ]
    optimizer = build_optimizer(groups, "sgd", 0.0, 0.9, True)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-2, 1e-4]
    assert optimizer.param_groups[0]["nesterov"]
    assert len(parameter_groups(head, nn.Identity(), 1e-2, 1e-4)) == 1
    with pytest.raises(ValueError, match="train.optimizer"):
        build_optimizer(groups, "lion", 0.0, 0.9, True)
