"""The steps of the GPU check (`check.py`), each run in its own process: ``python benchmarks/gpu/steps.py
SPEC.json``.  The spec names the step, the device, a work folder and the step's configuration (the exact
flags of the benchmarks it calls, from ``check.plan``); the step writes ``SPEC.partial.json`` whenever it
has something new (so a step cut off by its time limit still returns what it measured) and
``SPEC.result.json`` at the end.  The steps call the existing benchmarks (``spiketandem bench ...`` through
``cli.main`` in this process, reading the JSON each writes) and the training command; they measure nothing
themselves except where the kit's own check is the measurement (the kernel comparison, the 1- vs
2-process comparison).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from spiketandem.runs import atomic_text, safe_load


class StepError(RuntimeError):
    """A step that ran but did not get its result (the message says why)."""


class Context:
    """What a step gets: its spec, device, work folder, and ``report(partial)`` for what it has so far."""

    def __init__(self, spec: dict, spec_path: Path):
        self.spec, self.config = spec, spec["config"]
        self.device = spec["device"]
        self.work = Path(spec["work"])
        self.work.mkdir(parents=True, exist_ok=True)
        self._partial = spec_path.with_suffix(".partial.json")
        self._lock = threading.Lock()

    def report(self, partial: dict) -> None:
        with self._lock:
            atomic_text(json.dumps(partial) + "\n", self._partial)


HERE = Path(__file__).resolve().parent  # the kit's scripts


def _src_path() -> str:
    """Where this interpreter imports spiketandem from, and the kit's own folder."""
    import spiketandem
    return os.pathsep.join((str(Path(spiketandem.__file__).resolve().parents[1]), str(HERE)))


def child_env(extra: dict | None = None) -> dict:
    """The environment for a child process: this interpreter's spiketandem importable, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_src_path(), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"   # a process stopped at its limit leaves its last lines in the log
    env.update(extra or {})
    return env


def run_group(cmd: list[str], env: dict, timeout: float) -> tuple[int | str, str]:
    """Run ``cmd`` in its own process session; at ``timeout`` end it and every process it started (torchrun's
    ranks too).  (exit code or "timeout", its output)."""
    import tempfile
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = "timeout"
            kill_group(proc)
        out.seek(0)
        return code, out.read().decode(errors="replace")


def kill_group(proc: subprocess.Popen) -> None:
    """End a process started with ``start_new_session=True`` and everything it started, politely first."""
    import signal
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def bench(name: str, flags: list[str], out: Path, device: str) -> dict:
    """``spiketandem bench NAME FLAGS --device D --out OUT`` in this process; its JSON result."""
    from spiketandem.cli import main
    out.mkdir(parents=True, exist_ok=True)
    argv = ["bench", name, *flags, "--device", device, "--out", str(out)]
    print("$ spiketandem " + " ".join(argv), flush=True)
    code = main(argv)
    path = out / f"{name}.json"
    if code not in (0, None) or not path.is_file():
        raise StepError(f"`spiketandem {' '.join(argv)}` exited {code} (its error is in the step's log)")
    return json.loads(path.read_text())


# ---- data: decode the dataset once into the array cache (run beside the GPU steps) ------------------------

def step_data(ctx: Context) -> dict:
    from spiketandem.data import load_dataset
    from spiketandem.data.cache import default_cache_dir
    t0 = time.perf_counter()
    data = load_dataset(ctx.config["dataset"], ctx.config.get("data_dir"))
    return {"dataset": ctx.config["dataset"], "data_dir": ctx.config.get("data_dir"),
            "train_images": int(data.train_x.shape[0]), "test_images": int(data.test_x.shape[0]),
            "seconds": time.perf_counter() - t0, "cache_dir": str(default_cache_dir())}


# ---- kernels --------------------------------------------------------------------------------------------

def step_kernels(ctx: Context) -> dict:
    import kernels_check as gk
    workers, sizes = int(ctx.config.get("workers", 1)), ctx.config["sizes"]
    interpret = bool(ctx.config.get("triton_interpret"))
    if interpret and os.environ.get("TRITON_INTERPRET") != "1":
        raise StepError("triton_interpret needs TRITON_INTERPRET=1 in this process's environment (set before "
                        "triton is imported; the gpu-check sets it for this step)")
    if workers == 1:   # in this process: one interpreter start less
        done = gk.run_cases(gk.all_cases(), _torch_device(ctx.device), dict(gk.DEFAULT_SIZES, **sizes),
                            sink=lambda rows: ctx.report({"summary": gk.summarise(rows), "complete": False}))
        return _kernel_result(gk, done, sizes, workers, interpret, [0])
    env = child_env()
    files = [ctx.work / f"kernels-shard{i}.json" for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, str(HERE / "kernels_check.py"), "--out", str(f),
                               "--device", ctx.device, "--shard", str(i), "--shards", str(workers),
                               "--sizes", json.dumps(sizes)], env=env)
             for i, f in enumerate(files)]

    def rows() -> list[dict]:
        out = []
        for f in files:
            try:
                out += json.loads(f.read_text())
            except (OSError, ValueError):
                pass
        return out

    try:
        while any(p.poll() is None for p in procs):
            ctx.report({"summary": gk.summarise(rows()), "cases_planned": len(gk.all_cases()), "complete": False})
            time.sleep(2)
    finally:
        for p in procs:  # reached only on an error here: the orchestrator kills the whole group on time-out
            if p.poll() is None:
                p.kill()
    return _kernel_result(gk, rows(), sizes, workers, interpret, [p.returncode for p in procs])


def _torch_device(name: str):
    import torch
    return torch.device(name)


def _kernel_result(gk, done: list[dict], sizes: dict, workers: int, interpret: bool, codes: list) -> dict:
    return {"summary": gk.summarise(done), "cases_planned": len(gk.all_cases()), "cases_checked": len(done),
            "complete": len(done) == len(gk.all_cases()), "sizes": dict(gk.DEFAULT_SIZES, **sizes),
            "shards": workers, "triton_interpret": interpret, "shard_exit_codes": codes,
            "environment": _versions(), "rows": done}


def _versions() -> dict:
    import torch
    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import triton
        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


# ---- neuron: bench neuron, SpikingJelly's GPU path probed first -----------------------------------------

def _probe_spikingjelly(device: str) -> dict:
    """Does SpikingJelly import and run its LIF (forward + backward) here?  Which CUDA implementation did
    it select (its own order: native CUDA build, Triton, torch)?"""
    import importlib.util
    if importlib.util.find_spec("spikingjelly") is None:
        return {"runs": False, "why": "not installed"}
    try:
        import torch

        from spiketandem.bench import neuron as bn
        x = torch.rand(4, 2, 64, device=device, requires_grad=True)
        for impl in bn._spikingjelly():
            impl.fn(x).sum().backward()
        info = {"runs": True}
        try:
            from importlib.metadata import version
            info["version"] = version("spikingjelly")
            from spikingjelly._ops import lif as sj_lif
            chosen = {str(k): getattr(v, "name", None) for k, v in sj_lif._selection._selections.items()}
            if chosen:
                info["cuda_implementation"] = chosen
        except Exception:  # its internals are not an API: a missing detail is not a failure
            pass
        return info
    except Exception as exc:
        return {"runs": False, "why": f"{type(exc).__name__}: {str(exc)[:500]}"}


def step_neuron(ctx: Context) -> dict:
    probe = _probe_spikingjelly(ctx.device)
    print(f"spikingjelly probe: {probe}", flush=True)
    flags = list(ctx.config["flags"])
    if not probe["runs"] and "--peers" not in flags:  # a peer that cannot run must not take the others with it
        from spiketandem.bench.neuron import FRAMEWORKS
        flags += ["--peers", *[f for f in FRAMEWORKS if f != "spikingjelly"]]
    result = bench("neuron", flags, ctx.work / "neuron", ctx.device)
    return {"spikingjelly": probe, "flags": flags, "bench": result,
            "spikes_equal": {f"{r['setup']}@T{r['T']}/{r['implementation']}": r["spike_agreement"]
                             for r in result["rows"]}}


# ---- ltl-epoch and complexity: one benchmark call per configured run ------------------------------------

def _runs_of(name: str, ctx: Context) -> dict:
    results = []
    for i, flags in enumerate(ctx.config["runs"]):
        results.append({"flags": flags, "bench": bench(name, flags, ctx.work / f"{name}-{i}", ctx.device)})
        ctx.report({"runs": results, "runs_planned": len(ctx.config["runs"])})
    return {"runs": results, "runs_planned": len(ctx.config["runs"])}


def step_ltl_epoch(ctx: Context) -> dict:
    return _runs_of("ltl-epoch", ctx)


def step_complexity(ctx: Context) -> dict:
    return _runs_of("complexity", ctx)


# ---- distributed: 2 processes on one device under torchrun against 1 process -----------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path: Path) -> dict:
    obj = safe_load(path, "model file")
    state = obj["state"]["model"] if "state" in obj else obj["state_dict"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


def compare_weights(a: dict, b: dict, atol: float, frac: float | None = None, max_diff: float | None = None) -> dict:
    """Max |a - b| over every float tensor, and the test's criteria (tests/test_distributed.py): either
    every weight within ``atol`` (the SGD teacher), or at most ``frac`` of each tensor's weights beyond
    ``atol`` and none beyond ``max_diff`` (the Adam student: see ``assert_same_student`` there)."""
    if a.keys() != b.keys():
        return {"equal": False, "why": "different parameters"}
    worst, worst_frac = 0.0, 0.0
    for key in a:
        diff = (a[key] - b[key]).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        worst_frac = max(worst_frac, float((diff > atol).float().mean()) if diff.numel() else 0.0)
    equal = worst <= atol if frac is None else (worst_frac < frac and worst < max_diff)
    return {"equal": bool(equal), "max_abs_diff": worst, "max_fraction_beyond_atol": worst_frac, "atol": atol}


def _metrics_close(one: Path, two: Path) -> dict:
    from spiketandem.runs import RunFolder
    worst, n = 0.0, 0
    for sub in ("teacher", "."):
        r1, r2 = RunFolder(one / sub).read_metrics(), RunFolder(two / sub).read_metrics()
        if len(r1) != len(r2) or not r1:
            return {"equal": False, "why": f"{sub}: {len(r1)} vs {len(r2)} epochs"}
        for a, b in zip(r1, r2):
            for key in ("train_loss", "train_acc", "test_acc"):
                worst, n = max(worst, abs(a[key] - b[key])), n + 1
    return {"equal": worst <= 1e-4, "max_abs_diff": worst, "values_compared": n}


def step_distributed(ctx: Context) -> dict:
    """``torchrun --nproc_per_node=2`` through ``gpu_check_ddp`` (both ranks on device 0 with the given
    backend; NCCL first on CUDA, gloo if NCCL refuses), then the same command in one process."""
    from spiketandem.cli import main
    flags = [*ctx.config["flags"], "--device", ctx.device, "--quiet"]
    attempts = []
    two = None
    for backend in ctx.config["backends"]:
        out = ctx.work / f"two-{backend}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(HERE / "ddp.py"), "--backend", backend,
               "--", *flags, "--out", str(out)]
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        code, output = run_group(cmd, child_env({"OMP_NUM_THREADS": "1"}), ctx.config["attempt_limit_s"][backend])
        tail = output[-2500:]
        print(output[-20000:], flush=True)
        attempts.append({"backend": backend, "exit_code": code, "seconds": time.perf_counter() - t0,
                         **({} if code == 0 else {"output_tail": tail})})
        ctx.report({"attempts": attempts})
        if code == 0:
            two = out
            break
    if two is None:
        tried = [(a["backend"], a["exit_code"]) for a in attempts]
        raise StepError(f"the 2-process run failed with every backend (backend, exit code): {tried}")
    one = ctx.work / "one"
    t0 = time.perf_counter()
    if main([*flags, "--out", str(one)]) != 0:
        raise StepError("the single-process run failed (its error is in the step's log)")
    single_seconds = time.perf_counter() - t0
    teacher = compare_weights(_weights(one / "teacher" / "teacher.pt"), _weights(two / "teacher" / "teacher.pt"), 1e-5)
    student = compare_weights(_weights(one / "student.pt"), _weights(two / "student.pt"), 1e-5, frac=1e-3,
                              max_diff=2e-3)
    metrics = _metrics_close(one, two)
    return {"backend": attempts[-1]["backend"], "attempts": attempts, "single_process_seconds": single_seconds,
            "teacher": teacher, "student": student, "metrics": metrics,
            "equal_to_one_process": teacher["equal"] and student["equal"] and metrics["equal"],
            "flags": flags, "tf32": os.environ.get("NVIDIA_TF32_OVERRIDE") != "0"}


# ---- time-to-accuracy: the benchmark, with every epoch's row stamped as it lands ---------------------------

def _epoch_rows(root: Path, t0: float, seen: dict) -> list[dict]:
    """New rows of the teacher's and the student's metrics.jsonl, stamped with the seconds since ``t0``."""
    from spiketandem.runs import RunFolder
    for phase in ("teacher", "student"):
        for row in RunFolder(root / phase).read_metrics():
            key = (phase, row.get("epoch"))
            if key not in seen:
                seen[key] = {"phase": phase, "epoch": row.get("epoch"), "test_acc": row.get("test_acc"),
                             "train_acc": row.get("train_acc"), "epoch_seconds": row.get("epoch_seconds"),
                             "seen_at_s": time.perf_counter() - t0}
    return sorted(seen.values(), key=lambda r: (r["phase"] != "teacher", r["epoch"] or 0))


def step_time_to_accuracy(ctx: Context) -> dict:
    out = ctx.work / "time-to-accuracy"
    runs = out / "time-to-accuracy-runs"
    t0, seen, stop = time.perf_counter(), {}, threading.Event()

    def watch():
        while not stop.wait(2.0):
            try:
                ctx.report({"epochs": _epoch_rows(runs, t0, seen), "complete": False,
                            "note": "cut off before the benchmark finished: per-epoch rows as they were written"})
            except (OSError, ValueError):
                pass
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = bench("time-to-accuracy", list(ctx.config["flags"]), out, ctx.device)
    finally:
        stop.set()
        watcher.join()
    return {"bench": result, "epochs": _epoch_rows(runs, t0, seen), "complete": True, "flags": ctx.config["flags"]}


def step_command(name: str, spec: dict, work: Path) -> tuple[list[str], Path]:
    """The command that runs step ``name`` with ``spec`` (written to ``work/NAME.spec.json``)."""
    spec_path = work / f"{name}.spec.json"
    atomic_text(json.dumps(spec, indent=1) + "\n", spec_path)
    return [sys.executable, str(HERE / "steps.py"), str(spec_path)], spec_path


STEPS = {"data": step_data, "kernels": step_kernels, "neuron": step_neuron, "ltl-epoch": step_ltl_epoch,
         "complexity": step_complexity, "distributed": step_distributed, "time-to-accuracy": step_time_to_accuracy}


def _preload(spec: dict) -> None:
    """What every step imports anyway (torch, the command, the benchmarks, the training pipeline), so that a
    step started ahead of its turn has it ready when it is told to go."""
    import torch  # noqa: F401

    import kernels_check  # noqa: F401
    from spiketandem import cli, workflow  # noqa: F401
    from spiketandem.bench import neuron  # noqa: F401
    if spec["device"] == "cpu":   # the fused CPU kernel (built once per machine, then only loaded)
        from spiketandem.kernels import ops
        ops._cpu_module()


def _wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.05)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    if spec.get("go_file"):   # started ahead of its turn: import now, start the clock when told to go
        _preload(spec)
        _wait_for(Path(spec["go_file"]))
    t0 = time.perf_counter()
    ctx = Context(spec, spec_path)
    try:
        result = STEPS[spec["step"]](ctx)
        atomic_text(json.dumps({"ok": True, "result": result, "seconds": time.perf_counter() - t0}) + "\n",
                    spec_path.with_suffix(".result.json"))
        return 0
    except BaseException as exc:  # the step's failure is its result; the orchestrator goes on
        traceback.print_exc()
        atomic_text(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                "seconds": time.perf_counter() - t0}) + "\n", spec_path.with_suffix(".result.json"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
