"""NIR export: the mapping in closed form, the round trip through nir.write/nir.read, an independent
reference simulation of the NIR graph, and an import into Norse, all against our student's spikes."""
import copy
import warnings

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.export import neuron_node_names, simulate_nir, student_to_nir, write_nir
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.teachers import save_teacher
from spiketandem.rules import get_rule
from spiketandem.rules.base import DataInfo
from spiketandem.model_file import save_model, zoo_architecture
from spiketandem.runs import RunFolder
from spiketandem.student import build_student

T = 12


def _student(arch="digits-cnn", kind="lif", reset="zero", seed=0):
    torch.manual_seed(seed)
    teacher = build_model(arch, 10, 1, 8, 0.25).eval()
    # calibration images differ from the test inputs: no input sits exactly on a threshold
    return build_student(teacher, NeuronConfig(kind=kind, reset=reset, tau_m=4.0), torch.zeros(2, 1, 8, 8),
                         calibration_images=torch.randn(64, 1, 8, 8)).eval()


def _our_spikes(student, x):
    ctx = RunContext(T=T, batch=x.shape[0], records={})
    with torch.no_grad():
        out = student.run(x, ctx)
    return out, [ctx.records[layer.name].sum(0) for layer in student.layers]


def test_lif_and_amplitude_mapping_closed_form():
    """tau = dt/(1-a), r = 1, v_thr = (1-a) theta (one float32 ulp below), next weights x amplitude."""
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    student = build_student(teacher, NeuronConfig(kind="lif", leak=0.8, reset="zero"), torch.zeros(2, 1, 2, 2),
                            calibration_images=torch.randn(32, 1, 2, 2))
    neuron = student.neurons[student.layers[0].name]
    neuron.amplitude.fill_(2.5)
    theta = float(neuron.threshold)
    g = student_to_nir(student, dt=1e-3)
    lif = g.nodes["lif1"]
    np.testing.assert_allclose(lif.tau, 1e-3 / 0.2, rtol=1e-6)
    np.testing.assert_allclose(lif.r, 1.0)
    np.testing.assert_allclose(lif.v_threshold, 0.2 * theta, rtol=1e-6)
    assert np.all(lif.v_threshold < np.float32(0.2 * theta))
    np.testing.assert_allclose(g.nodes["affine2"].weight, 2.5 * teacher[3].weight.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(g.nodes["affine1"].weight, teacher[1].weight.detach().numpy(), rtol=1e-6)
    assert g.metadata["dt"] == 1e-3 and g.metadata["reset"] == "zero"
    # forward Euler of tau dv/dt = -v + r I with these numbers, by hand: v1 = 0.2 I, v2 = 0.8 v1 + 0.2 I
    I = 1.0
    v1 = 0 + 1e-3 / float(lif.tau.flat[0]) * (-0 + I)
    v2 = v1 + 1e-3 / float(lif.tau.flat[0]) * (-v1 + I)
    assert v1 == pytest.approx(0.2 * I) and v2 == pytest.approx(0.2 * (0.8 * I + I))  # = (1-a) U[2]


@pytest.mark.parametrize("arch,kind,reset", [("digits-cnn", "lif", "zero"), ("digits-cnn", "if", "subtract"),
                                             ("digits-mlp", "lif", "subtract"), ("digits-mlp", "if", "zero")])
def test_roundtrip_matches_reference_simulation(tmp_path, arch, kind, reset):
    student = _student(arch, kind, reset)
    path = write_nir(student, tmp_path / "s.nir", allow_subtract_reset=True)
    graph = nir.read(str(path))
    x = torch.randn(8, 1, 8, 8)
    out, ours = _our_spikes(student, x)
    ref_out, counts = simulate_nir(graph, x, T)
    names = neuron_node_names(graph)
    assert len(names) == len(ours)
    for name, mine in zip(names, ours):
        assert mine.sum() > 0, f"{name} is silent: the comparison would be vacuous"
        assert torch.equal(mine.double(), counts[name]), name
    torch.testing.assert_close(ref_out.float(), out, atol=1e-5, rtol=1e-5)
    # the avg pool before fc1 became a sum pool, its 1/4 folded into fc1 with the amplitude
    if arch == "digits-cnn":
        assert any(isinstance(n, nir.SumPool2d) for n in graph.nodes.values())


class _PooledResidual(nn.Module):
    """Average pooling whose output feeds a convolution and the skip of a residual addition, as in a resnet18
    with its max pooling swapped for average pooling: pooling's 1/4 cannot fold into a weight on the skip."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x) + x).flatten(1))


def test_a_pooling_scale_that_meets_no_weight_is_written_as_a_diagonal_layer(tmp_path):
    """With unit spike amplitudes pooling's 1/4 stands alone on the skip and becomes a diagonal 1x1 conv, in
    float64 like the weights it sits among; the file computes the student's spikes."""
    torch.manual_seed(0)
    student = build_student(_PooledResidual().eval(), NeuronConfig(kind="if", reset="zero"), torch.zeros(2, 1, 8, 8),
                            calibration_images=torch.randn(64, 1, 8, 8)).eval()
    for neuron in student.neurons.values():
        neuron.amplitude.fill_(1.0)  # no amplitude scale to merge with: the pooling scale is alone
    graph = nir.read(str(write_nir(student, tmp_path / "s.nir")))
    diagonal = [n for n in graph.nodes.values() if isinstance(n, nir.Conv2d) and n.weight.shape[-2:] == (1, 1)]
    assert len(diagonal) == 1
    np.testing.assert_array_equal(diagonal[0].weight[:, :, 0, 0], np.eye(4, dtype=np.float32) / 4)
    x = torch.randn(8, 1, 8, 8)
    out, ours = _our_spikes(student, x)
    ref_out, counts = simulate_nir(graph, x, T)
    for name, mine in zip(neuron_node_names(graph), ours):
        assert mine.sum() > 0, f"{name} is silent: the comparison would be vacuous"
        assert torch.equal(mine.double(), counts[name]), name
    torch.testing.assert_close(ref_out.float(), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_norse_import_gives_our_spike_counts(tmp_path, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import norse.torch as norse
    student = _student("digits-cnn", kind, "zero", seed=1)
    graph = nir.read(str(write_nir(student, tmp_path / "s.nir")))
    x = torch.randn(3, 1, 8, 8)
    out, ours = _our_spikes(student, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = norse.from_nir(graph, dt=graph.metadata["dt"], ignore_warnings=True)
    counts: dict[str, float] = {}
    for name, module in model.named_modules():
        if type(module).__name__ in ("LIFBoxCell", "IAFCell"):
            module.register_forward_hook(
                lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + float(o[0].sum())))
    outputs = []
    with torch.no_grad():
        for b in range(x.shape[0]):  # NIR shapes exclude the batch: Norse's graph runs one sample at a time
            state, steps = None, []
            for _ in range(T):
                y, state = model(x[b], state)
                steps.append(y)
            outputs.append(torch.stack(steps))
    names = neuron_node_names(graph)
    assert [counts[n] for n in names] == [float(s.sum()) for s in ours]
    assert min(counts.values()) > 0
    torch.testing.assert_close(torch.stack(outputs, 1), out, atol=1e-4, rtol=1e-4)


def test_subtract_reset_refused_with_explanation():
    with pytest.raises(SpiketandemError, match="reset.*subtraction.*--reset zero"):
        student_to_nir(_student(reset="subtract"))


def test_maxpool_refused():
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(64, 10)).eval()
    student = build_student(teacher, NeuronConfig(reset="zero"), torch.zeros(2, 1, 8, 8))
    with pytest.raises(SpiketandemError, match="MaxPool2d"):
        student_to_nir(student)


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_convolution_refused_by_name_in_one_line(groups):
    """NIR 1.0's Conv node does not type a grouped convolution: refused before NIR sees it, with the fix."""
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, groups=groups),
                            nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()
    student = build_student(teacher, NeuronConfig(reset="zero"), torch.zeros(2, 1, 8, 8))
    kind = ", depthwise" if groups == 4 else ""
    with pytest.raises(SpiketandemError, match=rf"Conv2d\(groups={groups}\).*grouped convolution \(groups={groups}"
                       rf"{kind}\).*use groups=1") as refused:
        student_to_nir(student)
    assert "\n" not in str(refused.value)


def test_a_neuron_kind_without_nir_node_is_refused():
    """Only IF and LIF neurons have NIR nodes: any other kind is refused by name, never written as LIF."""
    student = _student(kind="lif")
    for layer in student.neurons.values():  # a kind added by the neuron recipe (neuron.NEURON_MODELS), not IF/LIF
        layer.config = copy.copy(layer.config)
        object.__setattr__(layer.config, "kind", "adaptive")
    with pytest.raises(SpiketandemError, match="'adaptive' neuron of layer .* has no NIR node.*--neuron if or lif"):
        student_to_nir(student)


def test_a_layer_nir_itself_refuses_is_named_in_one_line(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("groups must be 1")
    monkeypatch.setattr(nir, "Conv2d", refuse)  # what NIR's own checks raise for a layer it cannot hold
    with pytest.raises(SpiketandemError, match=r"^NIR cannot represent the student's conv layer \S+: groups must be "
                       r"1; export a student whose teacher uses only the layers NIR has") as refused:
        student_to_nir(_student())
    assert "\n" not in str(refused.value)


def test_export_command_writes_a_readable_file(tmp_path):
    run = RunFolder(tmp_path / "run")
    cfg = make_config({"dataset": "digits", "arch": "digits-mlp", "width": 0.25, "reset": "zero", "T": 4,
                       "out": str(run.path), "progress": False})
    info = DataInfo(10, 1, 8)
    teacher = build_model("digits-mlp", 10, 1, 8, 0.25).eval()
    run.write_config(cfg)
    save_teacher(teacher, cfg, info, 0.0, run.file("teacher.pt"))
    rule = get_rule("ltl-offline")(cfg, info, teacher, info.example_input())
    save_model(rule, run.file("student.pt"), zoo_architecture(cfg))
    out = tmp_path / "student.nir"
    assert main(["export", str(run.path), str(out), "--format", "nir", "--dt", "0.001"]) == 0
    graph = nir.read(str(out))
    assert graph.metadata["dt"] == 0.001 and graph.metadata["rule"] == "ltl-offline"
    assert [type(graph.nodes[n]).__name__ for n in neuron_node_names(graph)] == ["LIF", "LIF"]
    assert main(["export", str(tmp_path / "nowhere"), str(out)]) == 2
