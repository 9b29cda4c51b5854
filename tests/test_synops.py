"""SynOps / MAC counting, energy and firing statistics, checked against hand counts and brute-force loops."""
import itertools

import pytest
import torch
from torch import nn

from spiketandem.errors import SpiketandemError
from spiketandem.metrics import (EnergyModel, FiringStats, count_ops, efficiency_by_T, is_spike_tensor,
                                 operation_ratio, record_activity, spike_raster)
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.student import build_student


def brute_force_conv_synops(x, out_channels, kernel, stride=1, padding=0, dilation=1, groups=1):
    """Independent count: every non-zero input entry costs one AC per output channel of its group for
    each kernel tap (ky, kx) by which some output position reads it, i.e. for which
    oy = (iy + padding - ky * dilation) / stride is a whole number inside the output (same for x)."""
    n, c_in, h, w = x.shape
    kh, kw = kernel
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1

    def read(i, k, size):
        offset = i + padding - k * dilation
        return offset % stride == 0 and 0 <= offset // stride < size

    total = 0
    for _, _, iy, ix in torch.nonzero(x).tolist():
        total += sum(read(iy, ky, oh) and read(ix, kx, ow) for ky in range(kh) for kx in range(kw))
    return total * (out_channels // groups)


def spikes(*shape, p=0.3, seed=0, amplitude=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float() * amplitude


# ---- linear layers ------------------------------------------------------------------------------

def test_linear_spikes_cost_nonzeros_times_fan_out():
    layer = nn.Linear(4, 5)
    x = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])  # 3 spikes, each feeds 5 outputs
    counts, out = count_ops(layer, x)
    assert counts.total_synops() == 15 and counts.total_macs() == 0
    assert counts.samples == 2 and counts.synops_per_sample() == 7.5
    torch.testing.assert_close(out, layer(x))  # counting does not change the result


def test_scaled_and_signed_spikes_are_events():
    layer = nn.Linear(4, 5)
    x = torch.tensor([[0.37, 0, -0.37, 0], [0, 0, 0, 0.37]])
    assert count_ops(layer, x)[0].total_synops() == 15


def test_analog_input_costs_dense_macs():
    layer = nn.Linear(4, 5)
    counts, _ = count_ops(layer, torch.randn(3, 4))
    assert counts.total_macs() == 3 * 4 * 5 and counts.total_synops() == 0


def test_weights_are_never_taken_for_spikes():
    layer = nn.Linear(4, 5)
    nn.init.ones_(layer.weight)  # every weight has one magnitude, like a spike tensor
    counts, _ = count_ops(layer, torch.randn(2, 4))
    assert counts.total_macs() == 40 and counts.total_synops() == 0


@pytest.mark.parametrize("contiguous", [True, False])
def test_linear_on_time_major_3d_input(contiguous):
    layer = nn.Linear(6, 3, bias=contiguous)
    x = spikes(4, 2, 6, seed=1)  # [T, B, features]
    if not contiguous:  # a transposed view goes through clone + _unsafe_view + mm
        x = spikes(2, 4, 6, seed=1).transpose(0, 1)
    counts, _ = count_ops(layer, x)
    assert counts.total_synops() == int((x != 0).sum()) * 3


def test_batched_matmul_spikes_times_weights_and_spikes_times_spikes():
    s = spikes(2, 3, 4, seed=2)
    w = torch.randn(2, 4, 5)
    counts, _ = count_ops(torch.bmm, s, w)
    assert counts.total_synops() == int((s != 0).sum()) * 5
    s2 = spikes(2, 4, 5, seed=3)
    counts, _ = count_ops(torch.bmm, s, s2)
    # spike x spike: one AC per pair of co-active entries (b, n, k) x (b, k, m)
    expected = sum(int(s[b, n, k] != 0 and s2[b, k, m] != 0)
                   for b, n, k, m in itertools.product(range(2), range(3), range(4), range(5)))
    assert counts.total_synops() == expected
    counts, _ = count_ops(torch.bmm, torch.randn(2, 3, 4), w)
    assert counts.total_macs() == 2 * 3 * 4 * 5


# ---- convolutions -------------------------------------------------------------------------------

def test_conv_hand_counts_with_padding():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1  # a corner input reaches 2x2 output positions: 4 taps x 2 channels
    assert count_ops(conv, x)[0].total_synops() == 8
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1  # an interior input reaches all 3x3 positions: 9 taps x 2 channels
    assert count_ops(conv, x)[0].total_synops() == 18


def test_conv_with_stride_hand_count():
    conv = nn.Conv2d(1, 1, 3, stride=2)  # 5x5 -> 2x2 outputs reading rows/cols {0,1,2} and {2,3,4}
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1  # the centre is read by all 4 outputs
    x[0, 0, 0, 0] = 1  # the corner only by output (0, 0)
    x[0, 0, 1, 3] = 1  # row 1 by output row 0 only; column 3 by output column 1 only
    assert count_ops(conv, x)[0].total_synops() == 4 + 1 + 1


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (2, 1, 1, 2),
                                                            (1, 1, 1, 4)])
def test_conv_matches_brute_force(stride, padding, dilation, groups):
    x = spikes(2, 4, 7, 6, p=0.4, seed=stride + padding + groups, amplitude=0.8)
    conv = nn.Conv2d(4, 8, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    counts, _ = count_ops(conv, x)
    assert counts.total_synops() == brute_force_conv_synops(x, 8, (3, 3), stride, padding, dilation, groups)
    # dense MACs: every output entry uses in_channels / groups * 9 weights (padded taps included)
    assert count_ops(conv, torch.randn_like(x))[0].total_macs() == conv(x).numel() * (4 // groups) * 9


def test_depthwise_conv():
    x = spikes(1, 3, 5, 5, seed=5)
    conv = nn.Conv2d(3, 3, 3, padding=1, groups=3)  # each input channel feeds only its own output channel
    assert count_ops(conv, x)[0].total_synops() == brute_force_conv_synops(x, 3, (3, 3), 1, 1, 1, 3)


def test_conv1d_and_transposed_conv():
    x = torch.tensor([[[0.0, 1, 0, 0, 1]]])
    conv = nn.Conv1d(1, 2, 3, padding=1)  # position 1 reaches 3 outputs, position 4 (edge) 2 outputs
    assert count_ops(conv, x)[0].total_synops() == (3 + 2) * 2
    up = nn.ConvTranspose1d(1, 2, 3, stride=2)  # every input reaches 3 outputs per channel, none cropped
    assert count_ops(up, x)[0].total_synops() == 2 * 3 * 2
    assert count_ops(up, torch.randn(1, 1, 5))[0].total_macs() == 5 * 2 * 3


def test_analog_first_layer_is_counted_as_macs():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    counts, _ = count_ops(net, torch.randn(2, 1, 6, 6))
    assert counts.macs["0"] == 2 * 4 * 6 * 6 * 9 and counts.macs["2"] == 2 * 144 * 3
    assert counts.total_synops() == 0


# ---- events through pooling, reshapes and joins ---------------------------------------------------

class PoolThenLinear(nn.Module):
    def __init__(self, pool, features):
        super().__init__()
        self.pool = pool
        self.fc = nn.Linear(features, 3)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def corner_spikes():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = x[0, 0, 3, 3] = 0.5  # two in the top-left 2x2 window, one in the bottom-right
    return x


def test_average_pooled_spikes_route_every_event():
    # pooling folds into the next layer's weights: each of the 3 events reaches 3 outputs
    counts, _ = count_ops(PoolThenLinear(nn.AvgPool2d(2), 4), corner_spikes())
    assert dict(counts.synops) == {"fc": 9} and counts.total_macs() == 0
    counts, _ = count_ops(PoolThenLinear(nn.AdaptiveAvgPool2d(1), 1), corner_spikes())
    assert counts.total_synops() == 9
    # overlapping windows: rows and columns {0,1}, {1,2}, {2,3}; the event at (0, 1) lies in two windows
    # (column 1), the others in one each: 4 routed events x 3 outputs
    counts, _ = count_ops(PoolThenLinear(nn.AdaptiveAvgPool2d(3), 9), corner_spikes())
    assert counts.total_synops() == 4 * 3


def test_max_pooled_spikes_are_one_event_per_window():
    counts, _ = count_ops(PoolThenLinear(nn.MaxPool2d(2), 4), corner_spikes())
    assert counts.total_synops() == 2 * 3  # two windows hold a spike


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, a, b, bias):
        return self.fc(a + b), self.fc(a + bias)


def test_residual_join_delivers_both_streams_and_a_bias_makes_it_analog():
    a = torch.tensor([[1.0, 1, 0, 0]])
    b = torch.tensor([[0.0, 2, 2, 0]])  # another layer's spikes (amplitude 2)
    counts, _ = count_ops(Residual(), a, b, torch.tensor([[0.3, 0.1, 0.2, 0.4]]))
    assert counts.total_synops() == (2 + 2) * 2  # 4 events into 2 outputs
    assert counts.total_macs() == 4 * 2  # spikes + an analog bias: a dense input


def test_dtype_does_not_change_counts():
    x = spikes(2, 3, 5, 5, seed=7)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    reference = count_ops(conv, x)[0].total_synops()
    assert count_ops(conv.double(), x.double())[0].total_synops() == reference


def test_layers_are_attributed_by_module_path():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2)))
    counts, _ = count_ops(net, torch.randn(1, 4))
    assert dict(counts.macs) == {"0": 16, "1.0": 8}
    counts, _ = count_ops(lambda x: x @ torch.randn(4, 2), torch.randn(3, 4))
    assert counts.layers() == ["(outside any layer)"]


def test_is_spike_tensor():
    assert is_spike_tensor(torch.tensor([0.0, 0.7, -0.7, 0.0]))
    assert is_spike_tensor(torch.zeros(3)) and is_spike_tensor(torch.tensor([True, False]))
    assert not is_spike_tensor(torch.tensor([0.0, 0.5, 1.0]))
    long = torch.zeros(1000)
    long[900] = 0.3  # differs only after the first entries
    long[10] = 0.6
    assert not is_spike_tensor(long)


# ---- a whole student --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_and_teacher():
    torch.manual_seed(0)
    teacher = build_model("digits-cnn", 10, 1, 8).eval()
    images = torch.randn(12, 1, 8, 8)
    return build_student(teacher, NeuronConfig(), images, calibration_images=images).eval(), teacher, images


def test_student_counts_equal_the_recorded_spikes_times_fan_out(student_and_teacher):
    student, teacher, x = student_and_teacher
    T = 4
    counts, logits = count_ops(lambda im: student(im, T), x, named=student.graph_module)
    ctx = RunContext(T=T, batch=x.shape[0], records={})
    with torch.no_grad():
        student.run(x, ctx)
    relu, relu_1, relu_2 = (ctx.records[n] for n in ("relu", "relu_1", "relu_2"))
    B = x.shape[0]
    # conv2 (3x3, pad 1, 32 -> 64) sees relu's spikes; fc1 (4096 -> 128) sees relu_1's spikes after a 2x2
    # average pool (each event reaches all 128 outputs); fc2 (128 -> 10) sees relu_2's spikes
    assert counts.synops["conv2"] == brute_force_conv_synops(relu.flatten(0, 1), 64, (3, 3), 1, 1)
    assert counts.synops["fc1"] == int(relu_1.sum()) * 128
    assert counts.synops["fc2"] == int(relu_2.sum()) * 10
    assert dict(counts.macs) == {"conv1": B * 32 * 8 * 8 * 9}  # the analog image, once per inference
    assert logits.shape == (T, B, 10)


def test_teacher_macs_and_ratio(student_and_teacher):
    student, teacher, x = student_and_teacher
    t_counts, _ = count_ops(teacher, x, dense=True)
    hand = 32 * 64 * 9 + 64 * 32 * 64 * 9 + 64 * 16 * 128 + 128 * 10  # conv1, conv2, fc1, fc2 per image
    assert t_counts.macs_per_sample() == hand
    s_counts, _ = count_ops(lambda im: student(im, 4), x, named=student.graph_module)
    ratio = operation_ratio(lambda im: student(im, 4), teacher, x, named=student.graph_module)
    assert ratio == pytest.approx((s_counts.total_synops() + s_counts.total_macs()) / (hand * x.shape[0]))
    report = efficiency_by_T(lambda im, T: student(im, T).mean(0), student.graph_module, teacher, x, [2], 4)
    assert report["synops_ratio"] == pytest.approx(ratio)
    assert set(report["synops_ratio_by_T"]) == {"2", "4"}
    assert report["ops_by_layer"]["conv1"]["ratio"] == pytest.approx(1.0)  # the analog layer costs what the ANN's does


# ---- energy ---------------------------------------------------------------------------------------

def test_energy_model_hand_numbers():
    e = EnergyModel()  # 45 nm: MAC 4.6 pJ, AC 0.9 pJ
    assert e.picojoules(macs=10, synops=100) == pytest.approx(46 + 90)
    cmp = e.compare(student_macs=1000, student_synops=2e6, teacher_macs=1e6)
    assert cmp["student_uj"] == pytest.approx((4600 + 1.8e6) * 1e-6)
    assert cmp["teacher_uj"] == pytest.approx(4.6)
    assert cmp["ratio"] == pytest.approx((4600 + 1.8e6) / 4.6e6)
    assert EnergyModel(mac_pj=1, ac_pj=1).compare(0, 5, 10)["ratio"] == pytest.approx(0.5)
    with pytest.raises(SpiketandemError, match="ac_pj"):
        EnergyModel(ac_pj=-1)


# ---- firing statistics ------------------------------------------------------------------------------

def test_firing_stats_hand_example():
    # T = 4, 2 samples, 3 neurons; spike counts per (sample, neuron): [[4, 0, 1], [0, 0, 2]]
    s = torch.zeros(4, 2, 3)
    s[:, 0, 0] = 1
    s[2, 0, 2] = 1
    s[0, 1, 2] = s[3, 1, 2] = 1
    stats = FiringStats()
    stats.update({"layer": s})
    got = stats.summary()["layer"]
    assert got["rate"] == pytest.approx(7 / 24)
    assert got["silent"] == pytest.approx(3 / 6)  # (0,1), (1,0), (1,1)
    assert got["dead"] == pytest.approx(1 / 3)  # neuron 1 never fires
    assert stats.histograms()["layer"] == pytest.approx([3 / 6, 1 / 6, 1 / 6, 0, 1 / 6])
    stats.update({"layer": torch.zeros(4, 2, 3)})  # two more silent samples
    assert stats.summary()["layer"]["rate"] == pytest.approx(7 / 48)
    assert stats.summary()["layer"]["dead"] == pytest.approx(1 / 3)


def test_raster_lists_spike_times_of_active_neurons():
    s = torch.zeros(3, 1, 4)
    s[0, 0, 1] = s[2, 0, 1] = s[1, 0, 3] = 1
    r = spike_raster({"l": s})["l"]
    assert r["neurons"] == 4 and r["active"] == 2 and r["shown"] == [1, 3] and r["times"] == [[0, 2], [1]]


def test_record_activity_on_a_student(student_and_teacher):
    student, _, x = student_and_teacher
    activity = record_activity(student, [(x[:5], None), (x[5:], None)], T=4, max_samples=8)
    assert activity["samples"] == 8 and list(activity["layers"]) == ["relu", "relu_1", "relu_2"]
    ctx = RunContext(T=4, batch=8, records={})
    with torch.no_grad():
        student.run(x[:8], ctx)
    assert activity["layers"]["relu_1"]["rate"] == pytest.approx(float(ctx.records["relu_1"].mean()))
    assert sum(activity["histograms"]["relu"]) == pytest.approx(1.0)
