"""Running an experiment: the teacher, the students, the evaluation vs T and the further steps, each an
ordinary run folder under OUT (finished ones are reused), then reproduction.json and the report."""
from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path

from ..errors import SpiketandemError
from ..seeds import check_seeds, mean_std, seed_folder
from .experiment import DEFAULTS_TOKEN, PLACEHOLDER, Experiment, check_requirements, select
from .section import paper_section, step_outputs


def run_seeds(exp: Experiment, run: dict) -> list[int]:
    """The seeds a run is trained with: ``--seeds`` of the command line, else the run's own ``seeds:``, else
    its one seed (``seed``, default 0)."""
    if "seeds" in exp.overrides:
        return check_seeds(exp.overrides["seeds"])
    if "seeds" in run:
        return check_seeds(run["seeds"], f"run {run['name']}: seeds")
    return [run.get("seed", exp.defaults.get("seed", 0))]


def run_configs(exp: Experiment, out: Path) -> tuple[dict | None, list[tuple[str, dict]]]:
    """The RunConfig field dicts of the teacher and of each student run, with their folders and teacher: one
    (name, fields) per run and seed (``run_seeds``; several seeds put seed S in OUT/<name>-seed<S>)."""
    teacher = None
    if exp.teacher is not None:
        teacher = {**exp.defaults, **exp.teacher, "rule": "ann", "out": str(out / "teacher"), "name": "teacher"}
    students = []
    for run in exp.runs:
        seeds = run_seeds(exp, run)
        for seed in seeds:
            folder = seed_folder(out / run["name"], seed, seeds)
            fields = {**exp.defaults, **{k: v for k, v in run.items() if k not in ("name", "seeds")}, "seed": seed,
                      "out": str(folder), "name": folder.name}
            if teacher is not None and "teacher" not in run:
                fields["teacher"] = str(out / "teacher" / "teacher.pt")
            students.append((run["name"], fields))
    return teacher, students


def _finished(folder: Path, model: str) -> bool:
    return (folder / "summary.json").is_file() and (folder / model).is_file()


def _substitute(token: str, out: Path, defaults: dict) -> list[str]:
    """A command's token with its placeholders replaced: {out}, {teacher}, {run:NAME} by folders; the whole
    token {defaults} by the experiment's defaults (after its scale and the command line) as flags."""
    if token == DEFAULTS_TOKEN:
        return defaults_as_flags(defaults)

    def repl(m):
        key = m.group(1)
        if key == "out":
            return str(out)
        if key == "teacher":
            return str(out / "teacher")
        return str(out / key[len("run:"):])
    return [PLACEHOLDER.sub(repl, token)]


def defaults_as_flags(defaults: dict) -> list[str]:
    """RunConfig fields as command-line flags: {"n_train": 5000, "eval_T": [4, 8]} -> --n-train 5000 --eval-T 4 8
    (True: the bare flag; False and None: left out)."""
    flags = []
    for key, value in defaults.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags += [flag] + [str(v) for v in value]
        else:
            flags += [flag, str(value)]
    return flags


def machine() -> dict:
    import torch
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def reproduce(exp: Experiment, out: Path, *, only: list[str] | None = None, steps: bool = True, resume: bool = False,
              report_only: bool = False, log=print) -> dict:
    """Run the experiment (teacher, students, evaluation, further steps, report); returns reproduction.json's
    content.  ``only`` restricts it to some runs (and the steps that use only those); ``steps=False`` skips
    the further steps; ``report_only`` only collects the finished runs and rewrites the report."""
    from ..runs import RunFolder

    exp = select(exp, only, steps and not report_only)
    t0 = time.perf_counter()
    teacher_fields, students = run_configs(exp, out)
    if report_only:  # the finished runs (and seeds) are reported, the others named: the table grows run by run
        unfinished = [f["out"] for _, f in students if not (Path(f["out"]) / "summary.json").is_file()]
        if len(unfinished) == len(students):
            raise SpiketandemError(f"--report-only: no run of {exp.name} has finished in {out}; run the experiment "
                                   "without --report-only first")
        if unfinished:
            log(f"[{exp.name}] not finished, left out of the report: {', '.join(unfinished)}")
        students = [(name, f) for name, f in students if f["out"] not in unfinished]
    else:
        _run_all(exp, out, teacher_fields, students, resume, log)
    result = _collect(exp, out, teacher_fields, students, time.perf_counter() - t0)
    RunFolder(out).write_json("reproduction.json", result)
    folders = ([teacher_fields["out"]] if teacher_fields else []) + [f["out"] for _, f in students]
    from ..report import build_report
    figures, tables = step_outputs(out, folders)
    md, _ = build_report(folders, out / "report", title=f"Reproduction: {exp.title} (scale: {exp.scale})",
                         preface=lambda doc, report_dir: paper_section(doc, exp, result, figures, report_dir, tables))
    result["report"] = str(md)
    log(f"[{exp.name}] done in {result['wall_seconds']:.0f}s; report: {out / 'report' / 'report.md'}")
    return result


def _run_all(exp: Experiment, out: Path, teacher_fields, students, resume: bool, log) -> None:
    """Train the teacher and the students (finished runs are reused), evaluate vs T, run the further steps."""
    from ..cli import main as cli_main
    from ..config import make_config
    from ..workflow import eval_run, train_student, train_teacher
    from ..report.sweep import SWEEP_T
    from ..rules import RULES
    from ..runs import RunFolder

    check_requirements(exp)
    out.mkdir(parents=True, exist_ok=True)
    quiet = {"progress": False}
    if teacher_fields is not None:
        folder = Path(teacher_fields["out"])
        if _finished(folder, "teacher.pt"):
            log(f"[{exp.name}] teacher: finished run in {folder}, reused")
        else:
            log(f"[{exp.name}] teacher: training into {folder}")
            cfg = make_config(teacher_fields, quiet)
            train_teacher(cfg, RunFolder(folder), resume=resume and RunFolder(folder).exists(), log=log)
    for name, fields in students:
        folder = Path(fields["out"])
        if _finished(folder, "student.pt"):
            log(f"[{exp.name}] {name}: finished run in {folder}, reused")
            continue
        log(f"[{exp.name}] {name}: training {fields.get('rule', 'ltl-offline')} into {folder}")
        cfg = make_config(fields, quiet)
        train_student(cfg, RunFolder(folder), resume=resume and RunFolder(folder).exists(), log=log)
    sweep = exp.evaluate.get("sweep_T")
    if sweep is not None:
        for name, fields in students:
            done = Path(fields["out"]) / "sweep_T.csv"
            if done.is_file() and done.stat().st_mtime >= (Path(fields["out"]) / "student.pt").stat().st_mtime:
                log(f"[{exp.name}] {name}: sweep over T done before, reused")
            elif RULES[fields.get("rule", "ltl-offline")].spiking:
                log(f"[{exp.name}] {name}: accuracy and SynOps ratio vs T")
                eval_run(fields["out"], list(sweep or SWEEP_T), device=exp.defaults.get("device", "auto"), log=log,
                         sweep=True)
    for cmd in exp.commands:
        argv = [a for t in cmd for a in _substitute(t, out, exp.defaults)]
        log(f"[{exp.name}] spiketandem {' '.join(argv)}")
        code = cli_main(argv)
        if code != 0:
            raise SpiketandemError(f"step `spiketandem {' '.join(argv)}` of {exp.name} failed (exit code {code})")


def _over_seeds(runs: list[tuple[int, dict]]) -> dict:
    """A run's finished seeds (seed, summary) as one entry: the accuracies (at the training window and at every
    evaluated T), the SynOps ratio and the training time as means over the seeds (``seeds.mean_std``), the
    accuracies' standard deviations, each seed's accuracy."""
    summaries = [s for _, s in runs]
    acc, std = mean_std(s.get("student_acc") for s in summaries)
    Ts = [T for T in summaries[0].get("acc_by_T") or {} if all(T in (s.get("acc_by_T") or {}) for s in summaries)]
    by_T = {T: mean_std(s["acc_by_T"][T] for s in summaries) for T in Ts}
    ratios = [s.get("synops_ratio_by_T") or {} for s in summaries]
    conventions = [s.get("synops_ratio_by_convention") or {} for s in summaries]
    return {"student_acc": acc, "student_acc_std": std, "n_seeds": len(runs), "seeds": [seed for seed, _ in runs],
            "acc_by_seed": {str(seed): s.get("student_acc") for seed, s in runs},
            "acc_by_T": {T: m for T, (m, _) in by_T.items()}, "acc_by_T_std": {T: sd for T, (_, sd) in by_T.items()},
            "synops_ratio": mean_std(s.get("synops_ratio") for s in summaries)[0],
            "synops_ratio_by_convention": {c: mean_std(r.get(c) for r in conventions)[0] for c in conventions[0]},
            "synops_ratio_by_T": {T: mean_std(r[T] for r in ratios)[0] for T in ratios[0]
                                  if all(T in r for r in ratios)} or None,
            "train_seconds": mean_std(s.get("train_seconds") for s in summaries)[0]}


def _collect(exp: Experiment, out: Path, teacher_fields, students, seconds: float) -> dict:
    from ..config import make_config
    measured = {}
    teacher_acc = None
    if teacher_fields is not None and (Path(teacher_fields["out"]) / "summary.json").is_file():
        teacher_acc = json.loads((Path(teacher_fields["out"]) / "summary.json").read_text())["student_acc"]
    finished = {}
    for name, fields in students:
        path = Path(fields["out"]) / "summary.json"
        if path.is_file():
            finished.setdefault(name, []).append((fields, json.loads(path.read_text())))
    for name, runs in finished.items():
        fields, s = runs[0]
        teacher_acc = teacher_acc if teacher_acc is not None else s.get("teacher_acc")
        measured[name] = {k: s.get(k) for k in ("rule", "neuron", "T", "epochs", "student_acc", "teacher_acc",
                                                 "acc_by_T", "synops_ratio", "synops_ratio_by_T", "synops_convention", "energy",
                                                 "train_seconds", "device")}
        measured[name].update(_over_seeds([(f["seed"], summary) for f, summary in runs]))
        # the window the run was trained with (non-spiking rules such as qat use it as levels; their T is None)
        measured[name]["T_trained"] = make_config(fields).T
    # every run folder under OUT: the teacher, the students and those the further steps made (e.g. compare's)
    seconds_total = sum(json.loads(p.read_text()).get("train_seconds") or 0 for p in out.rglob("summary.json"))
    return {"experiment": exp.name, "title": exp.title, "scale": exp.scale, "scale_note": exp.scale_note,
            "train_seconds_total": seconds_total,
            "overrides": exp.overrides, "defaults": exp.defaults, "paper": exp.paper, "teacher_acc": teacher_acc,
            "measured": measured, "machine": machine(), "wall_seconds": seconds,
            "finished": datetime.datetime.now().isoformat(timespec="seconds"), "out": str(out)}
