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
from .document import Document, code, literal
from .tables import num, pct, si, synops_column, synops_convention


@dataclass
class RunData:
    path: Path
    label: str
    config: dict
    summary: dict
    metrics: list
    activity: dict | None
    teacher_metrics: list

    color: str = plots.COLORS[0]

    @property
    def spiking(self) -> bool:
        return bool(self.summary.get("acc_by_T"))

    @property
    def num_classes(self) -> int | None:
        """Classes of the run's dataset, where the run folder records them (summary, else config)."""
        return _first_int(self.summary.get("num_classes"), self.config.get("num_classes"))

    @property
    def test_size(self) -> int | None:
        """Test images the accuracies were measured on, where recorded (summary; else a test subset
        ``n_test`` from the config)."""
        return _first_int(self.summary.get("test_samples"), self.summary.get("n_test"), self.config.get("n_test"))

    @property
    def chance(self) -> float | None:
        return plots.chance_level(self.num_classes)

    def layer_label(self, name: str) -> str:
        """A neuron layer by the teacher module path of the ReLU it replaced (records that predate the
        path: from the summary's layer_rates, else the layer's own name)."""
        for record in ((self.activity or {}).get("layers") or {}, self.summary.get("layer_rates") or {}):
            path = (record.get(name) or {}).get("path")
            if path:
                return str(path)
        return name


def _first_int(*values) -> int | None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _common(values):
    """The one value every run shares (None if they differ or none has one)."""
    found = {v for v in values if v is not None}
    return found.pop() if len(found) == 1 and None not in values else None


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
    """One sentence about the run; every value from its folder goes in escaped (``literal``/``code``)."""
    s, c, L = r.summary, r.config, literal
    parts = [f"rule **{L(s.get('rule'))}**", f"dataset {L(s.get('dataset'))}", f"architecture {L(s.get('arch'))}"]
    if c.get("width", 1.0) != 1.0:
        parts.append(f"width x{L(c['width'])}")
    if r.spiking:
        parts.append(f"{L(str(s.get('neuron') or '').upper())} neurons, trained at T = {L(s.get('T'))}")
    parts.append(f"{L(s.get('epochs'))} epoch{'' if s.get('epochs') == 1 else 's'}")
    if c.get("n_train") or c.get("n_test"):
        parts.append(f"data subset {L(c.get('n_train') or 'all')} train / {L(c.get('n_test') or 'all')} test images")
    if r.num_classes:
        parts.append(f"{r.num_classes} classes (chance {100 / r.num_classes:.3g}%)")
    if r.test_size:
        parts.append(f"accuracy on {r.test_size} test images (one image = {100 / r.test_size:.2g} points)")
    parts.append(f"device {L(s.get('device'))}")
    if isinstance(s.get("train_seconds"), (int, float)):
        parts.append(f"training time {s['train_seconds']:.0f} s")
    return ", ".join(parts) + f". Folder: {code(r.path)}."


# ---- settings: the config values that ran -------------------------------------------------------

# the settings a reader asks for first, in this order; every other config value follows in file order
SETTINGS_FIRST = ("rule", "dataset", "arch", "width", "act_clip", "act_levels", "teacher", "teacher_epochs", "neuron", "T", "eval_T",
                  "threshold", "tau_m", "dt", "leak", "reset", "surrogate", "surrogate_param", "detach_reset",
                  "encoding", "init", "percentile", "ynorm", "schedule", "bptt", "kd", "kd_temperature", "epochs",
                  "batch_size", "optimizer", "lr", "weight_decay", "lr_schedule", "milestones", "seed", "n_train",
                  "n_test", "amp", "channels_last", "neuron_backend", "device")
# where output goes and how it is shown: nothing about what was trained
SETTINGS_SKIPPED = ("name", "out", "progress", "tensorboard", "download", "data_dir")


def _setting_value(value) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting_value(v) for v in value) or "–"
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def run_settings(r: RunData) -> dict[str, str]:
    """The run's settings as shown in the report: config.yaml's values (nested ones, e.g. a rule's
    ``options``, as ``options.key``), where the config left a value to the default and the summary
    records what ran (arch, neuron, T, device, ...), that value."""
    flat = {}

    def add(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{key}.{k}", v)
        else:
            flat[key] = value

    for key, value in r.config.items():
        if key not in SETTINGS_SKIPPED:
            add(str(key), value)
    for key in ("rule", "dataset", "arch", "neuron", "T", "epochs", "device"):
        ran = r.summary.get(key)
        if ran is not None and (flat.get(key) in (None, "auto") or key not in flat):
            flat[key] = ran
    order = [k for k in SETTINGS_FIRST if k in flat] + [k for k in flat if k not in SETTINGS_FIRST]
    return {k: _setting_value(flat[k]) for k in order}


def _settings_section(doc: Document, runs: list[RunData]) -> None:
    doc.heading("Settings")
    settings = [run_settings(r) for r in runs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    if len(runs) == 1:
        doc.text("The configuration that ran (config.yaml; \"default\": left to the rule's or dataset's default).")
        doc.table(["setting", "value"], [[k, settings[0].get(k)] for k in keys], "ll")
        return
    doc.text("The configuration each run ran (config.yaml; \"default\": left to the rule's or dataset's default); "
             "settings that differ between runs are marked ≠ and listed first.")
    differs = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    rows = [[f"≠ {k}"] + [s.get(k) for s in settings] for k in differs]
    rows += [[k] + [s.get(k) for s in settings] for k in keys if k not in differs]
    doc.table(["setting"] + [r.label for r in runs], rows, "l" * (len(runs) + 1))


def _comparison(doc: Document, runs: list[RunData], out: Path) -> None:
    doc.heading("Comparison of runs")
    rows = []
    ratio_header, ratios = synops_column([r.summary for r in runs])
    for r, ratio in zip(runs, ratios):
        s = r.summary
        gap = None
        if s.get("teacher_acc") is not None and r.spiking:
            gap = f"{100 * (s['student_acc'] - s['teacher_acc']):+.2f}"
        energy = (s.get("energy") or {}).get("ratio")
        rows.append([r.label, s.get("rule"), s.get("dataset"), s.get("arch"), (s.get("neuron") or "–").upper(),
                     s.get("T"), s.get("epochs"), pct(s.get("teacher_acc")), pct(s.get("student_acc")), gap,
                     ratio if r.spiking else None, num(energy), num(s.get("train_seconds"), ".0f"), s.get("device")])
    doc.table(["run", "rule", "dataset", "arch", "neuron", "T", "epochs", "teacher acc", "accuracy", "Δ (pp)",
               ratio_header, "energy ratio", "train s", "device"], rows, "lllllrrrrrrrrl")
    doc.text("Accuracy is the test accuracy at the training window T; Δ is student minus teacher in percentage "
             "points. "
             "SynOps ratio = (student SynOps + student MACs) / teacher MACs per inference, SynOps counted in the "
             "convention named (exact: every event times its fan-out; standard: each non-zero input value times "
             "its fan-out; docs/metrics.md); energy ratio weighs "
             "MACs at 4.6 pJ and ACs at 0.9 pJ (45 nm) unless the run was evaluated with other values.")
    if len(runs) < 2:
        return
    teacher = next((r.summary.get("teacher_acc") for r in runs if r.summary.get("teacher_acc") is not None), None)
    colors = {r.label: r.color for r in runs}
    chance, test_size = _common([r.chance for r in runs]), _common([r.test_size for r in runs])
    plots.plot_bars({r.label: r.summary.get("student_acc") for r in runs}, out / "compare_accuracy.png",
                    "test accuracy", "accuracy of each run", reference=teacher, reference_label="teacher",
                    percent=True, colors=colors, chance=chance, test_size=test_size)
    doc.figure(out / "compare_accuracy.png", "Test accuracy of each run (dotted: the first run's teacher; the axis "
               "note says where it is zoomed, and what one test image is worth when the test-set size is known).")
    # the students' curves (Fig. 3); a teacher's long schedule would squeeze them, it has its own section
    students = [r for r in runs if r.summary.get("rule") != "ann"] or runs
    curves = {r.label: r.metrics for r in students if r.metrics}
    if curves:
        plots.plot_learning_curves(curves, out / "compare_learning_curves.png", teacher, colors=colors,
                                   chance=chance, test_size=test_size)
        doc.figure(out / "compare_learning_curves.png", "Test accuracy per epoch of every run.")
    spiking = [r for r in runs if r.spiking]
    if len(spiking) > 1:
        convention = _common([synops_convention(r.summary) for r in spiking])
        # runs counted in different conventions: each ratio curve says its own
        ratio_label = {r.label: r.label if convention else f"{r.label} ({synops_convention(r.summary)})"
                       for r in spiking}
        plots.plot_T_sweep({r.label: r.summary["acc_by_T"] for r in spiking},
                           {ratio_label[r.label]: r.summary.get("synops_ratio_by_T") or {} for r in spiking},
                           out / "compare_T.png", teacher_acc=teacher,
                           colors={**colors, **{ratio_label[r.label]: r.color for r in spiking}}, chance=chance,
                           test_size=test_size, convention=convention)
        doc.figure(out / "compare_T.png", "Accuracy and SynOps ratio vs time window T of every spiking run.")
        _front_figure(doc, spiking, out, teacher, colors, chance, test_size)


def front_points(spiking: list[RunData]) -> tuple[list[dict], str]:
    """The accuracy-vs-operations points of spiking runs, all in one SynOps convention: each run at every T
    it was evaluated at when the runs share a convention, else at its training T in the standard one
    (``synops_ratio_by_convention``; a run that lacks it, from before the choice, is left out)."""
    shared = _common([synops_convention(r.summary) for r in spiking])
    points = []
    for r in spiking:
        s = r.summary
        if shared is not None:
            ratios = s.get("synops_ratio_by_T") or ({str(s["T"]): s.get("synops_ratio")} if s.get("T") else {})
            found = [(int(T), s["acc_by_T"].get(str(T)), ratio) for T, ratio in ratios.items()]
        else:
            found = [(s.get("T"), s.get("student_acc"), (s.get("synops_ratio_by_convention") or {}).get("standard"))]
        points += [{"method": r.label, "T": T, "acc": acc, "synops_ratio": ratio, "label": f"T={T}"}
                   for T, acc, ratio in found if acc is not None and ratio is not None]
    return points, shared or "standard"


def _front_figure(doc: Document, spiking: list[RunData], out: Path, teacher, colors, chance, test_size) -> None:
    points, convention = front_points(spiking)
    if not points:
        return
    plots.plot_front(points, out / "compare_front.png", teacher, colors=colors, chance=chance, test_size=test_size,
                     convention=convention)
    drawn = {p["method"] for p in points}
    missing = [r.label for r in spiking if r.label not in drawn]
    caption = (f"Accuracy vs SynOps ratio ({convention} convention) of every spiking run, one colour per run, its "
               "points joined in order of operations; the star and dotted line: the first run's teacher.")
    if missing:
        caption += f" Not drawn (no {convention} count recorded): {', '.join(missing)}."
    doc.figure(out / "compare_front.png", caption)


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
    convention = synops_convention(s)
    doc.heading("Accuracy, SynOps and energy per time window", 3)
    if s.get("teacher_acc") is not None:
        doc.text(f"Teacher (ANN) accuracy: **{pct(s['teacher_acc'])}**.")
    doc.table(["T", "accuracy", "Δ teacher (pp)", f"SynOps ratio ({convention})", "energy ratio"], rows)
    if len(rows) < 2:
        return  # one window: the table says it all
    label = f"{s.get('rule')} ({str(s.get('neuron') or '').upper()}, trained at T={s.get('T')})"
    plots.plot_T_sweep({label: s["acc_by_T"]}, {label: ratio}, out / f"{stem}-T.png", teacher_acc=s.get("teacher_acc"),
                       energy={label: energy}, title=f"{r.label}: {s.get('arch')} on {s.get('dataset')}",
                       colors={label: r.color}, chance=r.chance, test_size=r.test_size, convention=convention)
    doc.figure(out / f"{stem}-T.png", "(a) Test accuracy vs evaluation window T; (b) student operations (solid) and "
               "energy (dashed) relative to the teacher's MACs — below 1 the SNN needs less.")


def _operations_section(doc: Document, r: RunData, out: Path, stem: str) -> None:
    s = r.summary
    if s.get("teacher_macs_per_sample") is None:
        return
    e = s.get("energy") or {}
    convention = synops_convention(s)
    doc.heading(f"Operations and energy per inference (T = {s.get('T')})", 3)
    doc.table(["", "student (SNN)", "teacher (ANN)", "student / teacher"], [
        [f"SynOps (accumulates, {convention})", si(s["synops_per_sample"]), "0", None],
        ["MACs (multiply-accumulates)", si(s["student_macs_per_sample"]), si(s["teacher_macs_per_sample"]), None],
        ["operations", si(s["synops_per_sample"] + s["student_macs_per_sample"]), si(s["teacher_macs_per_sample"]),
         num(s.get("synops_ratio"))],
        [f"energy (MAC {e.get('mac_pj')} pJ, AC {e.get('ac_pj')} pJ)", f"{num(e.get('student_uj'))} µJ",
         f"{num(e.get('teacher_uj'))} µJ", num(e.get("ratio"))],
    ], "lrrr")
    by_convention = s.get("synops_ratio_by_convention") or {}
    if by_convention:
        shown = ", ".join(f"{c} {num(v)}" for c, v in by_convention.items())
        doc.text(f"SynOps ratio at T = {s.get('T')} in each convention (docs/metrics.md): {shown}.")
    ops = s.get("ops_by_layer") or {}
    if ops:
        plots.plot_ops_by_layer(ops, out / f"{stem}-ops.png", s.get("T"), color=r.color, convention=convention)
        doc.figure(out / f"{stem}-ops.png", "Operations per conv/linear layer: the student's event-driven accumulates "
                   "(and MACs where a layer sees the analog image) against the teacher's MACs.")


def _firing_section(doc: Document, r: RunData, out: Path, stem: str) -> None:
    a = r.activity
    doc.heading("Firing activity", 3)
    if not a:
        doc.text(f"No activity record in this folder; {code(f'spiketandem eval {r.path}')} writes one (activity.json).")
        return
    doc.text(f"Recorded at T = {a['T']} on {a['samples']} test images. Rate = spikes per neuron per time step; "
             "silent = neurons that emit no spike for a sample, averaged over samples; dead = neurons silent for "
             "every sample.")
    # every table and figure names a layer by the teacher module path of the ReLU it replaced
    doc.table(["layer (teacher ReLU)", "neurons", "rate", "silent", "dead"],
              [[r.layer_label(name), v["neurons"], f"{v['rate']:.4f}", pct(v["silent"], 1), pct(v["dead"], 1)]
               for name, v in a["layers"].items()])
    plots.plot_layer_rates({r.layer_label(n): v for n, v in a["layers"].items()}, out / f"{stem}-rates.png", a["T"],
                           color=r.color)
    doc.figure(out / f"{stem}-rates.png", "Mean firing rate and fraction of silent neurons per layer (named by the "
               "teacher module they replace).")
    plots.plot_rate_histograms({r.layer_label(n): h for n, h in (a.get("histograms") or {}).items()},
                               out / f"{stem}-hist.png", color=r.color)
    doc.figure(out / f"{stem}-hist.png", "Distribution of per-neuron firing rates (spike count / T) per layer, log "
               "scale.")
    if a.get("raster"):
        plots.plot_raster({r.layer_label(n): band for n, band in a["raster"].items()}, out / f"{stem}-raster.png",
                          color=r.color)
        doc.figure(out / f"{stem}-raster.png", "Spike raster of the first test image: per layer, up to 64 neurons "
                   "drawn at random among those that fired.")


def _run_section(doc: Document, r: RunData, out: Path) -> None:
    stem = _slug(r.label)
    doc.heading(f"Run {literal(r.label)}")
    doc.text(_describe(r))
    _accuracy_section(doc, r, out, stem)
    if r.metrics or r.teacher_metrics:
        doc.heading("Learning curves", 3)
    if r.metrics:
        plots.plot_learning_curve(r.metrics, out / f"{stem}-learning.png", teacher_acc=r.summary.get("teacher_acc"),
                                  title=f"{r.label}: {r.summary.get('rule')} on {r.summary.get('dataset')}",
                                  color=r.color, chance=r.chance, test_size=r.test_size)
        doc.figure(out / f"{stem}-learning.png", "Accuracy (test at the training T; running train accuracy) and "
                   "training loss per epoch.")
    if r.teacher_metrics:
        plots.plot_learning_curve(r.teacher_metrics, out / f"{stem}-teacher-learning.png",
                                  title=f"{r.label}: the teacher trained for this run", color=r.color,
                                  chance=r.chance, test_size=r.test_size)
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
    colors = plots.run_colors([r.label for r in runs])
    for r in runs:
        r.color = colors[r.label]  # one colour per run, in every figure of the report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(title or ("spiketandem report: " + ", ".join(r.label for r in runs)))  # the writer escapes it
    from .. import __version__
    doc.text(f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by spiketandem {__version__} from "
             f"{len(runs)} run folder(s). Figures are PNG files next to report.md; report.html embeds them.")
    if preface is not None:
        preface(doc, out)
    if runs:
        _comparison(doc, runs, out)
        _settings_section(doc, runs)
    for r in runs:
        _run_section(doc, r, out)
    return doc.write(out)
