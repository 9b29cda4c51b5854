"""The teacher recipe's parts against hand computations: the one-cycle schedule and label smoothing."""
import math

import pytest
import torch

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.rules.ann import ANNRule
from spiketandem.rules.base import DataInfo
from spiketandem.train import make_scheduler


def test_onecycle_warms_up_linearly_then_follows_a_cosine_down():
    """E = 20 epochs: W = round(0.15 * 20) = 3 warm-up epochs at lr/25, the midpoint, lr; then epoch e >= 3 at
    lr * (1 + cos(pi * (e - 2) / 18)) / 2."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = make_scheduler(optimizer, make_config({"lr_schedule": "onecycle", "epochs": 20}))
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.1 / 25, 0.1 * (1 / 25 + 1) / 2, 0.1] + [0.1 * (1 + math.cos(math.pi * k / 18)) / 2 for k in range(1, 18)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert max(seen) == pytest.approx(0.1) and seen[-1] < 0.001


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_onecycle_over_a_few_epochs_starts_at_the_full_rate_once_there_is_no_room_to_warm_up(epochs):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    make_scheduler(optimizer, make_config({"lr_schedule": "onecycle", "epochs": epochs}))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # W = 1: no warm-up epoch


def test_label_smoothing_is_the_cross_entropy_with_the_smoothed_target():
    """loss = -sum_c q_c log softmax(z)_c  with  q = (1 - eps) onehot(y) + eps / K."""
    torch.manual_seed(0)
    eps, classes = 0.2, 10
    rule = ANNRule(make_config({"arch": "digits-mlp", "rule": "ann", "label_smoothing": eps}), DataInfo(classes, 1, 8))
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 3, 9, 3, 1])
    loss, logits, _ = rule.loss(x, y, epoch=0)
    target = torch.full((5, classes), eps / classes)
    target[torch.arange(5), y] += 1 - eps
    by_hand = -(target * torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))).sum(1).mean()
    assert float(loss.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    plain = ANNRule(make_config({"arch": "digits-mlp", "rule": "ann"}), DataInfo(classes, 1, 8))
    plain.model.load_state_dict(rule.model.state_dict())
    assert float(plain.loss(x, y, 0)[0].detach()) < float(loss.detach())  # the smoothed target costs a confident net more


@pytest.mark.parametrize("eps", [-0.1, 1.0])
def test_label_smoothing_outside_zero_to_one_is_refused(eps):
    with pytest.raises(SpiketandemError, match="label_smoothing"):
        make_config({"label_smoothing": eps})
