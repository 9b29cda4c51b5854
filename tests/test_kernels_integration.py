"""The fused neuron inside a student: the backend option from config/CLI to every neuron layer, a
student forward+backward equal on both backends, and the cheap first layer (its conv runs once on
[B, ...] and its weight gradient equals a T-step computation on the repeated input)."""
import pytest
import torch
from torch import nn

from spiketandem.cli import build_parser
from spiketandem.run_flags import config_from_args
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


def test_backend_flag_reaches_the_neuron_config():
    args = build_parser().parse_args(["train", "--neuron-backend", "reference"])
    assert config_from_args(args).neuron_config().backend == "reference"
    assert make_config({}).neuron_config().backend == "auto"
    with pytest.raises(SpiketandemError, match="neuron_backend"):
        make_config({"neuron_backend": "fast"})


def _student(backend, reset="subtract", surrogate="boxcar"):
    from spiketandem.surrogate import Surrogate
    torch.manual_seed(0)
    teacher = build_model("digits-cnn", in_channels=1, image_size=8).double().eval()
    config = NeuronConfig("lif", reset=reset, surrogate=Surrogate(surrogate), backend=backend)
    return build_student(teacher, config, torch.zeros(2, 1, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("reset,surrogate", [("subtract", "boxcar"), ("zero", "sigmoid")])
def test_student_is_the_same_on_both_backends(reset, surrogate):
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64) * 3
    grads, outs = {}, {}
    for backend in ("fused", "reference"):
        student = _student(backend, reset, surrogate)
        out = student(x, T=9)
        out.square().sum().backward()
        outs[backend] = out.detach()
        grads[backend] = {n: p.grad.clone() for n, p in student.named_parameters()}
    assert torch.equal(outs["fused"], outs["reference"])
    for name, g in grads["reference"].items():
        torch.testing.assert_close(grads["fused"][name], g, rtol=1e-9, atol=1e-12)


class RepeatedConv(nn.Module):
    """The first conv applied to the input repeated T times ([T*B, ...]): the naive T-step computation."""

    def __init__(self, conv, T):
        super().__init__()
        self.conv, self.T, self.calls = conv, T, 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x.repeat(self.T, *([1] * (x.dim() - 1))))


def test_first_layer_conv_runs_once_and_its_weight_gradient_equals_the_repeated_input():
    T, x = 7, torch.randn(5, 1, 8, 8, dtype=torch.float64) * 3
    cheap = _student("auto")
    first = cheap.layers[0].name
    assert cheap.neurons[first].static_input
    calls = []
    cheap.graph_module.conv1.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    cheap(x, T).square().sum().backward()
    assert calls == [5]                                   # once, on the [B, ...] batch

    naive = _student("auto")
    naive.graph_module.conv1 = RepeatedConv(naive.graph_module.conv1, T)
    naive.neurons[first].static_input = False             # the neuron now sees [T*B, ...] currents
    naive(x, T).square().sum().backward()
    assert naive.graph_module.conv1.calls == 1
    w_cheap, w_naive = cheap.graph_module.conv1.weight, naive.graph_module.conv1.conv.weight
    assert w_cheap.grad.abs().sum() > 0
    torch.testing.assert_close(w_cheap.grad, w_naive.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cheap.graph_module.conv1.bias.grad, naive.graph_module.conv1.conv.bias.grad,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_torch_compile_traces_the_fused_op_without_graph_breaks():
    import torch._dynamo as dynamo
    from spiketandem.neuron import run_neuron
    from spiketandem.surrogate import Surrogate

    def f(x):
        s, st = run_neuron(x * 1.5, x.shape[0], 0.9, 0.5, "subtract", Surrogate("atan"), backend="fused")
        return (s * 2).sum() + st.u.sum()
    x = torch.rand(10, 4, 33, requires_grad=True)
    assert dynamo.explain(f)(x).graph_break_count == 0
    eager = f(x)
    (g_eager,) = torch.autograd.grad(eager, x)
    compiled = torch.compile(f)(x)
    (g_compiled,) = torch.autograd.grad(compiled, x)
    assert torch.equal(eager, compiled) and torch.equal(g_eager, g_compiled)
