"""The GPU check (`benchmarks/gpu/check.py`), step `kernels`: the fused neuron against the per-step reference,
every option.

Two groups of cases, each counted passed / failed:

* ``autograd``: ``run_neuron(backend="fused")`` against ``run_neuron(backend="reference")`` on the device
  (on CUDA the fused op is the Triton kernel; on a CPU the compiled C++ one), for every option the
  library has -- IF/LIF x subtract/zero reset x detach_reset x the 5 surrogates (tests/test_kernels.py's
  ``ALL``) x time-varying/static current -- and two input dtypes: ``float32``, and ``bfloat16`` as
  ``--amp bf16`` feeds a neuron (a bf16 leaf cast to float32 on entry, ``precision.keep_neurons_float32``;
  the gradient comes back to the bf16 leaf).  The loss reaches the spikes of every step, the final
  membrane and the final spikes.  Pass: spikes and final state bit-equal, firing neither none nor all,
  dL/dI within rtol = atol/max|g| = 1e-5 (float32) or 1e-2 (bfloat16: one bf16 rounding of the gradient).
* ``triton``: the Triton kernels called directly (``triton_neuron.forward`` / ``backward``, also with the
  gradient written over the saved membrane) against the torch loop (``torch_loop``) on the same tensors,
  for zero/subtract x detach x surrogate x static (tests/test_kernels.py's interpreter test).  On a CPU
  this needs ``TRITON_INTERPRET=1`` before triton is imported (the gpu-check sets it for this step).

A spike that differs is reported with the reference membrane's distance to the threshold at the first
differing (step, neuron): within a few float32 roundings of theta it is a fused multiply-add rounding
(the Triton compiler contracts ``a*u + x``), farther away a wrong recursion.

Run as ``python benchmarks/gpu/kernels_check.py --out FILE [--shard i --shards k]`` (what the
gpu-check does, one process per shard so Triton's compilations run in parallel); each finished case is
added to FILE at once, so a shard cut off by its time limit still leaves what it checked.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from spiketandem.neuron import run_neuron
from spiketandem.runs import atomic_text
from spiketandem.surrogate import SURROGATES, Surrogate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_SIZES = {"autograd_shape": [13, 3, 1000], "triton_n": 1000, "triton_T": 5}
GRAD_TOL = {"float32": 1e-5, "bfloat16": 1e-2}


def autograd_cases(dtypes=tuple(DTYPES)) -> list[dict]:
    return [dict(group="autograd", kind=k, reset=r, detach=d, surrogate=s, static=st, dtype=dt)
            for dt, st, k, r, d, s in itertools.product(dtypes, (False, True), ("if", "lif"), ("subtract", "zero"),
                                                          (False, True), SURROGATES)]


def triton_cases() -> list[dict]:
    return [dict(group="triton", zero=z, detach=d, kind=k, static=st)
            for z, d, k, st in itertools.product((False, True), (False, True), range(len(SURROGATES)), (False, True))]


def all_cases() -> list[dict]:
    return autograd_cases() + triton_cases()


def case_name(case: dict) -> str:
    return "/".join(f"{k}={v}" for k, v in case.items() if k != "group")


def _first_mismatch(s_fused, s_ref, I, T, alpha, theta, reset, static) -> dict:
    """Where the spikes first differ, and the reference membrane there minus theta."""
    from spiketandem.kernels import torch_loop
    from spiketandem.kernels.codes import U_TRACE
    diff = (s_fused != s_ref).reshape(T, -1)
    t, n = (int(v) for v in diff.nonzero()[0])
    flat = (I.reshape(-1) if static else I.reshape(T, -1)).float().contiguous()
    N = diff.shape[1]
    zeros = torch.zeros(N, dtype=flat.dtype, device=flat.device)
    U = torch_loop.forward(flat, zeros, zeros.clone(), T, static, float(alpha), float(theta), reset == "zero",
                           U_TRACE, 0.5)[3]
    gap = float(U[t, n]) - float(theta)
    return {"step": t, "neuron": n, "u_minus_theta": gap,
            "float32_roundings_from_theta": abs(gap) / float(torch.finfo(torch.float32).eps * max(abs(theta), 1e-30))}


def check_autograd(case: dict, device: torch.device, shape: tuple[int, int, int], seed: int) -> dict:
    """One autograd case: fused vs reference, forward and dL/dI (see the module docstring)."""
    T, B, n = shape
    alpha, theta = (1.0 if case["kind"] == "if" else 0.85), 0.7
    g = torch.Generator().manual_seed(seed)
    I = torch.rand(B, n, generator=g) * 0.5 if case["static"] else torch.rand(T, B, n, generator=g) * 0.8 - 0.1
    I = I.to(DTYPES[case["dtype"]]).to(device)
    w_s, w_u = torch.randn(T, B, n, generator=g).to(device), torch.randn(B, n, generator=g).to(device)
    out = {}
    for backend in ("fused", "reference"):
        x = I.clone().requires_grad_()
        s, st = run_neuron(x.float(), T, alpha, theta, case["reset"], Surrogate(case["surrogate"]),
                           static=case["static"], detach_reset=case["detach"], backend=backend)
        loss = (s * w_s).sum() + (st.u * w_u).sum() + 3 * st.s.sum()
        (grad,) = torch.autograd.grad(loss, x)
        out[backend] = (s.detach(), st.u.detach(), st.s.detach(), grad.float())
    (s1, u1, f1, g1), (s2, u2, f2, g2) = out["fused"], out["reference"]
    rate = float(s2.float().mean())
    scale = float(g2.abs().max())
    err = float((g1 - g2).abs().max()) / max(scale, 1e-30)
    tol = GRAD_TOL[case["dtype"]]
    row = {"spikes_equal": bool(torch.equal(s1, s2)), "spike_mismatches": int((s1 != s2).sum()),
           "state_equal": bool(torch.equal(u1, u2) and torch.equal(f1, f2)), "firing_rate": rate,
           "grad_max_rel_err": err, "grad_tol": tol}
    problems = []
    if not row["spikes_equal"]:
        problems.append(f"{row['spike_mismatches']} spikes differ")
        row["first_mismatch"] = _first_mismatch(s1, s2, I, T, alpha, theta, case["reset"], case["static"])
    if not row["state_equal"]:
        problems.append("final state differs")
    if not 0 < rate < 1:
        problems.append(f"firing rate {rate} (the input should make some, not all, neurons spike)")
    if not err <= tol:
        problems.append(f"dL/dI max rel err {err:.3g} > {tol}")
    row["passed"] = not problems
    if problems:
        row["problem"] = "; ".join(problems)
    return row


def check_triton(case: dict, device: torch.device, n: int, T: int, seed: int) -> dict:
    """One direct Triton case against the torch loop on the same tensors (tests/test_kernels.py)."""
    from spiketandem.kernels import torch_loop, triton_neuron
    from spiketandem.kernels.codes import MASK, U_TRACE
    zero, detach, kind, static = case["zero"], case["detach"], case["kind"], case["static"]
    g = torch.Generator().manual_seed(seed)
    save = MASK if kind == 0 and not (zero and not detach) else U_TRACE
    I = torch.rand(n, generator=g) * 0.5 if static else torch.rand(T, n, generator=g) * 0.9
    u0, s0 = torch.rand(n, generator=g), (torch.rand(n, generator=g) > 0.5).float()
    gS, gU, gS_last = torch.randn(T, n, generator=g), torch.randn(n, generator=g), torch.randn(n, generator=g)
    I, u0, s0, gS, gU, gS_last = (t.to(device) for t in (I, u0, s0, gS, gU, gS_last))
    args = (I, u0, s0, T, static, 0.8, 0.6, zero, save, 0.5)
    a, b = triton_neuron.forward(*args), torch_loop.forward(*args)
    problems = [f"forward {what} differs (max |diff| {float((x.float() - y.float()).abs().max()):.3g})"
                for what, x, y in zip(("spikes", "final U", "final S", "saved"), a, b) if not torch.equal(x, y)]
    grads = (gS, gU, gS_last, a[3], static, 0.8, 0.6, zero, detach, kind, 1.5)
    expected = torch_loop.backward(*grads)
    got = triton_neuron.backward(*grads)
    err = float((got - expected).abs().max()) / max(float(expected.abs().max()), 1e-30)
    if not torch.allclose(got, expected, rtol=1.3e-6, atol=1e-5):
        problems.append(f"backward max rel err {err:.3g}")
    if save == U_TRACE and not static:
        U = a[3].clone()
        triton_neuron.backward(*grads[:3], U, *grads[4:], into_saved=True)
        if not torch.allclose(U, expected, rtol=1.3e-6, atol=1e-5):
            problems.append("backward written over the saved membrane differs")
    row = {"passed": not problems, "grad_max_rel_err": err, "firing_rate": float(a[0].float().mean())}
    if problems:
        row["problem"] = "; ".join(problems)
    return row


def summarise(rows: list[dict]) -> dict:
    """Counts per group: passed, failed, skipped, and the failures' names."""
    out = {}
    for group in ("autograd", "triton"):
        mine = [r for r in rows if r["case"]["group"] == group]
        out[group] = {"passed": sum(r.get("passed") is True for r in mine),
                      "failed": sum(r.get("passed") is False for r in mine),
                      "skipped": sum(r.get("passed") is None for r in mine),
                      "failures": [f"{case_name(r['case'])}: {r.get('problem')}" for r in mine
                                   if r.get("passed") is False][:20]}
    out["total"] = {k: sum(out[g][k] for g in ("autograd", "triton")) for k in ("passed", "failed", "skipped")}
    return out


def run_cases(cases: list[dict], device: torch.device, sizes: dict, sink=None) -> list[dict]:
    """Check ``cases`` in order; ``sink(rows)`` after each one."""
    rows = []
    triton_missing = None
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        try:
            if case["group"] == "autograd":
                row = check_autograd(case, device, tuple(sizes["autograd_shape"]), seed=i)
            elif triton_missing:
                row = {"passed": None, "problem": triton_missing}
            else:
                row = check_triton(case, device, sizes["triton_n"], sizes["triton_T"], seed=i)
        except ImportError as exc:  # no triton here: the direct group is skipped, not failed
            triton_missing = f"skipped: {exc}"
            row = {"passed": None, "problem": triton_missing}
        except Exception as exc:  # a crash in one case is that case's failure
            row = {"passed": False, "problem": f"{type(exc).__name__}: {str(exc)[:500]}"}
        row.update(case=case, seconds=time.perf_counter() - t0)
        rows.append(row)
        if sink is not None:
            sink(rows)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one shard of the gpu-check kernel comparison")
    p.add_argument("--out", required=True, help="JSON file for this shard's rows (rewritten after every case)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--sizes", default="{}", help="JSON: autograd_shape [T, B, n], triton_n, triton_T")
    args = p.parse_args(argv)
    sizes = {**DEFAULT_SIZES, **json.loads(args.sizes)}
    cases = all_cases()[args.shard::args.shards]
    out = Path(args.out)
    run_cases(cases, torch.device(args.device), sizes, sink=lambda rows: atomic_text(json.dumps(rows) + "\n", out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
