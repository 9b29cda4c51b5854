"""`spiketandem report RUN_DIR...`: one Markdown + HTML report (with PNG figures) over run folders.

Everything is read from the run folders (config.yaml, metrics.jsonl, summary.json, activity.json,
teacher/metrics.jsonl): no model is loaded, so a report is quick and works on any machine.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import SpiketandemError
from ..runs import RunFolder
from . import plots
from .document import Document
from .tables import num, pct, si


@dataclass
class RunData:
    path: Path
    label: str
    config: dict
    summary: dict
    metrics: list
    activity: dict | None
    teacher_metrics: list

    @property
    def spiking(self) -> bool:
        return bool(self.summary.get("acc_by_T"))


def load_run_data(path: str | Path, label: str | None = None) -> RunData:
    run = RunFolder(path)
    config = run.read_config()
    if not run.file("summary.json").is_file():
        raise SpiketandemError(f"{run.path} has no summary.json: the run did not finish; finish it (`--resume`) or "
                               "evaluate it (`spiketandem eval RUN_DIR`) first")
    activity = run.read_json("activity.json") if run.file("activity.json").is_file() else None
    teacher = RunFolder(run.path / "teacher")
    return RunData(run.path, label or run.path.name, config, run.read_json("summary.json"), run.read_metrics(),
                   activity, teacher.read_metrics() if teacher.exists() else [])


def _labels(paths: list[Path]) -> list[str]:
    """Folder names, with the parent added where two runs share a name."""
    names = [p.resolve().name for p in paths]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _describe(r: RunData) -> str:
    s, c = r.summary, r.config
    parts = [f"rule **{s.get('rule')}**", f"dataset {s.get('dataset')}", f"architecture {s.get('arch')}"]
    if c.get("width", 1.0) != 1.0:
        parts.append(f"width x{c['width']}")
    if r.spiking:
        parts.append(f"{(s.get('neuron') or '').upper()} neurons, trained at T = {s.get('T')}")
    parts.append(f"{s.get('epochs')} epoch{'' if s.get('epochs') == 1 else 's'}")
    if c.get("n_train") or c.get("n_test"):
        parts.append(f"data subset {c.get('n_train') or 'all'} train / {c.get('n_test') or 'all'} test images")
    parts.append(f"device {s.get('device')}")
    if s.get("train_seconds") is not None:
        parts.append(f"training time {s['train_seconds']:.0f} s")
    return ", ".join(parts) + f". Folder: `{r.path}`."


def _comparison(doc: Document, runs: list[RunData], out: Path) -> None:
    doc.heading("Comparison of runs")
    rows = []
    for r in runs:
        s = r.summary
        gap = None
        if s.get("teacher_acc") is not None and r.spiking:
            gap = f"{100 * (s['student_acc'] - s['teacher_acc']):+.2f}"
        energy = (s.get("energy") or {}).get("ratio")
        rows.append([r.label, s.get("rule"), s.get("dataset"), s.get("arch"), (s.get("neuron") or "–").upper(),
                     s.get("T"), s.get("epochs"), pct(s.get("teacher_acc")), pct(s.get("student_acc")), gap,
                     num(s.get("synops_ratio")) if r.spiking else None, num(energy), num(s.get("train_seconds"), ".0f"),
                     s.get("device")])
    doc.table(["run", "rule", "dataset", "arch", "neuron", "T", "epochs", "teacher acc", "accuracy", "Δ (pp)",
               "SynOps ratio", "energy ratio", "train s", "device"], rows, "lllllrrrrrrrrl")
    doc.text("Accuracy is the test accuracy at the training window T; Δ is student minus teacher in percentage "
             "points. "
             "SynOps ratio = (student SynOps + student MACs) / teacher MACs per inference; energy ratio weighs "
             "MACs at 4.6 pJ and ACs at 0.9 pJ (45 nm) unless the run was evaluated with other values.")
    if len(runs) < 2:
        return
    teacher = next((r.summary.get("teacher_acc") for r in runs if r.summary.get("teacher_acc") is not None), None)
    plots.plot_bars({r.label: r.summary.get("student_acc") for r in runs}, out / "compare_accuracy.png",
                    "test accuracy", "accuracy of each run", reference=teacher, reference_label="teacher",
                    percent=True)
    doc.figure(out / "compare_accuracy.png", "Test accuracy of each run (dotted: the first run's teacher).")
    # the students' curves (Fig. 3); a teacher's long schedule would squeeze them, it has its own section
    students = [r for r in runs if r.summary.get("rule") != "ann"] or runs
    curves = {r.label: r.metrics for r in students if r.metrics}
    if curves:
        plots.plot_learning_curves(curves, out / "compare_learning_curves.png", teacher)
        doc.figure(out / "compare_learning_curves.png", "Test accuracy per epoch of every run.")
    spiking = [r for r in runs if r.spiking]
    if len(spiking) > 1:
        plots.plot_T_sweep({r.label: r.summary["acc_by_T"] for r in spiking},
                           {r.label: r.summary.get("synops_ratio_by_T") or {} for r in spiking},
                           out / "compare_T.png", teacher_acc=teacher)
        doc.figure(out / "compare_T.png", "Accuracy and SynOps ratio vs time window T of every spiking run.")


def _accuracy_section(doc: Document, r: RunData, out: Path, stem: str) -> None:
    s = r.summary
    if not r.spiking:
        doc.text(f"Test accuracy: **{pct(s.get('student_acc'))}**.")
        return
    ratio, energy = s.get("synops_ratio_by_T") or {}, s.get("energy_ratio_by_T") or {}
    rows = []
    for T in sorted(s["acc_by_T"], key=int):
        acc = s["acc_by_T"][T]
        gap = None if s.get("teacher_acc") is None else f"{100 * (acc - s['teacher_acc']):+.2f}"
        rows.append([T, pct(acc), gap, num(ratio.get(T)), num(energy.get(T))])
    doc.heading("Accuracy, SynOps and energy per time window", 3)
    if s.get("teacher_acc") is not None:
        doc.text(f"Teacher (ANN) accuracy: **{pct(s['teacher_acc'])}**.")
    doc.table(["T", "accuracy", "Δ teacher (pp)", "SynOps ratio", "energy ratio"], rows)
    if len(rows) < 2:
        return  # one window: the table says it all
    label = f"{s.get('rule')} ({(s.get('neuron') or '').upper()}, trained at T={s.get('T')})"
    plots.plot_T_sweep({label: s["acc_by_T"]}, {label: ratio}, out / f"{stem}-T.png", teacher_acc=s.get("teacher_acc"),
                       energy={label: energy}, title=f"{r.label}: {s.get('arch')} on {s.get('dataset')}")
    doc.figure(out / f"{stem}-T.png", "(a) Test accuracy vs evaluation window T; (b) student operations (solid) and "
               "energy (dashed) relative to the teacher's MACs — below 1 the SNN needs less.")


def _operations_section(doc: Document, r: RunData, out: Path, stem: str) -> None:
    s = r.summary
    if s.get("teacher_macs_per_sample") is None:
        return
    e = s.get("energy") or {}
    doc.heading(f"Operations and energy per inference (T = {s.get('T')})", 3)
    doc.table(["", "student (SNN)", "teacher (ANN)", "student / teacher"], [
        ["SynOps (accumulates)", si(s["synops_per_sample"]), "0", None],
        ["MACs (multiply-accumulates)", si(s["student_macs_per_sample"]), si(s["teacher_macs_per_sample"]), None],
        ["operations", si(s["synops_per_sample"] + s["student_macs_per_sample"]), si(s["teacher_macs_per_sample"]),
         num(s.get("synops_ratio"))],
        [f"energy (MAC {e.get('mac_pj')} pJ, AC {e.get('ac_pj')} pJ)", f"{num(e.get('student_uj'))} µJ",
         f"{num(e.get('teacher_uj'))} µJ", num(e.get("ratio"))],
    ], "lrrr")
    ops = s.get("ops_by_layer") or {}
    if ops:
        plots.plot_ops_by_layer(ops, out / f"{stem}-ops.png", s.get("T"))
        doc.figure(out / f"{stem}-ops.png", "Operations per conv/linear layer: the student's event-driven accumulates "
                   "(and MACs where a layer sees the analog image) against the teacher's MACs.")


def _firing_section(doc: Document, r: RunData, out: Path, stem: str) -> None:
    a = r.activity
    doc.heading("Firing activity", 3)
    if not a:
        doc.text(f"No activity record in this folder; `spiketandem eval {r.path}` writes one (activity.json).")
        return
    doc.text(f"Recorded at T = {a['T']} on {a['samples']} test images. Rate = spikes per neuron per time step; "
             "silent = neurons that emit no spike for a sample, averaged over samples; dead = neurons silent for "
             "every sample.")
    # label layers by the teacher module of the ReLU they replaced (activity records before it was kept: by name)
    label = {name: v.get("path", name) for name, v in a["layers"].items()}
    doc.table(["layer (teacher ReLU)", "neurons", "rate", "silent", "dead"],
              [[label[name], v["neurons"], f"{v['rate']:.4f}", pct(v["silent"], 1), pct(v["dead"], 1)]
               for name, v in a["layers"].items()])
    plots.plot_layer_rates({label[n]: v for n, v in a["layers"].items()}, out / f"{stem}-rates.png", a["T"])
    doc.figure(out / f"{stem}-rates.png", "Mean firing rate and fraction of silent neurons per layer.")
    plots.plot_rate_histograms({label.get(n, n): h for n, h in a["histograms"].items()}, out / f"{stem}-hist.png")
    doc.figure(out / f"{stem}-hist.png", "Distribution of per-neuron firing rates (spike count / T) per layer, log "
               "scale.")
    if a.get("raster"):
        plots.plot_raster({label.get(n, n): r for n, r in a["raster"].items()}, out / f"{stem}-raster.png")
        doc.figure(out / f"{stem}-raster.png", "Spike raster of the first test image: per layer, up to 64 neurons "
                   "drawn at random among those that fired.")


def _run_section(doc: Document, r: RunData, out: Path) -> None:
    stem = _slug(r.label)
    doc.heading(f"Run {r.label}")
    doc.text(_describe(r))
    _accuracy_section(doc, r, out, stem)
    if r.metrics or r.teacher_metrics:
        doc.heading("Learning curves", 3)
    if r.metrics:
        plots.plot_learning_curve(r.metrics, out / f"{stem}-learning.png", teacher_acc=r.summary.get("teacher_acc"),
                                  title=f"{r.label}: {r.summary.get('rule')} on {r.summary.get('dataset')}")
        doc.figure(out / f"{stem}-learning.png", "Accuracy (test at the training T; running train accuracy) and "
                   "training loss per epoch.")
    if r.teacher_metrics:
        plots.plot_learning_curve(r.teacher_metrics, out / f"{stem}-teacher-learning.png",
                                  title=f"{r.label}: the teacher trained for this run")
        doc.figure(out / f"{stem}-teacher-learning.png", "The teacher's (ANN) learning curve.")
    if r.spiking:
        _operations_section(doc, r, out, stem)
        _firing_section(doc, r, out, stem)


def build_report(run_dirs, out_dir: str | Path, title: str | None = None,
                 preface: Callable[[Document, Path], None] | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html (and their PNGs) into ``out_dir``; returns the two paths.

    ``preface(doc, out_dir)`` may add blocks before the run comparison (the reproduction harness adds
    the paper's figures there)."""
    paths = [Path(p) for p in run_dirs]
    if not paths and preface is None:
        raise SpiketandemError("report: give at least one run folder")
    runs = [load_run_data(p, label) for p, label in zip(paths, _labels(paths))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(title or ("spiketandem report: " + ", ".join(r.label for r in runs)))
    from .. import __version__
    doc.text(f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by spiketandem {__version__} from "
             f"{len(runs)} run folder(s). Figures are PNG files next to report.md; report.html embeds them.")
    if preface is not None:
        preface(doc, out)
    if runs:
        _comparison(doc, runs, out)
    for r in runs:
        _run_section(doc, r, out)
    return doc.write(out)
