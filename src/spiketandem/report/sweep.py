"""Accuracy, SynOps ratio and energy ratio vs T of one run: `spiketandem eval --sweep-T`."""
from __future__ import annotations

from pathlib import Path

from ..runs import atomic_text
from .plots import plot_T_sweep
from .tables import synops_convention

SWEEP_T = (1, 2, 4, 8, 16, 32, 64)


def sweep_rows(summary: dict) -> list[dict]:
    """One row per evaluated T: {T, accuracy, synops_ratio, energy_ratio} from a run summary."""
    acc = summary.get("acc_by_T") or {}
    ratio = summary.get("synops_ratio_by_T") or {}
    energy = summary.get("energy_ratio_by_T") or {}
    return [{"T": int(T), "accuracy": acc[T], "synops_ratio": ratio.get(T), "energy_ratio": energy.get(T)}
            for T in sorted(acc, key=int)]


def write_T_sweep(run_dir: str | Path, summary: dict) -> list[Path]:
    """Write sweep_T.csv and sweep_T.png (accuracy and SynOps ratio vs T) into the run folder; the CSV's
    last column and the plot name the SynOps convention of the ratios."""
    run_dir = Path(run_dir)
    rows = sweep_rows(summary)
    convention = synops_convention(summary)
    fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    text = "T,accuracy,synops_ratio,energy_ratio,synops_convention\n" + "".join(
        f"{r['T']},{fmt(r['accuracy'])},{fmt(r['synops_ratio'])},{fmt(r['energy_ratio'])},{convention or ''}\n"
        for r in rows)
    atomic_text(text, run_dir / "sweep_T.csv")
    neuron = (summary.get("neuron") or "").upper()
    label = f"{summary.get('rule', 'student')} ({neuron}, trained at T={summary.get('T')})"
    plot_T_sweep({label: {r["T"]: r["accuracy"] for r in rows}}, {label: {r["T"]: r["synops_ratio"] for r in rows}},
                 run_dir / "sweep_T.png", teacher_acc=summary.get("teacher_acc"),
                 energy={label: {r["T"]: r["energy_ratio"] for r in rows}},
                 title=f"{summary.get('arch')} on {summary.get('dataset')}", convention=convention)
    return [run_dir / "sweep_T.csv", run_dir / "sweep_T.png"]
