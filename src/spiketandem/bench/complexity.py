"""Memory and time of one training step per learning rule, against the time window T (LTL Table 2, Sec. G).

Rules measured (same student, same batch, same surrogate):
  stbp                    end-to-end BPTT through every layer and step, cross-entropy only (`rules/stbp.py`)
  ltl-offline             offline LTL, all layers at once (BPTT inside each layer)
  ltl-offline-sequential  offline LTL, one layer per stage: every stage measured, the peak is the
                          largest stage's and the time the mean over stages
  ltl-online              online LTL (one step at a time, state carried without graph)
  inference               reference: the student's forward over T under no_grad (the floor any rule
                          that runs the time-folded forward pays; not a training rule)
Table 2 predicts memory O(M T L) for STBP and parallel offline LTL, O(M T) for sequential offline
LTL, O(1) for online LTL.  Inputs are random CIFAR-shaped images and the teacher is randomly
initialised: dense tensor work does not depend on the values.
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path

from ..config import make_config
from ..errors import SpiketandemError

NAME = "complexity"
HELP = "peak memory and time per training step vs T: STBP, offline LTL (parallel, sequential), online LTL"
DESCRIPTION = __doc__
VARIANTS = ("stbp", "ltl-offline", "ltl-offline-sequential", "ltl-online", "inference")


def add_arguments(p) -> None:
    p.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32], help="time windows")
    p.add_argument("--arch", nargs="+", default=["vgg11", "vgg16"], help="teacher architectures (the depths)")
    p.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    p.add_argument("--image-size", type=int, default=32, help="input images are 3 x S x S")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rules", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="what to measure")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per measurement (the median is kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-plot", action="store_true", help="skip OUT/complexity.png")


def build_rule(variant: str, arch: str, T: int, args, teacher, info, calibration) -> tuple[object, object, str]:
    """The rule object for one measurement, its config, and which implementation it is."""
    from ..rules import get_rule
    schedule = "sequential" if variant == "ltl-offline-sequential" else "parallel"
    rule_name = "ltl-offline" if variant in ("ltl-offline-sequential", "inference") else variant
    cfg = make_config({"rule": rule_name, "arch": arch, "width": args.width, "T": T, "batch_size": args.batch_size,
                       "schedule": schedule, "progress": False, "seed": args.seed})
    if variant == "stbp":
        implementation = "rules.stbp"
        # no calibration images: the rule would otherwise search a firing-rate initialisation, which changes
        # no tensor shape and so neither memory nor time
        rule = get_rule("stbp")(cfg, info, None, None)
    else:
        implementation = "Student.forward (no_grad)" if variant == "inference" else f"rules.{rule_name}"
        rule = get_rule(rule_name)(cfg, info, copy.deepcopy(teacher), calibration)
        if schedule == "sequential":  # one stage per epoch: stage k trains layer k
            rule.cfg = cfg = cfg.replace(epochs=len(rule.model.layers))
    # every student parameter trains (a copy of a frozen teacher would otherwise keep requires_grad=False)
    for p in rule.model.parameters():
        p.requires_grad_(True)
    return rule, cfg, implementation


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Subject:
    """One rule under measurement: its optimizer and training step (per stage for the sequential schedule)."""

    def __init__(self, variant: str, arch: str, T: int, args, teacher, info, device, calibration, x, y):
        from ..train import make_optimizer
        self.variant, self.x, self.y = variant, x, y
        self.rule, cfg, self.implementation = build_rule(variant, arch, T, args, teacher, info, calibration)
        self.rule.model.to(device)
        self.rule.train(True)
        self.optimizer = make_optimizer(self.rule, cfg)
        self.depth = len(self.rule.model.layers)
        self.stages = list(range(self.depth)) if variant == "ltl-offline-sequential" else [None]
        self.peaks: list[int] = []
        self.times: list[float] = []

    def step(self, stage) -> None:
        if self.variant == "inference":
            import torch
            with torch.no_grad():
                self.rule.model(self.x, self.rule.cfg.T)
            return
        if stage is not None:
            self.rule.on_epoch_start(stage)
        self.rule.train_step(self.x, self.y, self.optimizer, 0)


def measure(arch: str, T: int, args, teacher, info, device, log) -> list[dict]:
    """Rows for every rule at one (arch, T).  Peak memory: one step (per stage) after a warm-up step with
    every layer active (optimizer state for all parameters, lazy initialisation).  Time: the rules' steps interleaved round by round, so a change
    in the machine's load during the run falls on all of them alike; the median over ``repeats`` rounds
    (the sequential schedule: the mean of one step per stage)."""
    import torch
    from .memory import peak_bytes
    torch.manual_seed(args.seed)
    calibration = torch.randn(64, 3, args.image_size, args.image_size, device=device)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, info.num_classes, (args.batch_size,), device=device)
    subjects = [Subject(v, arch, T, args, teacher, info, device, calibration, x, y) for v in args.rules]
    for s in subjects:
        s.step(None)
        for stage in s.stages:
            s.peaks.append(peak_bytes(lambda: s.step(stage), device))
    for round_ in range(args.repeats):
        for s in subjects:
            if round_ > 0 and len(s.stages) > 1:
                continue
            for stage in s.stages:
                _sync(device)
                t0 = time.perf_counter()
                s.step(stage)
                _sync(device)
                s.times.append(time.perf_counter() - t0)
    rows = []
    for s in subjects:
        row = {"rule": s.variant, "T": T, "depth": s.depth, "arch": arch, "implementation": s.implementation,
               "peak_memory_bytes": max(s.peaks)}
        if len(s.stages) > 1:
            row.update(seconds_per_step=statistics.mean(s.times), stage_peak_bytes=s.peaks)
        else:
            row.update(seconds_per_step=statistics.median(s.times))
        log(f"  {s.variant:<24} {arch:<8} T={T:<3} peak {row['peak_memory_bytes'] / 2**20:9.2f} MiB   "
            f"{row['seconds_per_step']:8.3f} s/step")
        rows.append(row)
    return rows


def derived(rows: list[dict]) -> dict:
    """The ratios Table 2 is about: memory at the largest T over the smallest, and time vs STBP at T=16."""
    out = {"memory_ratio_Tmax_over_Tmin": {}, "time_ratio_vs_stbp_at_T16": {}}
    keys = {(r["rule"], r["arch"]) for r in rows}
    for rule, arch in sorted(keys):
        mine = sorted((r for r in rows if r["rule"] == rule and r["arch"] == arch), key=lambda r: r["T"])
        if len(mine) > 1 and mine[0]["peak_memory_bytes"] > 0:
            label = f"{rule}@{arch} T{mine[-1]['T']}/T{mine[0]['T']}"
            out["memory_ratio_Tmax_over_Tmin"][label] = mine[-1]["peak_memory_bytes"] / mine[0]["peak_memory_bytes"]
        stbp = [r for r in rows if r["rule"] == "stbp" and r["arch"] == arch and r["T"] == 16]
        here = [r for r in mine if r["T"] == 16]
        if stbp and here and rule != "stbp":
            out["time_ratio_vs_stbp_at_T16"][f"{rule}@{arch}"] = here[0]["seconds_per_step"] / stbp[0]["seconds_per_step"]
    return out


def plot(rows: list[dict], path: Path) -> None:
    """Two panels, log-log: peak memory vs T and seconds per step vs T, one line per rule and depth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
    styles = ["-", "--", ":", "-."]
    for k, arch in enumerate(sorted({r["arch"] for r in rows})):
        for variant in VARIANTS:
            mine = sorted((r for r in rows if r["rule"] == variant and r["arch"] == arch), key=lambda r: r["T"])
            if not mine:
                continue
            Ts = [r["T"] for r in mine]
            label = f"{variant} ({arch}, L={mine[0]['depth']})"
            color = f"C{VARIANTS.index(variant)}"
            ax_mem.plot(Ts, [r["peak_memory_bytes"] / 2**20 for r in mine], "o" + styles[k % 4], color=color, label=label)
            ax_time.plot(Ts, [r["seconds_per_step"] for r in mine], "o" + styles[k % 4], color=color, label=label)
    from matplotlib.ticker import FixedLocator, NullLocator
    Ts = sorted({r["T"] for r in rows})
    for ax, ylabel in ((ax_mem, "peak memory of a training step (MiB)"), (ax_time, "seconds per training step")):
        ax.set(xlabel="time window T", ylabel=ylabel, yscale="log")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(Ts))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(t) for t in Ts])
        ax.grid(alpha=0.3, which="both")
    ax_mem.legend(fontsize=7)
    fig.suptitle("training cost vs time window (LTL Table 2)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def run(args, log) -> dict:
    import torch
    from ..models import build_model
    from ..rules.base import DataInfo
    from ..train import resolve_device
    from . import environment
    device = resolve_device(args.device)
    if any(t <= 0 for t in args.T) or args.batch_size <= 0 or args.repeats <= 0 or (args.threads or 1) <= 0:
        raise SpiketandemError("--T, --batch-size, --repeats and --threads must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = DataInfo(10, 3, args.image_size)
    method = ("torch.cuda max_memory_allocated - memory_allocated around the step" if device.type == "cuda" else
              "live bytes of tensors created by the step (TorchDispatchMode + storage finalizers), peak")
    log(f"complexity benchmark on {device}: batch {args.batch_size}, width {args.width}, "
        f"{args.image_size}x{args.image_size} images; memory = {method}")
    rows = []
    for arch in args.arch:
        teacher = build_model(arch, info.num_classes, info.in_channels, info.image_size, args.width).to(device).eval()
        for T in sorted(args.T):
            rows += measure(arch, T, args, teacher, info, device, log)
    result = {"benchmark": NAME, **environment(device), "memory_method": method,
              "settings": {"batch_size": args.batch_size, "width": args.width, "image_size": args.image_size,
                           "repeats": args.repeats, "T": sorted(args.T), "arch": args.arch},
              "rows": rows, "derived": derived(rows)}
    if not args.no_plot:
        plot(rows, Path(args.out) / f"{NAME}.png")
    return result
