"""The report section of a reproduction: the paper's figures next to the measured ones."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..report.tables import synops_convention
from ..seeds import mean_std_text
from .experiment import Experiment


def step_outputs(out: Path, run_folders: list[str]) -> tuple[list[Path], list[Path]]:
    """The figures (PNGs) and comparison tables (compare.md) the further steps (commands) wrote under OUT,
    outside the experiment's run folders, the report, and every run folder a step made (one holding a
    summary.json)."""
    skip = [Path(f).resolve() for f in run_folders] + [(out / "report").resolve()]
    skip += [s.parent.resolve() for s in out.rglob("summary.json")]

    def found(pattern: str) -> list[Path]:
        return sorted(p for p in out.rglob(pattern) if not any(p.resolve().is_relative_to(s) for s in skip))
    return found("*.png"), found("compare.md")


def paper_section(doc, exp: Experiment, result: dict, figures: list[Path] = (), report_dir: Path | None = None,
                  tables: list[Path] = ()) -> None:
    """The report's first section: the paper's figures next to the measured ones, then the comparison
    tables (``tables``: compare.md files) and figures the further steps wrote."""
    doc.heading("Paper vs this reproduction")
    m = result["machine"]
    data = exp.defaults.get("dataset", "digits")
    images = ", ".join(f"{exp.defaults[k]} {k[2:]}" for k in ("n_train", "n_test") if k in exp.defaults)
    doc.text(f"Experiment `{exp.name}` ({exp.path.name}), scale **{exp.scale}**"
             + (f": {exp.scale_note}" if exp.scale_note else "") + "\n\n"
             + f"- data: {data} ({images + ' images' if images else 'all images'}), "
             + (f"architecture {exp.defaults['arch']} at width {exp.defaults.get('width', 1.0)}\n" if exp.defaults.get("arch")
                else "architecture and width as each step names them\n")
             + f"- machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, GPU {m['cuda'] or 'none'}\n"
             + f"- training time (sum over the runs): {result['train_seconds_total']:.0f} s; wall time of the last "
             + f"`reproduce` call: {result['wall_seconds']:.0f} s (finished runs are reused)"
             + (f"\n- command-line overrides: {result['overrides']}" if result["overrides"] else ""))
    paper = exp.paper
    rows = []
    if paper.get("teacher_acc") is not None or result.get("teacher_acc") is not None:
        rows.append(["ANN teacher", "–", _fmt_pct(paper.get("teacher_acc")), _pct(result.get("teacher_acc")), None])
    results = paper.get("results") or {}
    measured = [result["measured"].get(name, {}) for name in exp.run_names()]
    for name, got in zip(exp.run_names(), measured):
        teacher, acc = result.get("teacher_acc"), got.get("student_acc")
        by_convention = got.get("synops_ratio_by_convention") or {}
        rows.append([name, got.get("T"), _fmt_pct(results.get(name)),
                     mean_std_text(acc, got.get("student_acc_std"), got.get("n_seeds", 1)),
                     None if teacher is None or acc is None else f"{100 * (teacher - acc):.2f}",
                     *[None if by_convention.get(c) is None else f"{by_convention[c]:.3f}"
                       for c in ("exact", "standard")],
                     got.get("epochs"), None if got.get("train_seconds") is None else f"{got['train_seconds']:.0f}"])
    doc.table(["model", "T", "paper accuracy", "measured accuracy (mean ± std over seeds)", "Δ teacher (pp)",
               "SynOps ratio (exact)", "SynOps ratio (standard)", "epochs", "train s (per run)"], rows, "lrrrrrrrr")
    if exp.scale != "full":
        doc.text(f"The paper's numbers are for its full setting; at scale {exp.scale} they show the target, not a "
                 "like-for-like comparison.")
    if paper.get("notes"):
        doc.text(f"Paper: {paper['notes']}")
    if paper.get("source"):
        doc.text(f"Source of the paper's figures: {paper['source']}.")
    _by_rule_figure(doc, result, report_dir)
    for table in tables:
        title, *body = table.read_text().splitlines()
        doc.heading(f"{table.parent.relative_to(result['out'])}: {title.lstrip('# ')}", 3)
        doc.text("\n".join(body).strip())
    for fig in figures:  # copied next to the report so that its relative links work
        target = (report_dir or fig.parent) / f"step-{fig.parent.name}-{fig.name}"
        shutil.copyfile(fig, target)
        doc.figure(target, f"{fig.relative_to(result['out'])} (written by a further step of the experiment).")


def _by_rule_figure(doc, result: dict, report_dir: Path | None) -> None:
    """Where one rule was trained at several T (Fig. 2): accuracy and SynOps ratio at the training T,
    one line per rule (non-spiking rules, e.g. a quantized ANN, in panel (a) only)."""
    acc, ratio = {}, {}
    conventions = {synops_convention(got) for got in result["measured"].values() if got.get("synops_ratio_by_T")}
    convention = conventions.pop() if len(conventions) == 1 else None  # several: each ratio series names its own
    for got in result["measured"].values():
        label = got["rule"] + (f" ({got['neuron'].upper()})" if got.get("neuron") else "")
        acc.setdefault(label, {})[got["T_trained"]] = got["student_acc"]
        if got.get("synops_ratio_by_T"):
            named = label if convention else f"{label} ({synops_convention(got)})"
            ratio.setdefault(named, {})[got["T_trained"]] = got["synops_ratio"]
    if report_dir is None or not any(len(v) > 1 for v in acc.values()):
        return
    from ..report.plots import plot_T_sweep
    path = report_dir / "by_rule_T.png"
    plot_T_sweep(acc, ratio, path, teacher_acc=result.get("teacher_acc"),
                 title="each rule trained and tested at each time window T", convention=convention)
    doc.figure(path, "(a) Test accuracy of each rule trained at T (for the quantized ANN: T activation levels); "
               "(b) SynOps ratio of the spiking rules at their training T — the paper's Fig. 2.")


def _fmt_pct(value) -> str | None:
    return None if value is None else f"{float(value):.2f}%"


def _pct(value) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"
