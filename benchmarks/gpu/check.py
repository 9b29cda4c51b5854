"""One command that validates spiketandem on a CUDA GPU, within a fixed time budget.

    python benchmarks/gpu/check.py --out DIR [--budget-s 540] [--data-dir CIFAR10] [--steps ...]
    python benchmarks/gpu/check.py --out DIR --dry-run       # the same steps on the CPU, tiny configuration

Steps, in this order, each in its own process with its own time limit (a hang or a crash of one step is
that step's failure, and the next one starts); ``DIR/gpu_check.json`` is rewritten (atomically) when a
step starts and when it ends, so a run cut off anywhere still holds everything measured until then.
A step stopped by its limit keeps what it had reported so far (``partial``).  Each step's process is
started while the one before runs (it imports torch meanwhile, on one CPU core) and its clock starts when
it is told to go.  Budget at the default
``--budget-s 540`` (9 minutes; scaled in proportion for another budget or a subset of ``--steps``):

  kernels           60 s  fused Triton neuron kernels vs the per-step reference on the device, every option
                          combination (IF/LIF x reset x detach_reset x 5 surrogates x static current), fp32
                          and bf16 inputs, through autograd; and the Triton kernels called directly against
                          the torch loop.  Counts of combinations passed / failed (``kernels_check.py``).
  neuron            60 s  ``bench neuron`` on the device: ours (fused, reference per-step torch loop) against
                          SpikingJelly's GPU path (its own choice: a native CUDA build, else Triton) if it
                          imports and runs, and snnTorch / Norse if installed; spikes checked equal first.
  ltl-epoch         45 s  ``bench ltl-epoch``: full-width VGG-11, T = 16, bf16 + channels_last, then float32.
  complexity        45 s  ``bench complexity``: peak memory (the CUDA allocator's) and time per step vs
                          T = 4..32, VGG-11 then VGG-16, full width.
  distributed       80 s  2 processes on one GPU under torchrun (NCCL; gloo if NCCL refuses one device
                          twice; ``ddp.py``) against 1 process, the run of tests/test_distributed.py.
  time-to-accuracy  rest  ``bench time-to-accuracy``: full-width VGG-11 teacher on CIFAR-10 (the JPEG archive),
                          then the offline-LTL student at T = 16, bf16, channels_last, until 92 % or its limit;
                          every epoch's time and accuracy (250 s at the default budget, plus what earlier
                          steps left unused).
  data              (beside the others) decodes the dataset into the array cache while the GPU steps run.

With ``--dry-run`` every step runs on the CPU in a tiny configuration (Triton under ``TRITON_INTERPRET=1``,
small shapes, digits instead of CIFAR-10, one epoch): it proves the kit runs and writes its JSON, and its
numbers mean nothing.  The JSON: ``steps`` (per step: status ok / failed / timeout / skipped, limit,
seconds, result or partial result, the end of its log), ``headline`` (the figures issue 19 asks for, from
whatever finished), ``environment``, ``budget_s`` and ``plan`` (every step's limit and exact configuration).
"""
from __future__ import annotations

import argparse
import sys

import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from spiketandem.errors import SpiketandemError
from spiketandem.runs import atomic_text
from steps import child_env, kill_group, step_command

NAME = "gpu-check"
RESULT_FILE = "gpu_check.json"
LOG_FILE = "gpu_check.log"
DEFAULT_BUDGET_S = 540
REST = "time-to-accuracy"
# seconds of each step at the default budget (the last, time-to-accuracy, gets what is left)
SHARES = {"kernels": 60, "neuron": 60, "ltl-epoch": 45, "complexity": 45, "distributed": 80, REST: 250}
STEP_ORDER = tuple(SHARES)
DATA_SHARE = 200   # the data step runs beside the others, from the start
RESERVE_S = 5      # kept back for writing the last JSON
CARRIED_ARCHIVE = Path("benchmarks/gpu/carry/cifar10-jpeg.tar.gz")
# tests/test_distributed.py's run: 128 images = 4 global batches of 32, no randomness inside a step
DDP_FLAGS = ["train", "--dataset", "digits", "--arch", "digits-cnn", "--n-train", "128", "--n-test", "64",
             "--teacher-epochs", "1", "--epochs", "2", "--batch-size", "32", "--T", "4", "--eval-T", "4",
             "--seed", "3"]


def _with(flags: list[str], values: dict) -> list[str]:
    """``flags`` with the values of some options replaced."""
    out = list(flags)
    for option, value in values.items():
        out[out.index(option) + 1] = value
    return out


def add_arguments(p) -> None:
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help="wall-time budget of the whole check in seconds (steps' limits scale with it)")
    p.add_argument("--dry-run", action="store_true",
                   help="run every step on the CPU in a tiny configuration (a rehearsal; its numbers mean nothing)")
    p.add_argument("--steps", nargs="+", choices=STEP_ORDER, default=list(STEP_ORDER),
                   help="run only these steps (their limits share the budget in proportion)")
    p.add_argument("--data-dir", default=None,
                   help=f"CIFAR-10 for time-to-accuracy (default: {CARRIED_ARCHIVE} if present, else the usual search)")
    p.add_argument("--work", default=None, metavar="DIR",
                   help="folder for the steps' run folders and logs (default: a new temporary folder; only the "
                        "JSON and the log go to --out)")
    p.add_argument("--kernel-workers", type=int, default=None,
                   help="parallel processes for the kernel check (default: 4 on CUDA, 1 in a dry run)")
    p.add_argument("--tta-teacher-epochs", type=int, default=None,
                   help="teacher epochs of time-to-accuracy (default: that benchmark's own, 40)")
    p.add_argument("--tta-epochs", type=int, default=None,
                   help="most student epochs of time-to-accuracy (default: that benchmark's own, 10)")


# ---- what each step runs -----------------------------------------------------------------------------------

def plan(dry_run: bool, args) -> dict:
    """Each step's configuration: the flags of the benchmarks it calls (GPU setting, or the tiny CPU one)."""
    if dry_run:
        tta = ["--allow-cpu", "--teacher-epochs", "1", "--epochs", "1", "--target", "0.3"]
        return {
            "kernels": {"sizes": {"autograd_shape": [5, 2, 24], "triton_n": 64, "triton_T": 4},
                        "workers": args.kernel_workers or 1, "triton_interpret": True},
            "neuron": {"flags": ["--T", "12", "--linear-T", "6", "--n", "96", "--linear-n", "24", "--batch-size", "2",
                                 "--repeats", "1", "--warmup", "0", "--peers", "spikingjelly"]},
            "ltl-epoch": {"runs": [["--width", "0.125", "--T", "2", "--batch-size", "8", "--batches", "1",
                                    "--repeats", "1", "--n-train", "80"]]},
            "complexity": {"runs": [["--arch", "digits-cnn", "--image-size", "8", "--width", "0.25", "--batch-size",
                                     "4", "--T", "2", "4", "--repeats", "1", "--no-plot",
                                     "--rules", "stbp", "ltl-offline", "ltl-online"]]},
            "distributed": {"flags": _with(DDP_FLAGS, {"--n-train": "64", "--epochs": "1"}), "backends": ["gloo"],
                            "attempt_limit_s": {"gloo": 120}},
            REST: {"flags": tta},
            "data": {"dataset": "digits"},
        }
    data_dir = args.data_dir or (str(CARRIED_ARCHIVE.resolve()) if CARRIED_ARCHIVE.is_file() else None)
    tta = ([] if data_dir is None else ["--data-dir", data_dir])
    tta += [] if args.tta_teacher_epochs is None else ["--teacher-epochs", str(args.tta_teacher_epochs)]
    tta += [] if args.tta_epochs is None else ["--epochs", str(args.tta_epochs)]
    ltl = ["--arch", "vgg11", "--width", "1", "--T", "16", "--batch-size", "128", "--batches", "6", "--repeats", "2"]
    complexity = ["--width", "1", "--batch-size", "32", "--T", "4", "8", "16", "32", "--repeats", "3"]
    return {
        "kernels": {"sizes": {"autograd_shape": [16, 8, 4096], "triton_n": 4099, "triton_T": 8},
                    "workers": args.kernel_workers or 4, "triton_interpret": False},
        "neuron": {"flags": ["--T", "16", "100", "--linear-T", "100", "500", "--batch-size", "32", "--n", "65536",
                             "--linear-n", "4096", "--repeats", "10", "--warmup", "2"]},
        "ltl-epoch": {"runs": [ltl + ["--amp", "bf16", "--channels-last"], ltl]},
        "complexity": {"runs": [["--arch", "vgg11", *complexity], ["--arch", "vgg16", *complexity]]},
        # NCCL first; a refusal (or a hang) is given its own short limit, then gloo
        "distributed": {"flags": DDP_FLAGS, "backends": ["nccl", "gloo"],
                        "attempt_limit_s": {"nccl": 20, "gloo": 35}},
        REST: {"flags": tta},
        "data": {"dataset": "cifar10", "data_dir": data_dir},
    }


def step_env(name: str, config: dict) -> dict:
    """Environment variables a step's process starts with."""
    if name == "kernels" and config.get("triton_interpret"):
        return {"TRITON_INTERPRET": "1"}      # must be set before triton is imported
    if name == "distributed":
        return {"NVIDIA_TF32_OVERRIDE": "0"}  # 1 vs 2 processes compared in full float32 (no TF32 convolutions)
    return {}


def limits(steps: list[str], budget: float) -> dict:
    """Each step's nominal limit: its share of the budget (shares of the steps run, in proportion)."""
    scale = budget / sum(SHARES[s] for s in steps)
    return {s: SHARES[s] * scale for s in steps}


# ---- running one step ----------------------------------------------------------------------------------------

def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class StepProcess:
    """A step running in its own process session: ``cmd`` writes ``SPEC.result.json`` (``{"ok", "result"}``
    or ``{"ok": False, "error"}``) and may write ``SPEC.partial.json`` on the way.  With ``go_file`` the
    process is started ahead of its turn (it imports torch and the rest meanwhile) and waits for that file,
    which ``go()`` creates; its clock and limit start then."""

    def __init__(self, name: str, cmd: list[str], spec_path: Path, env: dict, log_path: Path,
                 go_file: Path | None = None):
        self.name, self.spec_path, self.log_path, self.go_file = name, spec_path, log_path, go_file
        self.started = time.perf_counter()
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def go(self) -> None:
        self.started = time.perf_counter()
        if self.go_file is not None:
            self.go_file.touch()

    def cancel(self) -> None:
        kill_group(self.proc)
        self._log.close()

    def finish(self, limit: float, on_partial=None, every: float = 10.0) -> dict:
        """Wait until the step ends or ``limit`` seconds after its start; its entry for the JSON.  While it
        runs, ``on_partial(partial)`` gets each new partial result (at most every ``every`` seconds), so that
        the JSON holds it even if this whole process is stopped from outside."""
        timed_out, last = False, None
        while True:
            left = limit - (time.perf_counter() - self.started)
            try:
                self.proc.wait(timeout=max(0.0, min(every, left)))
                break
            except subprocess.TimeoutExpired:
                if left <= every:
                    timed_out = True
                    kill_group(self.proc)
                    break
            partial = _read(self.spec_path.with_suffix(".partial.json"))
            if on_partial is not None and partial is not None and partial != last:
                last = partial
                on_partial(partial)
        seconds = time.perf_counter() - self.started
        self._log.close()
        final = _read(self.spec_path.with_suffix(".result.json"))
        if final is not None and "seconds" in final:   # the step's own time (it may end before it is waited for)
            seconds = min(seconds, final["seconds"])
        entry = {"seconds": round(seconds, 4), "exit_code": self.proc.returncode}  # a cached load takes ms
        partial = _read(self.spec_path.with_suffix(".partial.json"))
        if final is not None and not timed_out:
            entry["status"] = "ok" if final.get("ok") else "failed"
            if final.get("ok"):
                entry["result"] = final["result"]
            else:
                entry["error"] = final.get("error")
        else:
            entry["status"] = "timeout" if timed_out else "failed"
            entry["error"] = (f"stopped at its limit of {limit:.0f} s" if timed_out else
                              f"the step's process ended (exit code {self.proc.returncode}) without a result")
        if entry["status"] != "ok":
            if partial is not None:
                entry["partial"] = partial
            entry["log_tail"] = _tail(self.log_path)
        return entry


# ---- the run -------------------------------------------------------------------------------------------------

def _environment(device: str) -> dict:
    import torch
    info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cpu_count": os.cpu_count(), "device": device}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory), gpu_count=torch.cuda.device_count(),
                    capability=f"{props.major}.{props.minor}")
    return info


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def headline(steps: dict) -> dict:
    """The figures issue 19 asks for, from the steps that got that far (None where a step did not)."""
    def res(name):
        e = steps.get(name, {})
        return e.get("result") or e.get("partial")
    out = {}
    k = res("kernels")
    if k:
        out["kernels_vs_reference"] = {g: {c: _get(k, "summary", g, c) for c in ("passed", "failed", "skipped")}
                                       for g in ("autograd", "triton", "total")}
    n = _get(res("neuron"), "bench")
    if n:
        out["neuron"] = {"target": n.get("target"), "ratios": n.get("ratios"),
                         "spike_agreement_min": min((r["spike_agreement"] for r in n.get("rows", [])), default=None)}
    ltl = _get(res("ltl-epoch"), "runs") or []
    out["ltl_over_teacher_epoch"] = [{"amp": r["bench"].get("amp"), "channels_last": r["bench"].get("channels_last"),
                                      "ratio": r["bench"].get("ratio"), "bound": r["bench"].get("bound"),
                                      "ratio_over_bound": r["bench"].get("ratio_over_bound"),
                                      "teacher_epoch_s": r["bench"]["rows"][0]["epoch_seconds"],
                                      "ltl_epoch_s": r["bench"]["rows"][1]["epoch_seconds"]} for r in ltl]
    cx = _get(res("complexity"), "runs") or []
    out["memory_vs_T"] = [{"arch": r["bench"]["settings"]["arch"],
                           "peak_bytes": {f"{row['rule']}@T{row['T']}": row["peak_memory_bytes"]
                                          for row in r["bench"]["rows"]},
                           "memory_ratio_Tmax_over_Tmin": r["bench"]["derived"]["memory_ratio_Tmax_over_Tmin"]}
                          for r in cx]
    d = res("distributed")
    if d:
        out["distributed"] = {"backend": d.get("backend"), "equal_to_one_process": d.get("equal_to_one_process"),
                              "attempts": [(a["backend"], a["exit_code"]) for a in d.get("attempts", [])]}
    t = res(REST)
    if t:
        b = t.get("bench") or {}
        out["time_to_accuracy"] = {"reached": b.get("reached"), "seconds_to_target": b.get("seconds_to_target"),
                                   "target": b.get("target"), "within_target": b.get("within_target"),
                                   "complete": t.get("complete"), "epochs": t.get("epochs")}
    return out


def run(args, log) -> dict:
    import torch
    from spiketandem.train import resolve_device
    if args.budget_s <= 0 or (args.kernel_workers is not None and args.kernel_workers <= 0):
        raise SpiketandemError("--budget-s and --kernel-workers must be positive")
    if args.dry_run:
        if args.device not in ("auto", "cpu"):
            raise SpiketandemError("--dry-run rehearses the check on the CPU; leave out --device or use --device cpu")
        device = "cpu"
    else:
        dev = resolve_device(args.device)
        if dev.type != "cuda":
            raise SpiketandemError("the GPU check measures on a CUDA GPU and there is none here "
                                   f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
                                   "`--dry-run` rehearses every step on the CPU in a tiny configuration")
        device = str(dev) if dev.index is not None else "cuda"
    return Check(args, device, log).run()


class Check:
    """One gpu-check: the plan, the step processes, and the JSON rewritten as each step starts and ends."""

    def __init__(self, args, device: str, log):
        self.t_start = time.perf_counter()
        self.deadline = self.t_start + args.budget_s
        self.device, self.log = device, log
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="spiketandem-gpu-check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.steps = [s for s in STEP_ORDER if s in args.steps]
        self.configs = plan(args.dry_run, args)
        self.nominal = limits(self.steps, args.budget_s)
        scale = args.budget_s / sum(SHARES[s] for s in self.steps)
        self.data_limit = DATA_SHARE * scale
        self.use_data = REST in self.steps
        self.processes: list[StepProcess] = []
        self.report = {
            "kit": NAME, "mode": "dry-run" if args.dry_run else "cuda", "measured_on_gpu": not args.dry_run,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "budget_s": args.budget_s, "elapsed_s": 0.0, "complete": False, "work_dir": str(self.work),
            "environment": _environment(device),
            "plan": [{"step": s, "config": self.configs[s], "env": step_env(s, self.configs[s]),
                      "limit_s": round(self.nominal[s], 1) if s != REST else f"rest (>= {self.nominal[s]:.0f})"}
                     for s in self.steps],
            "steps": {s: {"status": "pending"} for s in self.steps}, "headline": {}}
        if self.use_data:
            self.report["plan"].append({"step": "data", "limit_s": round(self.data_limit, 1),
                                        "config": self.configs["data"],
                                        "beside": "runs from the start, beside the other steps"})
            self.report["steps"]["data"] = {"status": "pending"}
        self.result_path, self.log_path = out / RESULT_FILE, out / LOG_FILE
        self.log_path.write_text("")

    def save(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.t_start, 2)
        self.report["headline"] = headline(self.report["steps"])
        atomic_text(json.dumps(self.report, indent=1) + "\n", self.result_path)

    def launch(self, name: str) -> StepProcess:
        """Start step ``name`` ahead of its turn: it imports what it needs and waits for ``go``."""
        go_file = self.work / f"{name}.go"
        go_file.unlink(missing_ok=True)
        spec = {"step": name, "device": self.device, "work": str(self.work / name), "config": self.configs[name],
                "mode": self.report["mode"], "go_file": str(go_file)}
        cmd, spec_path = step_command(name, spec, self.work)
        step = StepProcess(name, cmd, spec_path, child_env(step_env(name, self.configs[name])),
                           self.work / f"{name}.log", go_file)
        self.processes.append(step)
        return step

    def go(self, step: StepProcess) -> StepProcess:
        step.go()
        self.report["steps"][step.name] = {"status": "running"}
        self.save()
        return step

    def running(self, name: str, partial: dict) -> None:
        self.report["steps"][name] = {"status": "running", "partial": partial}
        self.save()

    def record(self, name: str, entry: dict, limit: float) -> None:
        entry["limit_s"] = round(limit, 1)
        self.report["steps"][name] = entry
        with open(self.log_path, "a", errors="replace") as f:
            f.write(f"\n===== {name} =====\n{_tail(self.work / f'{name}.log', 200_000)}")
        self.save()
        self.log(f"[{time.perf_counter() - self.t_start:6.1f} s] {name}: {entry['status']} in {entry['seconds']:.1f} s "
                 f"(limit {limit:.0f} s)" + (f" -- {entry['error']}" if entry.get("error") else ""))

    def left(self) -> float:
        return self.deadline - time.perf_counter() - RESERVE_S

    def run(self) -> dict:
        self.log(f"gpu-check ({self.report['mode']}) on {self.device}, budget {self.report['budget_s']:.0f} s, "
                 f"steps {', '.join(self.steps)}; results: {self.result_path}; work folder: {self.work}")
        self.save()
        try:
            self._run_steps()
        finally:   # an interrupted check leaves no step process behind, waiting for its turn or running
            for step in self.processes:
                if step.proc.poll() is None:
                    step.cancel()
        self.report["complete"] = True
        self.save()
        statuses = ", ".join(f"{s} {e['status']}" for s, e in self.report["steps"].items())
        self.log(f"gpu-check done in {self.report['elapsed_s']:.0f} s: {statuses}")
        return self.report

    def _run_steps(self) -> None:
        """The steps in order, each told to go when the one before has ended, and the next one started (to
        import torch and the rest) meanwhile; the data step beside them from the start."""
        data = self.go(self.launch("data")) if self.use_data else None
        upcoming = self.launch(self.steps[0])
        for i, name in enumerate(self.steps):
            step, upcoming = upcoming, (self.launch(self.steps[i + 1]) if i + 1 < len(self.steps) else None)
            if name == REST and data is not None:   # the dataset must be decoded before the clock starts
                self.record("data", data.finish(max(0.0, min(self.data_limit, self.left()))), self.data_limit)
                data = None
            limit = self.left() if name == REST else min(self.nominal[name], self.left())
            if limit < 1:
                step.cancel()
                self.report["steps"][name] = {"status": "skipped", "error": "no time left in the budget"}
                self.save()
                self.log(f"{name}: skipped (no time left in the budget)")
                continue
            self.record(name, self.go(step).finish(limit, on_partial=lambda p, name=name: self.running(name, p)),
                        limit)
        if data is not None:
            self.record("data", data.finish(max(0.0, min(self.data_limit, self.left() + RESERVE_S))),
                        self.data_limit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu/check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the JSON results and the log")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv=None) -> int:
    """The kit's one entry point: run the check, write ``OUT/gpu-check.json`` (and ``OUT/gpu_check.json`` as it
    goes); ``--json`` prints the result.  A refusal is one line and exit code 2."""
    args = build_parser().parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, file=sys.stderr, **k))
    try:
        result = run(args, log)
    except SpiketandemError as e:
        print(f"gpu-check: error: {e}", file=sys.stderr)
        return 2
    atomic_text(json.dumps(result, indent=1) + "\n", Path(args.out) / f"{NAME}.json")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
