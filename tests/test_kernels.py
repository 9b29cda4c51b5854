"""The fused multi-step neuron (spiketandem.kernels) against the per-step reference under autograd, for
every option; the backward recursion against hand-derived gradients; what it saves; the torch-loop
fallback; the Triton kernels on the CPU interpreter."""
import itertools
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from spiketandem.errors import SpiketandemError
from spiketandem.kernels import FusedNeuron, cpu, ops, torch_loop
from spiketandem.kernels.codes import MASK, SURROGATE_NAMES, U_TRACE
from spiketandem.neuron import NeuronState, run_neuron
from spiketandem.surrogate import SURROGATES, Surrogate

ALL = list(itertools.product(("if", "lif"), ("subtract", "zero"), (False, True), SURROGATES))


@pytest.fixture(scope="module", autouse=True)
def built():
    """Build (or load the cached) C++ kernel once for the module.  Without a compiler the fused path
    runs on the torch-loop fallback (with its warning) and every comparison below still applies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ops._cpu_module()


def compiled_kernel():
    if cpu.load() is None:
        pytest.skip(f"the C++ kernel could not be built on this machine: {cpu.failure()}")
    return cpu.load()


def _run_both(I, T, alpha, theta, reset, surrogate, detach, state=None, static=False, hook=None, dtype_seed=1):
    """Spikes, final state and dL/dI for both backends, with a loss that reaches the spikes of every
    step and the final membrane and spikes (so every incoming gradient of the fused op is exercised)."""
    out = {}
    for backend in ("fused", "reference"):
        x = I.detach().clone().requires_grad_()
        s, st = run_neuron(x, T, alpha, theta, reset, surrogate, state, static=static, detach_reset=detach,
                           current_hook=hook, backend=backend)
        g = torch.Generator().manual_seed(dtype_seed)
        w = torch.randn(s.shape, generator=g, dtype=s.dtype)
        loss = (s * w).sum() + (st.u * torch.randn(st.u.shape, generator=g, dtype=s.dtype)).sum() + 3 * st.s.sum()
        (grad,) = torch.autograd.grad(loss, x)
        out[backend] = (s, st, grad)
    return out["fused"], out["reference"]


def _assert_same(fused, ref, dtype=torch.float32):
    (s1, st1, g1), (s2, st2, g2) = fused, ref
    assert torch.equal(s1, s2), "spikes differ"
    assert s1.sum() > 0 and s1.sum() < s1.numel(), "the test input should make some, not all, neurons spike"
    assert torch.equal(st1.u, st2.u) and torch.equal(st1.s, st2.s), "final state differs"
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    torch.testing.assert_close(g1, g2, rtol=tol, atol=tol * g2.abs().max().item())


@pytest.mark.parametrize("kind,reset,detach,surrogate", ALL)
def test_fused_equals_reference_for_every_option(kind, reset, detach, surrogate):
    torch.manual_seed(hash((kind, reset, detach, surrogate)) % 2**31)
    T, alpha, theta = 13, (1.0 if kind == "if" else 0.85), torch.tensor(0.7)
    I = torch.rand(T, 3, 37) * 0.8 - 0.1      # 111 neurons: not a multiple of the kernel's block
    _assert_same(*_run_both(I, T, alpha, theta, reset, Surrogate(surrogate), detach))


@pytest.mark.parametrize("reset,surrogate", [("subtract", "boxcar"), ("zero", "boxcar"), ("zero", "atan")])
def test_static_input_and_incoming_state_and_float64(reset, surrogate):
    torch.manual_seed(3)
    theta = torch.tensor(0.9, dtype=torch.float64)
    state = NeuronState(torch.rand(4, 6, dtype=torch.float64), (torch.rand(4, 6) > 0.5).double())
    I = torch.rand(4, 6, dtype=torch.float64) * 0.7
    _assert_same(*_run_both(I, 11, 0.9, theta, reset, Surrogate(surrogate), False, state=state, static=True),
                 torch.float64)
    I = torch.rand(11, 4, 6, dtype=torch.float64) * 0.7
    _assert_same(*_run_both(I, 11, 0.9, theta, reset, Surrogate(surrogate), True, state=state), torch.float64)


def test_current_hook_is_applied_before_the_fused_call():
    torch.manual_seed(4)
    hook = lambda current, t: current * (0.5 + 0.1 * t)   # noqa: E731  (depends on t, not on the state)
    I = torch.rand(9, 2, 8)
    _assert_same(*_run_both(I, 9, 0.9, 0.6, "subtract", Surrogate("sigmoid"), False, hook=hook))
    _assert_same(*_run_both(I[0], 9, 0.9, 0.6, "zero", Surrogate("boxcar"), False, static=True, hook=hook))


@pytest.mark.parametrize("reset,detach,expected", [("subtract", False, [1.0, 1.0]), ("subtract", True, [2.0, 1.0]),
                                                    ("zero", False, [1.4, 1.0]), ("zero", True, [2.0, 1.0])])
def test_backward_recursion_by_hand(reset, detach, expected):
    # IF, theta = 1, boxcar p = 1 (h = 1 on |U - 1| < 1/2), I = [0.6, 0.6]:  U0 = .6 (S0 = 0), U1 = 1.2 (S1 = 1)
    # L = S0 + S1:  e1 = h1 = 1;  subtract: e0 = (1 - theta e1) h0 + e1 = 1  (detached reset: 1 + 1 = 2)
    #               zero:     e0 = (1 - U0 e1) h0 + (1 - S0) e1 = 0.4 + 1 = 1.4  (detached: 2)
    I = torch.tensor([[0.6], [0.6]], requires_grad=True)
    s, _ = run_neuron(I, 2, 1.0, 1.0, reset, Surrogate("boxcar", 1.0), detach_reset=detach, backend="fused")
    s.sum().backward()
    assert s.flatten().tolist() == [0.0, 1.0]
    assert I.grad.flatten().tolist() == pytest.approx(expected)


@pytest.mark.parametrize("surrogate,reset,detach,dtype,nbytes", [
    ("boxcar", "subtract", False, torch.uint8, 1), ("boxcar", "zero", True, torch.uint8, 1),
    ("boxcar", "zero", False, torch.float32, 4), ("atan", "subtract", False, torch.float32, 4)])
def test_saves_one_byte_mask_or_the_membrane_only(surrogate, reset, detach, dtype, nbytes):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    I = torch.rand(10, 4, 5, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_neuron(I, 10, 0.9, 0.5, reset, Surrogate(surrogate), detach_reset=detach, backend="fused")
    assert [(t.dtype, t.numel() * t.element_size()) for t in saved] == [(dtype, 200 * nbytes)]
    with torch.no_grad():   # and nothing beyond spikes and state without grad
        s, st = run_neuron(I, 10, 0.9, 0.5, reset, Surrogate(surrogate), backend="fused")
    assert s.shape == (10, 4, 5) and st.u.shape == (4, 5)


def test_auto_falls_back_and_fused_refuses_with_the_reason():
    I = torch.rand(5, 3, requires_grad=True)
    state = NeuronState(torch.zeros(3, requires_grad=True), torch.zeros(3))
    s, _ = run_neuron(I, 5, 0.9, 0.5, "subtract", Surrogate(), state)
    s.sum().backward()
    assert state.u.grad is not None                      # the reference path carried the state's gradient
    with pytest.raises(SpiketandemError, match="requires grad"):
        run_neuron(I, 5, 0.9, 0.5, "subtract", Surrogate(), state, backend="fused")
    with pytest.raises(SpiketandemError, match="truncate"):
        run_neuron(I, 5, 0.9, 0.5, "subtract", Surrogate(), truncate=True, backend="fused")
    with pytest.raises(SpiketandemError, match="per-neuron"):
        run_neuron(I, 5, 0.9, torch.full((3,), 0.5), "subtract", Surrogate(), backend="fused")
    with pytest.raises(SpiketandemError, match="backend"):
        run_neuron(I, 5, 0.9, 0.5, "subtract", Surrogate(), backend="fast")
    a, _ = run_neuron(I, 5, 0.9, torch.full((3,), 0.5), "subtract", Surrogate())   # auto: reference, same result
    b, _ = run_neuron(I, 5, 0.9, 0.5, "subtract", Surrogate())
    assert torch.equal(a, b)


@pytest.mark.parametrize("reset,detach,surrogate", [("subtract", False, "boxcar"), ("zero", False, "dspike"),
                                                    ("zero", True, "boxcar"), ("subtract", True, "triangle")])
@pytest.mark.parametrize("static", [False, True])
def test_torch_loop_fallback_equals_compiled_kernel(reset, detach, surrogate, static):
    torch.manual_seed(5)
    zero, kind = reset == "zero", SURROGATE_NAMES.index(surrogate)
    save = MASK if surrogate == "boxcar" and not (zero and not detach) else U_TRACE
    I = torch.rand(50) if static else torch.rand(8, 50)
    u0, s0 = torch.rand(50), (torch.rand(50) > 0.5).float()
    args = (I, u0, s0, 8, static, 0.8, 0.6, zero, save, 0.5)
    kernel = compiled_kernel()
    compiled, loop = kernel.neuron_forward(*args), torch_loop.forward(*args)
    for x, y in zip(compiled, loop):
        assert torch.equal(x, y)
    grads = (torch.randn(8, 50), torch.randn(50), torch.randn(50), compiled[3], static, 0.8, 0.6, zero, detach, kind,
             1.0)
    expected = torch_loop.backward(*grads)
    torch.testing.assert_close(kernel.neuron_backward(*grads, False), expected)
    if save == U_TRACE and not static:   # dL/dI written over the saved membrane, by both implementations
        U = compiled[3].clone()
        kernel.neuron_backward(*grads[:3], U, *grads[4:], True)
        torch.testing.assert_close(U, expected)
        U = compiled[3].clone()
        torch_loop.backward(*grads[:3], U, *grads[4:], into_saved=True)
        torch.testing.assert_close(U, expected)


def test_without_a_compiler_the_fallback_warns_once_and_agrees(monkeypatch):
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setattr(cpu, "_failed", "no compiler (simulated)")
    monkeypatch.setattr(ops, "_warned", False)
    I = torch.rand(6, 2, 9) * 0.8
    with pytest.warns(RuntimeWarning, match="torch loop"):
        fused, ref = _run_both(I, 6, 0.9, 0.5, "zero", Surrogate("boxcar"), False)
    _assert_same(fused, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_neuron(I, 6, 0.9, 0.5, "zero", Surrogate("boxcar"), backend="fused")   # warned once only


def test_backward_overwrites_the_saved_membrane_and_refuses_a_second_backward():
    from spiketandem.bench.memory import peak_bytes
    I = torch.rand(20, 1000, requires_grad=True)
    g = torch.randn(20, 1000)

    def step():
        s, _ = run_neuron(I, 20, 0.9, 0.5, "subtract", Surrogate("atan"), backend="fused")
        s.backward(g)
    # forward + backward hold the spikes and U (4 + 4 B per neuron and step; the gradient reuses U's
    # storage) plus a few [N] vectors (initial and final state, zero gradients of the final state);
    # a separate gradient buffer would add another 4 B per neuron and step
    assert peak_bytes(step, "cpu") <= 20 * 1000 * 8 + 6 * 1000 * 4
    s, _ = run_neuron(I, 20, 0.9, 0.5, "subtract", Surrogate("atan"), backend="fused")
    s.backward(g, retain_graph=True)
    with pytest.raises(SpiketandemError, match="retain_graph"):
        s.backward(g)


def test_live_tensor_bytes_sees_the_custom_op():
    from spiketandem.bench.memory import LiveTensorBytes
    I = torch.rand(20, 1000, requires_grad=True)
    with LiveTensorBytes() as meter:
        s, _ = run_neuron(I, 20, 0.9, 0.5, "subtract", Surrogate("boxcar"), backend="fused")
        held = meter.live
    # what stays alive: spikes (4 B) + the 1-byte mask per neuron and step, and the final U and S
    assert held == 20 * 1000 * (4 + 1) + 2 * 1000 * 4
    assert s.shape == (20, 1000) and FusedNeuron is not None


def test_triton_kernels_match_on_the_cpu_interpreter():
    """TRITON_INTERPRET must be set before triton is imported, hence a fresh interpreter."""
    script = textwrap.dedent("""
        import itertools, torch
        from spiketandem.kernels import torch_loop, triton_neuron
        from spiketandem.kernels.codes import MASK, U_TRACE, SURROGATE_NAMES
        torch.manual_seed(0)
        n = 0
        for zero, detach, kind, static in itertools.product((False, True), (False, True), range(5), (False, True)):
            save = MASK if kind == 0 and not (zero and not detach) else U_TRACE
            I = torch.rand(300) * 0.5 if static else torch.rand(5, 300) * 0.9
            u0, s0 = torch.rand(300), (torch.rand(300) > 0.5).float()
            args = (I, u0, s0, 5, static, 0.8, 0.6, zero, save, 0.5)
            a, b = triton_neuron.forward(*args), torch_loop.forward(*args)
            for x, y in zip(a, b):
                assert torch.equal(x, y), (zero, detach, kind, static)
            grads = (torch.randn(5, 300), torch.randn(300), torch.randn(300), a[3], static, 0.8, 0.6, zero, detach,
                     kind, 1.5)
            expected = torch_loop.backward(*grads)
            torch.testing.assert_close(triton_neuron.backward(*grads), expected)
            if save == U_TRACE and not static:
                U = a[3].clone()
                triton_neuron.backward(*grads[:3], U, *grads[4:], into_saved=True)
                torch.testing.assert_close(U, expected)
            n += 1
        print("checked", n)
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checked 40" in done.stdout
