"""Noise sweeps (the LTL paper's Fig. 4): for one noise kind, at each level and on several chips (seeds),
the trained student's accuracy on the chip before calibration, after the first epoch, and the best of
N epochs, for online-LTL calibration and for the HIL baseline."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..errors import SpiketandemError
from ..data.feeding import calibration_images, evaluation_batches
from ..workflow import load_run, prepare
from ..train import evaluate
from .calibrate import METHODS, calibrate, uncalibrated_accuracy
from .chip import Chip
from .noise import NOISE_MODELS, PAPER_LEVELS, NoiseSpec


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def run_sweep(run_dir: str | Path, kind: str, levels=None, *, seeds=(0,), epochs: int = 1, methods=METHODS,
              mode: str | None = None, lr: float | None = None, onchip_gate: bool = False, device: str = "auto",
              log=lambda *a, **k: None) -> dict:
    """The sweep as one JSON-able dict: ``rows`` (one per level, seed and method) and ``summary`` (per level:
    mean and spread over seeds of "before", and of "<method>_first" / "<method>_best")."""
    levels = list(levels or PAPER_LEVELS[kind])
    methods = list(methods) if epochs > 0 else []
    for method in methods:
        if method not in METHODS:
            raise SpiketandemError(f"calibration method {method!r} is not one of {', '.join(METHODS)}")
    specs = [NoiseSpec(kind, level, mode) for level in levels]   # validates every level before any work
    cfg, rule, info, dev = load_run(run_dir, device)
    cfg, data, _, _ = prepare(cfg)
    calib = calibration_images(data, dev)
    clean = evaluate(rule, evaluation_batches(data, cfg, dev), [cfg.T])[cfg.T]
    log(f"{cfg.rule} student of {cfg.arch} on {cfg.dataset}, T={cfg.T}: clean accuracy {clean:.4f}")
    rows, t0 = [], time.perf_counter()
    for spec in specs:
        for seed in seeds:
            for method in methods:
                result = calibrate(method, rule, Chip([spec], seed), cfg, info, data, dev, calib, epochs=epochs,
                                   lr=lr, onchip_gate=onchip_gate, log=log)
                rows.append({"level": spec.level, "seed": seed, "method": method, **result})
                log(f"{kind} {spec.level:g} seed {seed} {method}: before {result['before']:.4f} -> first epoch "
                    f"{result['epochs'][0]:.4f}, best {max(result['epochs']):.4f}")
            if epochs == 0 or not methods:
                before = uncalibrated_accuracy(rule, Chip([spec], seed), cfg, info, data, dev, calib)
                rows.append({"level": spec.level, "seed": seed, "method": None, "before": before, "epochs": []})
                log(f"{kind} {spec.level:g} seed {seed}: {before:.4f}")
    summary = []
    for spec in specs:
        at = [r for r in rows if r["level"] == spec.level]
        firsts = {}
        for r in at:  # "before" is the same chip for every method: count it once per seed
            firsts.setdefault(r["seed"], r["before"])
        entry = {"level": spec.level, "before": _stats(list(firsts.values()))}
        for method in methods:
            mine = [r for r in at if r["method"] == method]
            entry[f"{method}_first"] = _stats([r["epochs"][0] for r in mine])
            entry[f"{method}_best"] = _stats([max(r["epochs"]) for r in mine])
        summary.append(entry)
    return {"run_dir": str(run_dir), "kind": kind, "mode": specs[0].resolved_mode, "levels": levels,
            "seeds": list(seeds), "calibrate_epochs": epochs, "methods": methods,
            "lr": lr if lr is not None else (cfg.lr or 1e-3), "onchip_gate": onchip_gate, "T": cfg.T,
            "dataset": cfg.dataset, "arch": cfg.arch, "clean_acc": clean, "rows": rows, "summary": summary,
            "seconds": time.perf_counter() - t0}


LEVEL_LABEL = {name: kind.label for name, kind in NOISE_MODELS.items()}


def sweep_table(result: dict) -> str:
    """Markdown table: accuracy (%) per level, mean +- spread over chips."""
    def cell(s):
        return f"{100 * s['mean']:.2f} +- {100 * s['std']:.2f}" if s["n"] > 1 else f"{100 * s['mean']:.2f}"
    which = ("first", "best") if result["calibrate_epochs"] > 1 else ("first",)
    columns = ["before"] + [f"{m}_{w}" for m in result["methods"] for w in which]
    names = {"before": "w/o calibration"} | {f"{m}_first": f"{m.upper()} 1st epoch" for m in result["methods"]} | \
            {f"{m}_best": f"{m.upper()} best of {result['calibrate_epochs']}" for m in result["methods"]}
    lines = [f"| {LEVEL_LABEL[result['kind']]} | " + " | ".join(names[c] for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for entry in result["summary"]:
        lines.append(f"| {entry['level']:g} | " + " | ".join(cell(entry[c]) for c in columns) + " |")
    lines.append(f"\nclean (no noise): {100 * result['clean_acc']:.2f} %; {len(result['seeds'])} chip(s) per level")
    return "\n".join(lines)


def plot_sweep(result: dict, path: Path) -> Path:
    """Accuracy vs noise level with spread bars, like the paper's Fig. 4."""
    from ..report.plots import _save, plt
    fig, ax = plt.subplots(figsize=(5, 3.6))
    levels = [e["level"] for e in result["summary"]]
    columns = [("before", "w/o calibration", "k", "o")]
    styles = {"ltl": ("C0", "s"), "hil": ("C3", "^")}
    for m in result["methods"]:
        color, marker = styles.get(m, ("C2", "d"))
        columns.append((f"{m}_first", f"{m.upper()} 1st epoch", color, marker))
        if result["calibrate_epochs"] > 1:
            columns.append((f"{m}_best", f"{m.upper()} best of {result['calibrate_epochs']}", color, marker))
    for key, label, color, marker in columns:
        mean = [100 * e[key]["mean"] for e in result["summary"]]
        std = [100 * e[key]["std"] for e in result["summary"]]
        ax.errorbar(levels, mean, yerr=std, label=label, color=color, marker=marker, capsize=3,
                    linestyle="--" if key.endswith("_best") else "-")
    ax.axhline(100 * result["clean_acc"], color="grey", linewidth=0.8, linestyle=":", label="clean")
    if result["kind"] == "quantization":
        ax.invert_xaxis()
    ax.set_xlabel(LEVEL_LABEL[result["kind"]])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{result['kind']} ({result['dataset']}, {result['arch']}, T={result['T']})")
    ax.legend(fontsize=7)
    return _save(fig, path)
