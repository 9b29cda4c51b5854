"""NIR export of every student the builder accepts: residual additions (ResNet-20: nodes
with several inputs), module and functional average pooling (plain, adaptive, padded, before the ReLU,
1-d), flatten/reshape variants, BatchNorm after an addition; each checked spike for spike against the
student by the reference simulator, which reads the file alone.  And refusals only for what NIR cannot
express, each naming the node and the alternative."""
import nir
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spiketandem.errors import SpiketandemError
from spiketandem.export import neuron_layers, simulate_nir, student_to_nir, write_nir
from spiketandem.export.verify import student_activity
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student

T = 16


def _build(teacher, shape=(1, 8, 8), kind="if", seed=0, threshold_scale=1.0, **kw):
    torch.manual_seed(seed)
    teacher = teacher.eval()
    student = build_student(teacher, NeuronConfig(kind=kind, reset="zero", tau_m=10.0), torch.zeros(2, *shape),
                            calibration_images=torch.randn(64, *shape), percentile=90, **kw).eval()
    for layer in student.neurons.values():  # random teachers: lower thresholds so that every layer spikes within T
        layer.threshold.mul_(threshold_scale)
    return student


def _matches_reference(student, tmp_path, shape=(1, 8, 8), n=4, flavour="nir"):
    """Write, read back, simulate from the file alone: every layer's spike counts equal the student's."""
    graph = nir.read(str(write_nir(student, tmp_path / "s.nir", flavour=flavour)))
    x = torch.randn(n, *shape)
    out, ours = student_activity(student, x, T)
    ref_out, counts = simulate_nir(graph, x, T)
    layers = neuron_layers(graph)
    assert sorted(layers.values()) == sorted(ours), "one NIR neuron node per student layer"
    for name, layer in layers.items():
        assert ours[layer].sum() > 0, f"{layer} is silent: the comparison would be vacuous"
        assert torch.equal(ours[layer], counts[name]), f"{name} ({layer})"
    torch.testing.assert_close(ref_out, out, atol=1e-4, rtol=1e-4)
    return graph


def _several_inputs(graph) -> int:
    targets = [b for _, b in graph.edges]
    return sum(targets.count(t) > 1 for t in set(targets))


def test_resnet20_residual_additions_export_and_match(tmp_path):
    torch.manual_seed(0)
    student = _build(build_model("resnet20", 10, 1, 8, 0.25), threshold_scale=0.6)
    graph = _matches_reference(student, tmp_path, n=8)
    assert _several_inputs(graph) == 9  # one join per basic block
    # 2 downsampling blocks fold the amplitude into their 1x1 conv; the 7 identity shortcuts need a scale node
    assert len(graph.metadata["scale_nodes"]) == 7  # name -> the student node whose spikes it scales
    assert all(isinstance(graph.nodes[n], nir.Conv2d) for n in graph.metadata["scale_nodes"])
    assert not any(isinstance(n, (nir.Scale, nir.AvgPool2d)) for n in graph.nodes.values())  # importers lack them


class Pools(nn.Module):
    """Average pooling as modules and as functions, before and after the ReLU."""

    def __init__(self, functional: bool):
        super().__init__()
        self.functional = functional
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.avg_pool2d(x, 2) if self.functional else self.pool(x)           # after the ReLU: into c2
        x = F.relu(F.avg_pool2d(self.c2(x), 2) if self.functional else self.pool(self.c2(x)))  # before the ReLU
        x = F.relu(self.c3(x))
        x = F.adaptive_avg_pool2d(x, 1) if self.functional else self.gap(x)
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("functional", [False, True])
def test_module_and_functional_average_pooling(tmp_path, functional):
    graph = _matches_reference(_build(Pools(functional)), tmp_path)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("SumPool2d") == 3 and "AvgPool2d" not in kinds and not graph.metadata.get("scale_nodes")


class PaddedPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)   # padded: written as a conv with fixed weights
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        return self.fc(self.pool(F.relu(self.c1(x))).flatten(1))


def test_padded_average_pool(tmp_path):
    graph = _matches_reference(_build(PaddedPool()), tmp_path)
    assert any(name.startswith("poolconv") for name in graph.nodes)


class Flattens(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(4 * 16, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.c1(x)), 2)
        x = {"module": lambda v: self.flat(v), "method": lambda v: v.flatten(1), "torch": lambda v: torch.flatten(v, 1),
             "view": lambda v: v.view(v.size(0), -1), "view-1": lambda v: v.view(-1, 4 * 16),
             "reshape": lambda v: v.reshape(v.shape[0], -1)}[self.how](x)
        return self.fc2(F.relu(self.fc1(x)).reshape(-1, 24))   # a reshape to the same shape is no node


@pytest.mark.parametrize("how", ["module", "method", "torch", "view", "view-1", "reshape"])
def test_flatten_and_reshape_variants(tmp_path, how):
    graph = _matches_reference(_build(Flattens(how)), tmp_path)
    assert sum(isinstance(n, nir.Flatten) for n in graph.nodes.values()) == 1


class PreActivation(nn.Module):
    """A sum consumed by a conv and a BatchNorm after an addition (no conv to fold it into)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        a = F.relu(self.c1(x))
        b = F.relu(self.c2(a))
        s = self.c3(a + b)                       # a conv fed by the sum of two spike streams
        y = F.relu(self.bn(s + a))               # BN after an addition: a per-channel affine map
        return self.fc((y + y).flatten(1))       # x + x: one signal counted twice


def test_sums_into_a_conv_and_batchnorm_after_an_addition(tmp_path):
    model = PreActivation()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    _matches_reference(_build(model), tmp_path)


class OneD(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.pool = nn.AvgPool1d(2)
        self.fc = nn.Linear(4 * 8, 5)

    def forward(self, x):
        return self.fc(self.pool(F.relu(self.c1(x))).flatten(1))


def test_conv1d_and_1d_pooling(tmp_path):
    graph = _matches_reference(_build(OneD(), shape=(2, 16)), tmp_path, shape=(2, 16))
    assert sum(isinstance(n, nir.Conv1d) for n in graph.nodes.values()) == 2  # the pool is a fixed-weight conv


def test_lif_resnet_in_the_snntorch_flavour(tmp_path):
    torch.manual_seed(0)
    student = _build(build_model("resnet20", 10, 1, 8, 0.25), kind="lif", threshold_scale=0.4)
    _matches_reference(student, tmp_path, n=8, flavour="snntorch")


# ---- refusals: what NIR 1.0 cannot express, naming the node and the way out ----------------------------------

class MaxPooled(nn.Module):
    def __init__(self, functional):
        super().__init__()
        self.functional = functional
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.c1(x))
        return self.fc((F.max_pool2d(x, 2) if self.functional else self.pool(x)).flatten(1))


@pytest.mark.parametrize("functional", [False, True])
def test_max_pooling_refused_with_the_alternative(functional):
    with pytest.raises(SpiketandemError, match=r"(?i)max.?pool.*at student node '\w+'.*average pooling"):
        student_to_nir(_build(MaxPooled(functional)))


class Sliced(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 10)

    def forward(self, x):
        return self.fc(F.relu(self.c1(x))[:, :, ::2, ::2].flatten(1))


def test_slicing_refused_with_the_alternative():
    with pytest.raises(SpiketandemError, match="indexing at student node 'getitem'.*strided 1x1 conv"):
        student_to_nir(_build(Sliced()))


class Concatenated(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):
        return self.fc(torch.cat([F.relu(self.c1(x)), F.relu(self.c2(x))], 1).flatten(1))


def test_concatenation_refused_with_the_alternative():
    with pytest.raises(SpiketandemError, match="torch.cat at student node 'cat'.*concatenation.*sum the branches"):
        student_to_nir(_build(Concatenated()))


class Partial(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(F.relu(self.c1(x))).flatten(1)   # Linear on the last axis of [C, L]


def test_linear_on_a_matrix_and_partial_flatten_refused_with_the_alternative():
    with pytest.raises(SpiketandemError, match="Linear at student node 'fc'.*flatten"):
        student_to_nir(_build(Partial(), shape=(2, 16)))
    with pytest.raises(SpiketandemError, match=r"reshape at student node '_2'.*\[4, 8, 8\] -> \[4, 64\].*Flatten"):
        student_to_nir(_build(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(2),
                                            nn.Flatten(), nn.Linear(256, 10))))


class Uneven(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(3)   # 8 -> 3: windows of different sizes
        self.fc = nn.Linear(36, 10)

    def forward(self, x):
        return self.fc(self.pool(F.relu(self.c1(x))).flatten(1))


def test_unevenly_dividing_adaptive_pool_refused():
    with pytest.raises(SpiketandemError, match="adaptive average pooling at student node 'pool'.*divides"):
        student_to_nir(_build(Uneven()))


def test_rate_encoded_student_refused():
    with pytest.raises(SpiketandemError, match="rate.*--encoding analog"):
        student_to_nir(_build(build_model("digits-mlp", 10, 1, 8, 0.25), encoding="rate"))


@pytest.mark.parametrize("arch", sorted(a for a in __import__("spiketandem.models", fromlist=["MODELS"]).MODELS
                                         if not a.startswith("vit-")))
def test_every_zoo_architecture_exports_and_matches(tmp_path, arch):
    """Every teacher of the zoo (plain and strided VGGs, ResNet-20, the digits nets) gives an exportable student; the
    vision transformers' students are refused in one line (tests/test_transformer.py: NIR has no spike product)."""
    digits = arch.startswith("digits")
    shape = (1, 8, 8) if digits or arch == "resnet20" else (3, 32, 32)
    torch.manual_seed(0)
    teacher = build_model(arch, 10, shape[0], shape[1], 0.25 if digits or arch == "resnet20" else 0.0625)
    _matches_reference(_build(teacher, shape=shape, threshold_scale=0.6), tmp_path, shape=shape, n=4)
