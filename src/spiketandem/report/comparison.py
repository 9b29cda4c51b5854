"""A comparison's result (``spiketandem compare``) rendered: its Markdown (setup, one row per rule, the learning
curves, every run's accuracy, operations and energy, the T sweep), its figures and its JSON."""
from __future__ import annotations

import json
from pathlib import Path

from ..runs import atomic_text
from ..seeds import mean_std_text
from .plots import plot_front, plot_learning_curves, plot_T_sweep
from .tables import markdown_table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _fmt(value, pct: bool = True) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}%" if pct else f"{value:.3g}"


def _acc(mean, std, n: int) -> str:
    """An accuracy over the seeds: "91.20 ± 0.31%" (the seed count is stated once, in the setup line)."""
    return mean_std_text(mean, std, n).split(" (")[0]


def comparison_markdown(result: dict) -> str:
    """The comparison as Markdown: the setup, one row per rule, then the T sweep."""
    s = result["setup"]
    seeds = result.get("seeds") or [s.get("seed")]
    n = len(seeds)
    seed_words = (f"seed {seeds[0]}" if n == 1 else
                  f"{n} seeds ({', '.join(map(str, seeds))}): accuracies are the mean ± sample standard deviation "
                  "over them, times per run")
    lines = [f"# Comparison on {s['dataset']} / {s['arch']} (width {s['width']})", "",
             f"Train images: {s['n_train'] or 'all'}; test images: {s['n_test'] or 'all'}; neuron {s['neuron']}; "
             f"T = {s['T']}; {s['epochs']} epochs; batch {s['batch_size']}; lr {s['lr'] or 'each rule’s default'}"
             + "".join(f", {n} {lr:g}" for n, lr in result.get("rule_lr", {}).items()) + "; "
             f"{seed_words}.", ""]
    if result["teacher_acc"] is not None:
        lines += [f"ANN teacher: {_fmt(result['teacher_acc'])} ({result['teacher']}).", ""]
    for T, q in result.get("quantized_teachers", {}).items():
        lines += [f"Offline LTL at T = {T} learns from the teacher quantized to {_plural(int(T), 'level')} (QCFS, "
                  f"fine-tuned {_plural(q['epochs'], 'epoch')} from it): {_fmt(q['accuracy'])} ({q['path']}).", ""]
    rows = [[name, r["T"], r["epochs"], _acc(r["student_acc"], r.get("student_acc_std"), n), _fmt(r["best_epoch_acc"]),
             _fmt(r["synops_ratio"], False),
             None if r["train_seconds"] is None else f"{r['train_seconds']:.0f}",
             None if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.1f}"]
            for name, r in result["runs"].items()]
    lines += [markdown_table(["rule", "T", "epochs", "test accuracy (final)", "best epoch",
                              f"SynOps / teacher MACs ({s['synops_convention']})", "train s", "s / epoch"], rows), ""]
    curves = {n: r["curve"] for n, r in result["runs"].items() if r["curve"]}
    if curves:
        epochs = max(len(c) for c in curves.values())
        lines += ["Test accuracy per epoch (Fig. 3):", "",
                  markdown_table(["epoch"] + list(curves),
                                 [[e + 1] + [_fmt(c[e]["test_acc"]) if e < len(c) else None for c in curves.values()]
                                  for e in range(epochs)]), ""]
    if result.get("table"):
        lines += [f"Every run: accuracy, its gap to the {'full-precision ' if result.get('quantized_teachers') else ''}"
                  "teacher, operations and energy per inference relative to the teacher's MACs (SynOps in both "
                  "conventions, docs/metrics.md; energy in the run's convention), training epochs and time "
                  "(conversion trains no epoch; qcfs and qat train an ANN):", "",
                  markdown_table(["method", "T", "accuracy", "Δ teacher (pp)", "SynOps ratio (exact)",
                                  "SynOps ratio (standard)", "energy ratio", "epochs", "lr", "train s"],
                                 [[r["method"], r["T"], _acc(r["acc"], r.get("acc_std"), n),
                                   None if r["gap"] is None else f"{r['gap']:.2f}"
                                   + ("" if r.get("acc_std") is None else f" ± {100 * r['acc_std']:.2f}"),
                                   _fmt(r["synops_exact"], False), _fmt(r["synops_standard"], False),
                                   _fmt(r["energy_ratio"], False), r["epochs"],
                                   None if r.get("lr") is None or not r["epochs"] else f"{r['lr']:g}",
                                   None if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"]
                                  for r in sorted(result["table"], key=lambda r: (r["T"] or 0, r["method"]))]), ""]
    sweep = result["sweep"]
    if sweep["accuracy"]:
        how = "one training per T" if sweep["mode"] == "train" else "each main run evaluated at every T"
        lines += [f"Accuracy vs time window (Fig. 2a; {how}):", "",
                  markdown_table(["rule"] + [f"T = {T}" for T in sweep["T"]],
                                 [[name] + [_acc(a.get(str(T)), sweep.get("accuracy_std", {}).get(name, {}).get(str(T)), n)
                                            for T in sweep["T"]] for name, a in sweep["accuracy"].items()]),
                  ""]
    return "\n".join(lines)


def write_comparison(result: dict, out: Path) -> dict:
    """``compare.md``, ``compare.json`` and the figures of a comparison in ``out``; returns the files by kind."""
    files = {"markdown": str(out / "compare.md"), "json": str(out / "compare.json")}
    curves = {n: r["curve"] for n, r in result["runs"].items() if r["curve"]}
    if curves:
        files["fig3"] = str(out / "fig3_learning_curves.png")
        plot_learning_curves(curves, Path(files["fig3"]), result["teacher_acc"],
                             title=f"test accuracy per epoch ({result['setup']['dataset']}, {result['setup']['arch']})")
    sweep = result["sweep"]
    if sweep["accuracy"]:
        files["fig2a"] = str(out / "fig2a_accuracy_vs_T.png")
        plot_T_sweep(sweep["accuracy"], sweep["synops_ratio"], Path(files["fig2a"]), result["teacher_acc"],
                     title=f"accuracy vs time window ({result['setup']['dataset']}, {result['setup']['arch']})",
                     convention=result["setup"]["synops_convention"], acc_std=sweep.get("accuracy_std"))
    if result["front"]:
        files["front"] = str(out / "front_accuracy_vs_synops.png")
        plot_front(result["front"], Path(files["front"]), result["teacher_acc"],
                   title=f"accuracy vs operations ({result['setup']['dataset']}, {result['setup']['arch']}), "
                         "one point per run", convention=result["setup"]["synops_convention"])
    result = {**result, "files": files}
    atomic_text(comparison_markdown(result) + "\n", out / "compare.md")
    atomic_text(json.dumps(result, indent=2) + "\n", out / "compare.json")
    return files
