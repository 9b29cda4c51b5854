"""TET (Deng et al. 2022): the loss against a hand computation, prediction from the mean output,
and learning on digits."""
import math

import pytest
import torch

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.rules.base import DataInfo
from spiketandem.rules.tet import TET, tet_loss


def hand_cross_entropy(logits, label):
    """-log softmax(logits)[label] for one sample, written out."""
    m = max(logits)
    log_z = m + math.log(sum(math.exp(v - m) for v in logits))
    return log_z - logits[label]


def test_lambda_zero_is_the_mean_per_step_cross_entropy():
    g = torch.Generator().manual_seed(0)
    T, B, K = 5, 3, 4
    out = torch.randn(T, B, K, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 1])
    expected = sum(hand_cross_entropy(out[t, b].tolist(), int(y[b])) for t in range(T) for b in range(B)) / (T * B)
    assert float(tet_loss(out, y, 0.0)) == pytest.approx(expected, rel=1e-12)
    # and it differs from STBP's cross-entropy of the mean output (Jensen: mean of CE >= CE of mean)
    stbp = sum(hand_cross_entropy(out[:, b].mean(0).tolist(), int(y[b])) for b in range(B)) / B
    assert expected > stbp + 1e-3


def test_lambda_mixes_in_the_mse_to_phi():
    g = torch.Generator().manual_seed(1)
    out = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([2, 0])
    ce = sum(hand_cross_entropy(out[t, b].tolist(), int(y[b])) for t in range(4) for b in range(2)) / 8
    mse = sum((v - 1.0) ** 2 for v in out.flatten().tolist()) / out.numel()
    assert float(tet_loss(out, y, 1.0)) == pytest.approx(mse, rel=1e-12)
    assert float(tet_loss(out, y, 0.25)) == pytest.approx(0.75 * ce + 0.25 * mse, rel=1e-12)


def test_prediction_is_the_mean_output_over_time():
    cfg = make_config({"rule": "tet", "arch": "digits-cnn", "T": 3})
    rule = TET(cfg, DataInfo(10, 1, 8), None, torch.randn(4, 1, 8, 8))
    rule.train(False)
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(rule.predict(x, 3), rule.model(x, 3).mean(0))


def test_bad_lambda_is_a_clear_error():
    cfg = make_config({"rule": "tet", "arch": "digits-cnn", "tet_lambda": 2.0})
    with pytest.raises(SpiketandemError, match="tet-lambda"):
        TET(cfg, DataInfo(10, 1, 8), None, torch.randn(4, 1, 8, 8))


def test_tet_learns_digits(direct_run):
    assert direct_run("tet")["student_acc"] > 0.8  # chance is 0.10
