"""`spiketandem reproduce NAME`: one experiment of the LTL paper, end to end, from configs/NAME.yaml.

An experiment file holds the paper's settings and what the paper reports::

    title: "Table 1: CIFAR-10, VGG-11, offline and online LTL"
    paper:                      # shown next to the measured values
      source: "Table 1"
      teacher_acc: 92.89        # percent
      results: {offline-lif-T16: 93.20, ...}      # run name -> percent
      notes: "free text (figure readings, caveats)"
    defaults: {dataset: cifar10, arch: vgg11, batch_size: 64}   # RunConfig fields of every run
    teacher: {epochs: 200, optimizer: sgd, lr: 0.01, ...}       # the ANN teacher (omit: no teacher)
    runs:                                                       # one student per entry
      - {name: offline-lif-T16, rule: ltl-offline, neuron: lif, T: 16, epochs: 100, lr: 1.0e-4}
    evaluate: {sweep_T: [4, 8, 16, 32]}     # optional: accuracy + SynOps ratio of every spiking run vs T
    commands:                               # optional further steps, other spiketandem commands;
      - [noise, "{run:offline-lif-T16}", ...]   # {run:NAME} {teacher} {out} are replaced by folders
    scales:                                 # --scale NAME: overrides of defaults/teacher/runs
      cpu: {note: "...", defaults: {width: 0.25}, teacher: {epochs: 10}, runs: {epochs: 2}}

Every run is an ordinary run folder under OUT (OUT/teacher, OUT/<run name>); a finished one is reused,
so an interrupted reproduction continues where it stopped.  At the end OUT/report/ holds the report
(paper vs measured first) and OUT/reproduction.json the measured figures with the machine and scale.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SpiketandemError

SOURCE_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # configs/ of a source checkout
SECTIONS = {"title", "paper", "defaults", "teacher", "runs", "evaluate", "commands", "scales", "description"}
PLACEHOLDER = re.compile(r"\{(run:[^}]+|teacher|out)\}")


# ---- experiment files -----------------------------------------------------------------------------

def config_dirs() -> list[Path]:
    """./configs (the working directory), then the source checkout's configs/."""
    seen = []
    for d in (Path.cwd() / "configs", SOURCE_CONFIGS):
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def list_experiments() -> dict[str, Path]:
    """name -> YAML file, over configs/ in the working directory and in the source checkout."""
    found = {}
    for d in config_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def find_experiment(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    known = list_experiments()
    if name in known:
        return known[name]
    raise SpiketandemError(f"no experiment {name!r}; `spiketandem reproduce --list` shows them "
                           f"({', '.join(known) or 'none found'}), or pass a YAML file")


@dataclass
class Experiment:
    name: str
    path: Path
    title: str
    paper: dict
    defaults: dict
    teacher: dict | None
    runs: list[dict]
    evaluate: dict
    commands: list[list[str]]
    scales: dict
    scale: str = "full"
    scale_note: str = ""
    overrides: dict = field(default_factory=dict)

    def run_names(self) -> list[str]:
        return [r["name"] for r in self.runs]


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpiketandemError(f"{where} must be a mapping of field: value, got {type(value).__name__}")
    return {str(k).replace("-", "_"): v for k, v in value.items()}


def load_experiment(name: str) -> Experiment:
    path = find_experiment(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpiketandemError(f"experiment file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SpiketandemError(f"experiment file {path} must hold a mapping (title, defaults, teacher, runs, ...)")
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise SpiketandemError(f"experiment file {path}: unknown section(s) {', '.join(unknown)}; the sections are "
                               f"{', '.join(sorted(SECTIONS))}")
    runs = data.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) and r.get("name") for r in runs):
        raise SpiketandemError(f"experiment file {path}: `runs` must be a list of mappings, each with a `name`")
    names = [str(r["name"]) for r in runs]
    if len(set(names)) != len(names) or "teacher" in names or "report" in names:
        raise SpiketandemError(f"experiment file {path}: run names must be unique and not 'teacher' or 'report'")
    commands = data.get("commands") or []
    if not isinstance(commands, list) or not all(isinstance(c, list) and c for c in commands):
        raise SpiketandemError(f"experiment file {path}: `commands` must be a list of argument lists")
    scales = data.get("scales") or {}
    if not isinstance(scales, dict):
        raise SpiketandemError(f"experiment file {path}: `scales` must map a scale name to its overrides")
    teacher = data.get("teacher")
    return Experiment(path.stem, path, str(data.get("title") or path.stem), _mapping(data.get("paper"), "paper"),
                      _mapping(data.get("defaults"), "defaults"),
                      None if teacher is None else _mapping(teacher, "teacher"),
                      [_mapping(r, f"run {r.get('name')}") for r in runs], _mapping(data.get("evaluate"), "evaluate"),
                      [[str(a) for a in c] for c in commands], scales)


def apply_scale(exp: Experiment, scale: str, overrides: dict | None = None) -> Experiment:
    """The experiment with scale ``scale`` (a name in ``scales``, or "full" = the paper's settings) and
    the command line's overrides applied (``width``, ``n_train``, ``n_test``, ``data_dir``, ``device``
    to every run; ``epochs`` to the students; ``teacher_epochs`` to the teacher)."""
    exp = copy.deepcopy(exp)
    if scale != "full":
        if scale not in exp.scales:
            raise SpiketandemError(f"experiment {exp.name} has no scale {scale!r}; its scales: full, "
                                   f"{', '.join(exp.scales) or '(none)'}")
        preset = _mapping(exp.scales[scale], f"scale {scale}")
        unknown = sorted(set(preset) - {"note", "defaults", "teacher", "runs", "commands"})
        if unknown:
            raise SpiketandemError(f"scale {scale} of {exp.path}: unknown key(s) {', '.join(unknown)} (use note, "
                                   "defaults, teacher, runs, commands)")
        if "commands" in preset:  # a scale may replace the further steps (e.g. smaller benchmark settings)
            exp.commands = [[str(a) for a in c] for c in preset["commands"] or []]
        exp.defaults.update(_mapping(preset.get("defaults"), f"scale {scale} defaults"))
        if exp.teacher is not None:
            exp.teacher.update(_mapping(preset.get("teacher"), f"scale {scale} teacher"))
        run_over = _mapping(preset.get("runs"), f"scale {scale} runs")
        for run in exp.runs:
            run.update(run_over)
        exp.scale_note = str(preset.get("note") or "")
    exp.scale = scale
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in ("width", "n_train", "n_test", "data_dir", "device", "batch_size", "seed"):
        if key in overrides:
            exp.defaults[key] = overrides[key]
    if "epochs" in overrides:
        for run in exp.runs:
            run["epochs"] = overrides["epochs"]
    if "teacher_epochs" in overrides and exp.teacher is not None:
        exp.teacher["epochs"] = overrides["teacher_epochs"]
    exp.overrides = overrides
    return exp


# ---- requirements ---------------------------------------------------------------------------------

def _command_tokens(parser: argparse.ArgumentParser, tokens: list[str]) -> str | None:
    """None if the (sub)command path at the start of ``tokens`` exists, else the first missing part."""
    for i, token in enumerate(tokens):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            return None
        if token not in sub.choices:
            return " ".join(tokens[: i + 1])
        parser = sub.choices[token]
    return None


def check_requirements(exp: Experiment) -> None:
    """Every rule, dataset and command the experiment uses must exist here; one message lists what is missing."""
    from .cli import build_parser
    from .data import DATASETS
    from .rules import RULES
    problems, fixes = [], []
    missing_rules = {}
    for run in exp.runs:
        rule = run.get("rule", exp.defaults.get("rule", "ltl-offline"))
        if rule not in RULES:
            missing_rules.setdefault(rule, []).append(run["name"])
    for rule, names in missing_rules.items():
        problems.append(f"the learning rule {rule!r} (runs {', '.join(names)}) is not registered")
    if missing_rules:
        fixes.append(f"registered rules: {', '.join(sorted(RULES))}; `--only RUN ...` runs the others")
    datasets = {exp.defaults.get("dataset", "digits")} | {r["dataset"] for r in exp.runs if "dataset" in r}
    for d in sorted(datasets - set(DATASETS)):
        problems.append(f"dataset {d!r} is not known (known: {', '.join(DATASETS)})")
    parser, missing_commands = build_parser(), {}
    for cmd in exp.commands:
        words = [t for t in cmd if not t.startswith("-") and not PLACEHOLDER.search(t)][:2]
        missing = _command_tokens(parser, words)
        if missing:
            missing_commands[missing] = missing_commands.get(missing, 0) + 1
    for command, steps in missing_commands.items():
        problems.append(f"the command `spiketandem {command}` ({steps} step{'s' if steps > 1 else ''}) is not "
                        "registered in this installation")
    if missing_commands:
        fixes.append("`--no-steps` runs the training and evaluation without the further steps")
    if problems:
        raise SpiketandemError(f"cannot reproduce {exp.name}: " + "; ".join(problems) + ". "
                               + "; ".join(fixes + ["a spiketandem version that has them runs it all"]) + ".")


# ---- running ---------------------------------------------------------------------------------------

def run_configs(exp: Experiment, out: Path) -> tuple[dict | None, list[tuple[str, dict]]]:
    """The RunConfig field dicts of the teacher and of each student, with their folders and teacher."""
    teacher = None
    if exp.teacher is not None:
        teacher = {**exp.defaults, **exp.teacher, "rule": "ann", "out": str(out / "teacher"), "name": "teacher"}
    students = []
    for run in exp.runs:
        fields = {**exp.defaults, **{k: v for k, v in run.items() if k != "name"}, "out": str(out / run["name"]),
                  "name": run["name"]}
        if teacher is not None and "teacher" not in run:
            fields["teacher"] = str(out / "teacher" / "teacher.pt")
        students.append((run["name"], fields))
    return teacher, students


def _finished(folder: Path, model: str) -> bool:
    return (folder / "summary.json").is_file() and (folder / model).is_file()


def _substitute(token: str, out: Path) -> str:
    def repl(m):
        key = m.group(1)
        if key == "out":
            return str(out)
        if key == "teacher":
            return str(out / "teacher")
        return str(out / key[len("run:"):])
    return PLACEHOLDER.sub(repl, token)


def machine() -> dict:
    import torch
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def select(exp: Experiment, only: list[str] | None = None, steps: bool = True) -> Experiment:
    """The experiment restricted to the runs ``only`` (and the steps that use only those runs), without
    its further steps when ``steps`` is False."""
    exp = copy.deepcopy(exp)
    if only:
        unknown = sorted(set(only) - set(exp.run_names()))
        if unknown:
            raise SpiketandemError(f"--only: experiment {exp.name} has no run(s) {', '.join(unknown)}; its runs: "
                                   f"{', '.join(exp.run_names())}")
        exp.runs = [r for r in exp.runs if r["name"] in only]
        def uses_only_selected(cmd):
            return all(m[len("run:"):] in only for m in PLACEHOLDER.findall(" ".join(cmd)) if m.startswith("run:"))
        exp.commands = [c for c in exp.commands if uses_only_selected(c)]
    if not steps:
        exp.commands = []
    return exp


def reproduce(exp: Experiment, out: Path, *, only: list[str] | None = None, steps: bool = True, resume: bool = False,
              report_only: bool = False, log=print) -> dict:
    """Run the experiment (teacher, students, evaluation, further steps, report); returns reproduction.json's
    content.  ``only`` restricts it to some runs (and the steps that use only those); ``steps=False`` skips
    the further steps; ``report_only`` only collects the finished runs and rewrites the report."""
    from .runs import RunFolder

    exp = select(exp, only, steps and not report_only)
    t0 = time.perf_counter()
    teacher_fields, students = run_configs(exp, out)
    if report_only:
        unfinished = [f["out"] for _, f in students if not (Path(f["out"]) / "summary.json").is_file()]
        if unfinished:
            raise SpiketandemError(f"--report-only: unfinished run(s) {', '.join(unfinished)}; run the experiment "
                                   "without --report-only first")
    else:
        _run_all(exp, out, teacher_fields, students, resume, log)
    result = _collect(exp, out, teacher_fields, students, time.perf_counter() - t0)
    RunFolder(out).write_json("reproduction.json", result)
    folders = ([teacher_fields["out"]] if teacher_fields else []) + [f["out"] for _, f in students]
    from .report import build_report
    figures = _step_figures(out, folders)
    md, _ = build_report(folders, out / "report", title=f"Reproduction: {exp.title} (scale: {exp.scale})",
                         preface=lambda doc, report_dir: paper_section(doc, exp, result, figures, report_dir))
    result["report"] = str(md)
    log(f"[{exp.name}] done in {result['wall_seconds']:.0f}s; report: {out / 'report' / 'report.md'}")
    return result


def _run_all(exp: Experiment, out: Path, teacher_fields, students, resume: bool, log) -> None:
    """Train the teacher and the students (finished runs are reused), evaluate vs T, run the further steps."""
    from .cli import main as cli_main
    from .config import make_config
    from .pipeline import eval_run, train_student, train_teacher
    from .report.sweep import SWEEP_T
    from .rules import RULES
    from .runs import RunFolder

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
        argv = [_substitute(t, out) for t in cmd]
        log(f"[{exp.name}] spiketandem {' '.join(argv)}")
        code = cli_main(argv)
        if code != 0:
            raise SpiketandemError(f"step `spiketandem {' '.join(argv)}` of {exp.name} failed (exit code {code})")


def _collect(exp: Experiment, out: Path, teacher_fields, students, seconds: float) -> dict:
    from .config import make_config
    measured = {}
    teacher_acc = None
    if teacher_fields is not None and (Path(teacher_fields["out"]) / "summary.json").is_file():
        teacher_acc = json.loads((Path(teacher_fields["out"]) / "summary.json").read_text())["student_acc"]
    for name, fields in students:
        path = Path(fields["out"]) / "summary.json"
        if not path.is_file():
            continue
        s = json.loads(path.read_text())
        teacher_acc = teacher_acc if teacher_acc is not None else s.get("teacher_acc")
        measured[name] = {k: s.get(k) for k in ("rule", "neuron", "T", "epochs", "student_acc", "teacher_acc",
                                                 "acc_by_T", "synops_ratio", "synops_ratio_by_T", "energy",
                                                 "train_seconds", "device")}
        # the window the run was trained with (non-spiking rules such as qat use it as levels; their T is None)
        measured[name]["T_trained"] = make_config(fields).T
    seconds_total = sum(m["train_seconds"] or 0 for m in measured.values())
    if teacher_fields is not None and (Path(teacher_fields["out"]) / "summary.json").is_file():
        seconds_total += json.loads((Path(teacher_fields["out"]) / "summary.json").read_text())["train_seconds"] or 0
    return {"experiment": exp.name, "title": exp.title, "scale": exp.scale, "scale_note": exp.scale_note,
            "train_seconds_total": seconds_total,
            "overrides": exp.overrides, "defaults": exp.defaults, "paper": exp.paper, "teacher_acc": teacher_acc,
            "measured": measured, "machine": machine(), "wall_seconds": seconds,
            "finished": datetime.datetime.now().isoformat(timespec="seconds"), "out": str(out)}


def _step_figures(out: Path, run_folders: list[str]) -> list[Path]:
    """PNGs the further steps (commands) wrote under OUT, outside the run folders and the report."""
    skip = [Path(f).resolve() for f in run_folders] + [(out / "report").resolve()]
    return sorted(p for p in out.rglob("*.png") if not any(p.resolve().is_relative_to(s) for s in skip))


def paper_section(doc, exp: Experiment, result: dict, figures: list[Path] = (), report_dir: Path | None = None) -> None:
    """The report's first section: the paper's figures next to the measured ones."""
    doc.heading("Paper vs this reproduction")
    m = result["machine"]
    data = exp.defaults.get("dataset", "digits")
    images = ", ".join(f"{exp.defaults[k]} {k[2:]}" for k in ("n_train", "n_test") if k in exp.defaults)
    doc.text(f"Experiment `{exp.name}` ({exp.path.name}), scale **{exp.scale}**"
             + (f": {exp.scale_note}" if exp.scale_note else "") + "\n\n"
             + f"- data: {data} ({images + ' images' if images else 'all images'}), architecture "
             + f"{exp.defaults.get('arch')} at width {exp.defaults.get('width', 1.0)}\n"
             + f"- machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, GPU {m['cuda'] or 'none'}\n"
             + f"- training time (sum over the runs): {result['train_seconds_total']:.0f} s; wall time of the last "
             + f"`reproduce` call: {result['wall_seconds']:.0f} s (finished runs are reused)"
             + (f"\n- command-line overrides: {result['overrides']}" if result["overrides"] else ""))
    paper = exp.paper
    rows = []
    if paper.get("teacher_acc") is not None or result.get("teacher_acc") is not None:
        rows.append(["ANN teacher", "–", _fmt_pct(paper.get("teacher_acc")), _pct(result.get("teacher_acc")), None])
    results = paper.get("results") or {}
    for name in exp.run_names():
        got = result["measured"].get(name, {})
        rows.append([name, got.get("T"), _fmt_pct(results.get(name)), _pct(got.get("student_acc")),
                     None if got.get("synops_ratio") is None else f"{got['synops_ratio']:.3f}"])
    doc.table(["model", "T", "paper accuracy", "measured accuracy", "measured SynOps ratio"], rows, "lrrrr")
    if exp.scale != "full":
        doc.text(f"The paper's numbers are for its full setting; at scale {exp.scale} they show the target, not a "
                 "like-for-like comparison.")
    if paper.get("notes"):
        doc.text(f"Paper: {paper['notes']}")
    if paper.get("source"):
        doc.text(f"Source of the paper's figures: {paper['source']}.")
    _by_rule_figure(doc, result, report_dir)
    for fig in figures:  # copied next to the report so that its relative links work
        target = (report_dir or fig.parent) / f"step-{fig.parent.name}-{fig.name}"
        shutil.copyfile(fig, target)
        doc.figure(target, f"{fig.relative_to(result['out'])} (written by a further step of the experiment).")


def _by_rule_figure(doc, result: dict, report_dir: Path | None) -> None:
    """Where one rule was trained at several T (Fig. 2): accuracy and SynOps ratio at the training T,
    one line per rule (non-spiking rules, e.g. a quantized ANN, in panel (a) only)."""
    acc, ratio = {}, {}
    for got in result["measured"].values():
        label = got["rule"] + (f" ({got['neuron'].upper()})" if got.get("neuron") else "")
        acc.setdefault(label, {})[got["T_trained"]] = got["student_acc"]
        if got.get("synops_ratio_by_T"):
            ratio.setdefault(label, {})[got["T_trained"]] = got["synops_ratio"]
    if report_dir is None or not any(len(v) > 1 for v in acc.values()):
        return
    from .report.plots import plot_T_sweep
    path = report_dir / "by_rule_T.png"
    plot_T_sweep(acc, ratio, path, teacher_acc=result.get("teacher_acc"),
                 title="each rule trained and tested at each time window T")
    doc.figure(path, "(a) Test accuracy of each rule trained at T (for the quantized ANN: T activation levels); "
               "(b) SynOps ratio of the spiking rules at their training T — the paper's Fig. 2.")


def _fmt_pct(value) -> str | None:
    return None if value is None else f"{float(value):.2f}%"


def _pct(value) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"


# ---- command -----------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="run one of the LTL paper's experiments end to end (configs/NAME.yaml)",
        description="Run an experiment of the LTL paper from configs/NAME.yaml: teacher, students, evaluation "
                    "(SynOps and accuracy vs T where the experiment asks), further steps, and a report that puts "
                    "the paper's figures next to the measured ones. --scale picks a smaller preset (cpu, digits) "
                    "and the flags below shrink it further. Finished runs in OUT are reused.")
    p.add_argument("name", metavar="NAME", nargs="?", help="experiment name (see --list) or a YAML file")
    p.add_argument("--list", action="store_true", help="list the experiments and their scales")
    p.add_argument("--scale", default="full", help="full (the paper's settings, default) or a scale of the "
                   "experiment (e.g. cpu, digits)")
    p.add_argument("--out", metavar="DIR", help="folder for all runs and the report (default "
                   "runs/reproduce/NAME-SCALE)")
    p.add_argument("--only", nargs="+", metavar="RUN", help="run only these runs of the experiment (and the teacher)")
    p.add_argument("--no-steps", action="store_true", help="skip the further steps (other commands, e.g. noise)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (every run's config) and stop")
    p.add_argument("--resume", action="store_true", help="continue unfinished runs from their checkpoints")
    p.add_argument("--report-only", action="store_true", help="only collect the finished runs in OUT and rewrite "
                   "reproduction.json and the report")
    g = p.add_argument_group("shrink for a small machine (override the scale)")
    g.add_argument("--width", type=float, help="channel width multiplier of every model")
    g.add_argument("--epochs", type=int, help="epochs of every student")
    g.add_argument("--teacher-epochs", type=int, help="epochs of the teacher")
    g.add_argument("--n-train", type=int, help="training images (random subset)")
    g.add_argument("--n-test", type=int, help="test images (random subset)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--data-dir", help="where the dataset lives")
    g.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--json", action="store_true", help="print reproduction.json's content as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> None:
    import sys
    if args.list or not args.name:
        for name, path in list_experiments().items():
            exp = load_experiment(str(path))
            print(f"{name:<30} {exp.title}  [scales: full, {', '.join(exp.scales)}]")
        if not args.list:
            print("\ngive an experiment NAME to run it", file=sys.stderr)
        return
    overrides = {k: getattr(args, k) for k in ("width", "epochs", "teacher_epochs", "n_train", "n_test", "batch_size",
                                               "data_dir", "device")}
    exp = apply_scale(load_experiment(args.name), args.scale, overrides)
    out = Path(args.out) if args.out else Path("runs") / "reproduce" / f"{exp.name}-{exp.scale}"
    if args.dry_run:
        exp = select(exp, args.only, not args.no_steps)
        check_requirements(exp)
        teacher, students = run_configs(exp, out)
        plan = {"experiment": exp.name, "scale": exp.scale, "out": str(out), "teacher": teacher,
                "runs": dict(students), "evaluate": exp.evaluate, "commands": exp.commands}
        print(json.dumps(plan, indent=None if args.json else 2, default=str))
        return
    quiet = args.quiet or args.json
    log = (lambda *a, **k: None) if quiet else print
    result = reproduce(exp, out, only=args.only, steps=not args.no_steps, resume=args.resume,
                       report_only=args.report_only, log=log)
    if args.json:
        print(json.dumps(result, default=str))
