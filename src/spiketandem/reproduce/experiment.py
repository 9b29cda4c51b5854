"""Experiment files (``configs/NAME.yaml``): finding, loading and validating them, scales and
overrides, the selection of runs, and the check that this installation has everything they use.
The file format is described in ``spiketandem.reproduce``."""
from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import SpiketandemError

PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # shipped inside the package (configs/ links here)
SECTIONS = {"title", "paper", "defaults", "teacher", "runs", "evaluate", "commands", "scales", "description"}
PLACEHOLDER = re.compile(r"\{(run:[^}]+|teacher|out)\}")
DEFAULTS_TOKEN = "{defaults}"  # a whole command token: the experiment's defaults as flags


# ---- experiment files -----------------------------------------------------------------------------

def config_dirs() -> list[Path]:
    """./configs (the working directory), then the package's own."""
    seen = []
    for d in (Path.cwd() / "configs", PACKAGE_CONFIGS):
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


def _check_runs(runs, where: str) -> list:
    if not isinstance(runs, list) or not all(isinstance(r, dict) and r.get("name") for r in runs):
        raise SpiketandemError(f"{where}: `runs` must be a list of mappings, each with a `name`")
    names = [str(r["name"]) for r in runs]
    if len(set(names)) != len(names) or "teacher" in names or "report" in names:
        raise SpiketandemError(f"{where}: run names must be unique and not 'teacher' or 'report'")
    return runs


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
    runs = _check_runs(data.get("runs") or [], f"experiment file {path}")
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
        teacher = preset.get("teacher")
        if isinstance(teacher, str):  # a given teacher (a file or pretrained:NAME): none is trained
            exp.teacher = None
            exp.defaults["teacher"] = teacher
        elif exp.teacher is not None:
            exp.teacher.update(_mapping(teacher, f"scale {scale} teacher"))
        runs = preset.get("runs")
        if isinstance(runs, list):  # the scale's own runs replace the experiment's
            exp.runs = [_mapping(r, f"scale {scale} run {r.get('name')}") for r in _check_runs(runs, f"scale {scale}")]
        else:
            run_over = _mapping(runs, f"scale {scale} runs")
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
    from ..cli import build_parser
    from ..data.registry import DATASETS
    from ..rules import RULES
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
        words = [t for t in cmd if not t.startswith("-") and not PLACEHOLDER.search(t) and t != DEFAULTS_TOKEN][:2]
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
