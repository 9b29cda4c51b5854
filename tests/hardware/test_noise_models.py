"""Each noise model's statistics, checked directly against its definition (not against the code)."""
import pytest
import torch

from spiketandem.errors import SpiketandemError
from spiketandem.hardware import noise
from spiketandem.hardware.chip import Chip
from spiketandem.hardware.noise import QuantizedWeight
from spiketandem.hardware.noise import NoiseSpec
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def student():
    torch.manual_seed(0)
    teacher = build_model("digits-cnn", 10, 1, 8, 1.0)
    return build_student(teacher, NeuronConfig(kind="lif"), torch.randn(16, 1, 8, 8))


def test_mismatch_draws_from_normal_with_relative_spread():
    theta = torch.full((200_000,), -2.0)
    out = noise.mismatch(theta, 0.3, gen())
    assert abs(float(out.mean()) + 2.0) < 0.01            # N(theta, sigma |theta|): mean theta
    assert abs(float(out.std()) - 0.3 * 2.0) < 0.01       # spread sigma |theta|
    floored = noise.mismatch(torch.ones(200_000), 0.5, gen(), positive=True)
    assert float(floored.min()) >= noise.MIN_FACTOR - 1e-7  # thresholds keep their sign


def test_chip_mismatch_is_frozen_per_seed_and_relative(student):
    clean = {k: v.clone() for k, v in student.state_dict().items()}
    a = Chip([NoiseSpec("mismatch", 0.2)], seed=1).imprint(student)
    first = {k: v.clone() for k, v in a.state_dict().items()}
    for name in ("graph_module.conv1.weight", "graph_module.fc1.weight"):
        rel = (first[name] - clean[name]) / clean[name].abs().clamp_min(1e-12)
        assert abs(float(rel.std()) - 0.2) < 0.03
    # per-neuron thresholds now differ within a layer, around the layer's value
    thr = a.neurons["relu_1"].threshold
    base = clean["graph_module.neurons.relu_1.threshold"]
    assert thr.numel() > 1 and float(thr.std()) > 0
    assert abs(float(thr.mean() / base) - 1) < 0.05
    alpha = a.neurons["relu"].alpha
    assert alpha.numel() > 1 and float(alpha.max()) <= 1.0
    # the same seed imprints the same chip; another seed another one
    again = build_fresh(student, clean, seed=1)
    other = build_fresh(student, clean, seed=2)
    assert torch.equal(again["graph_module.fc1.weight"], first["graph_module.fc1.weight"])
    assert not torch.equal(other["graph_module.fc1.weight"], first["graph_module.fc1.weight"])


def build_fresh(student, clean, seed):
    import copy
    s = copy.deepcopy(student)
    for n, m in s.neurons.items():  # back to the clean per-layer scalars
        m.threshold = clean[f"graph_module.neurons.{n}.threshold"].clone()
        m.alpha = clean[f"graph_module.neurons.{n}.alpha"].clone()
    s.load_state_dict(clean)
    return Chip([NoiseSpec("mismatch", 0.2)], seed=seed).imprint(s).state_dict()


@pytest.mark.parametrize("bits", [3, 4, 5, 7])
def test_minmax_quantization_has_2_to_the_k_levels(bits):
    w = torch.rand(20_000, generator=gen()) * 3 - 1   # uniform: every level gets weights
    q = noise.quantize(w, bits, "minmax")
    assert torch.unique(q).numel() == 2 ** bits
    assert torch.unique(noise.quantize(torch.randn(4000, generator=gen()), bits)).numel() <= 2 ** bits
    step = (w.max() - w.min()) / (2 ** bits - 1)
    assert float((q - w).abs().max()) <= float(step) / 2 + 1e-6
    assert torch.isclose(q.min(), w.min()) and torch.isclose(q.max(), w.max())


def test_quantization_hand_example():
    w = torch.tensor([0.0, 0.1, 0.45, 0.9, 1.0])
    # 2 bits, min-max: D = 1/3, levels 0, 1/3, 2/3, 1
    assert torch.allclose(noise.quantize(w, 2, "minmax"), torch.tensor([0, 0, 1 / 3, 1, 1]))
    # 3 bits symmetric: m = 3, D = 1/3 -> round(w*3) = 0, 0, 1, 3, 3
    assert torch.allclose(noise.quantize(w, 3, "symmetric"), torch.tensor([0, 0, 1 / 3, 1, 1]))
    sym = noise.quantize(torch.randn(4000, generator=gen()), 4, "symmetric")
    assert torch.unique(sym).numel() <= 2 ** 4 - 1
    assert torch.allclose(sym, -noise.quantize(-torch.randn(4000, generator=gen()), 4, "symmetric"))


def test_quantized_weight_is_straight_through(student):
    w = torch.randn(50, requires_grad=True)
    q = QuantizedWeight(3, "minmax")(w)
    assert torch.equal(q.detach(), noise.quantize(w.detach(), 3, "minmax"))
    (q * torch.arange(50.0)).sum().backward()
    assert torch.equal(w.grad, torch.arange(50.0))          # dQ/dW = 1
    Chip([NoiseSpec("quantization", 4)]).imprint(student)
    for layer in (student.graph_module.conv1, student.graph_module.fc2):
        assert torch.unique(layer.weight.detach()).numel() <= 2 ** 4


def test_thermal_noise_is_fresh_every_step_with_relative_spread():
    current = torch.full((200_000,), 3.0)
    g = gen()
    a, b = noise.thermal(current, 0.1, g), noise.thermal(current, 0.1, g)
    assert abs(float(a.mean()) - 3.0) < 0.01 and abs(float(a.std()) - 0.3) < 0.01
    assert not torch.equal(a, b)
    x = torch.tensor([2.0, -1.0], requires_grad=True)
    noise.thermal(x, 0.5, gen(), straight_through=True).sum().backward()
    assert torch.equal(x.grad, torch.ones(2))


def test_chip_thermal_hook_perturbs_every_layer_per_step(student):
    chip = Chip([NoiseSpec("thermal", 0.2)], seed=3)
    currents, outputs = chip.hooks(student)
    assert set(currents) == set(student.neurons) and not outputs
    I = torch.full((1000,), 1.5)
    assert not torch.equal(currents["relu"](I, 0), currents["relu"](I, 1))
    x = torch.randn(4, 1, 8, 8)
    assert not torch.equal(chip.run(student, x, 4), student(x, 4))


def test_fixed_silencing_kills_an_exact_fraction_for_good(student):
    mask = noise.fixed_silence_mask((10, 7, 7), 0.3, gen())
    assert int((mask == 0).sum()) == round(0.3 * 490)
    chip = Chip([NoiseSpec("silencing", 0.3, "fixed")], seed=0)
    _, outputs = chip.hooks(student)
    spikes = torch.ones(5, 2, 8, 4, 4)
    out = outputs["relu_1"](spikes)
    dead = out[0, 0] == 0
    assert int(dead.sum()) == round(0.3 * 128)
    assert torch.equal(out, dead.logical_not().float().expand_as(out))   # same neurons at every step and sample
    assert torch.equal(outputs["relu_1"](spikes), out)                     # and at every call


def test_step_silencing_is_random_per_step_at_the_rate():
    g = gen()
    spikes = torch.ones(20, 50, 100)
    out = noise.silence(spikes, noise.step_silence_mask(spikes, 0.4, g))
    assert abs(float((out == 0).float().mean()) - 0.4) < 0.01
    assert not torch.equal(out[0], out[1])
    x = torch.ones(3, requires_grad=True)
    noise.silence(x, torch.tensor([0.0, 1.0, 0.0]), straight_through=True).sum().backward()
    assert torch.equal(x.grad, torch.ones(3))  # the HIL host's ideal model sees every neuron alive


def test_update_mismatch_perturbs_each_update_relatively():
    p = torch.nn.Parameter(torch.zeros(100_000))
    opt = Chip([NoiseSpec("mismatch", 0.25)], seed=0).writes(torch.optim.SGD([p], lr=0.1))
    p.grad = torch.full_like(p, -1.0)      # plain SGD would move every element by exactly +0.1
    opt.step()
    rel = p.detach() / 0.1 - 1
    assert abs(float(rel.mean())) < 0.01 and abs(float(rel.std()) - 0.25) < 0.01
    plain = Chip([NoiseSpec("thermal", 0.1)]).writes(opt.optimizer)
    assert plain is opt.optimizer          # no mismatch: the optimizer as it is


@pytest.mark.parametrize("spec", [dict(kind="flicker", level=0.1), dict(kind="quantization", level=3.5),
                                  dict(kind="silencing", level=1.2), dict(kind="mismatch", level=-0.1),
                                  dict(kind="silencing", level=0.1, mode="sometimes")])
def test_bad_noise_specs_are_refused(spec):
    with pytest.raises(SpiketandemError):
        NoiseSpec(**spec)


def test_a_chip_takes_each_kind_once():
    with pytest.raises(SpiketandemError, match="once"):
        Chip([NoiseSpec("thermal", 0.1), NoiseSpec("thermal", 0.2)])
