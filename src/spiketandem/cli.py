"""The `spiketandem` command.

Parsing and help never import torch, so that ``--help``, ``--version`` and every usage error answer at
once: the flags, their choices and defaults and every rule option come from torch-free declarations
(``config.RunConfig``, ``choices``, ``rules.catalog``), and a command's module is imported only when
that command is named (its one-line summary lives in ``COMMANDS``, as pip's command table does).
torch is imported when a command runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import sys
import textwrap
import time
from collections.abc import Iterable

from . import __version__
from .config import CHOICES, FIELD_NAMES, SETTINGS, SYNOPS_CONVENTION_HELP, RunConfig, load_yaml, make_config
from .errors import SpiketandemError
from .rules import CATALOG, all_options, rules_declaring

# the demo's LTL student starts every membrane at theta/2 (the low-latency recipe's first part): its spike counts
# round instead of floor, so the short windows of its table work too (T = 2: 98.9 % rather than chance); the
# options apply to the demo's own rule, ltl-offline (`demo --rule R` runs R with its own defaults)
DEMO_CONFIG = dict(dataset="digits", arch="digits-cnn", neuron="lif", T=8, eval_T=[2, 4, 8, 16, 32], epochs=5,
                   teacher_epochs=40, batch_size=64, name="demo", options={"membrane_init": 0.5})

# command -> ("module:function" that adds its arguments to its parser, the line `spiketandem --help` shows)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spiketandem.cli:add_demo", "the whole pipeline on the embedded digits data, in a few minutes on a CPU"),
    "teacher": ("spiketandem.cli:add_teacher", "train an ANN teacher from the zoo"),
    "train": ("spiketandem.cli:add_train", "train a spiking student by a learning rule"),
    "eval": ("spiketandem.cli:add_eval", "evaluate a trained run folder at several time windows"),
    "compare": ("spiketandem.compare:register",
                "train several learning rules on one setup; table + accuracy-vs-T + learning curves"),
    "report": ("spiketandem.report.command:register", "Markdown + HTML report with plots from one or more run folders"),
    "reproduce": ("spiketandem.reproduce.command:register",
                  "run one of the LTL paper's experiments end to end (configs/NAME.yaml)"),
    "noise": ("spiketandem.hardware.command:register",
              "simulate hardware noise on a trained student and calibrate it on-chip (online LTL vs HIL)"),
    "export": ("spiketandem.export.command:register",
               "write a trained student as a NIR graph for other SNN tools and chips"),
    "bench": ("spiketandem.bench:register", "performance benchmarks (memory, time)"),
}

# the commands that train (or time training): only they tune glibc's allocator (allocator.py)
TRAINING_COMMANDS = ("demo", "teacher", "train", "compare", "reproduce", "noise", "export", "bench")


# ---- the parser: whole flag names, one-line errors that suggest the nearest flag or choice ---------------

class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout with room for the flags of `train` (``--neuron-backend {auto,fused,reference}``)."""

    def __init__(self, prog, **kwargs):
        kwargs.setdefault("max_help_position", 30)
        super().__init__(prog, **kwargs)

    def _split_lines(self, text, width):
        # never inside a hyphenated name (ltl-offline, --membrane-init), which argparse's wrap would break
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """argparse with whole flag names only (``--epoch`` is not taken as ``--epochs``), every error one line
    ``spiketandem: error: ...`` that names the command and suggests the nearest flag or choice, and
    arguments a command does not know reported by that command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        # strict as parse_args: argparse parses a subcommand with this method and would pass what it does not
        # know up to the top level, which can then name neither the command nor the flag meant
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return namespace, extras

    def _unrecognized(self, extras: list[str]) -> str:
        flags = {o.lstrip("-"): o for o in self._option_string_actions if o.startswith("--")}
        hints = []
        for arg in extras:
            if arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
                given = arg.split("=", 1)[0]
                near = difflib.get_close_matches(given.lstrip("-"), flags, n=1)  # by name: "--" matches every flag
                if near:
                    hints.append((given, flags[near[0]]))
        words = "argument" if len(extras) == 1 else "arguments"
        message = f"unrecognized {words} {' '.join(extras)}"
        if len(hints) == 1 and len(extras) <= 2:
            return f"{message}; did you mean {hints[0][1]}?"
        if hints:
            return f"{message}; did you mean " + ", ".join(f"{near} (for {given})" for given, near in hints) + "?"
        return f"{message}; `{self.prog} --help` lists the flags"

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            near = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise argparse.ArgumentError(action, f"invalid choice {value!r} (choose from {', '.join(choices)}){hint}")

    def error(self, message: str):
        command = self.prog.removeprefix("spiketandem").strip()  # "train", "bench neuron"; "" at the top
        self.exit(2, f"spiketandem: error: {command + ': ' if command else ''}{message}\n")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The `spiketandem` parser. Every command is listed; the commands in ``commands`` (default: all) get
    their arguments, which imports their modules (`main` builds only the command it is given)."""
    parser = Parser(prog="spiketandem", description="Train deep spiking neural networks by Local Tandem Learning "
                    "and the field's other rules.", epilog="`spiketandem COMMAND --help` shows a command's flags.")
    parser.add_argument("--version", action="version", version=f"spiketandem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    wanted = set(COMMANDS if commands is None else commands)
    for name, (where, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary)
        if name in wanted:
            module, _, function = where.partition(":")
            getattr(importlib.import_module(module), function)(p)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The command named by ``argv`` (the top level takes no option with a value: the first word is it)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    parser = build_parser([command] if command in COMMANDS else [])
    if command is None and not {"-h", "--help", "--version"} & set(argv) and argv:
        parser.error(parser._unrecognized(argv))  # e.g. `spiketandem --verison`: name it, not the missing COMMAND
    args = parser.parse_args(argv)
    if args.command in TRAINING_COMMANDS:
        from .allocator import keep_freed_memory
        keep_freed_memory()  # training steps recycle their pages instead of faulting them in again (allocator.py)
    try:
        args.func(args)
    except SpiketandemError as e:
        print(f"spiketandem: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only folder, a full disk, a file where a folder belongs: one line, no traceback
        from .errors import describe_os_error
        print(f"spiketandem: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # torch.save reports a failed write (e.g. a full disk) as a RuntimeError
        if not isinstance(e.__context__, OSError):
            raise
        from .errors import describe_os_error
        print(f"spiketandem: error: {describe_os_error(e.__context__)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spiketandem: interrupted; `--resume` continues from the last checkpoint", file=sys.stderr)
        return 130
    return 0


# ---- the run flags of demo, teacher, train and compare ----------------------------------------------------

_FIELD_DEFAULTS = {f.name: (f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
                   for f in dataclasses.fields(RunConfig)}


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def _help(text: str, field: str | None = None, defaults: dict | None = None, default: str | None = None,
          allowed: str = "") -> str:
    """``text`` with what is ``allowed`` and its default: ``default`` in words, else the value of config
    field ``field`` (``defaults`` first: e.g. the demo's settings), omitted where there is none to show."""
    if default is None and field is not None:
        value = (defaults or {}).get(field, _FIELD_DEFAULTS[field])
        default = None if value is None else _shown(value)
    notes = "; ".join(n for n in (allowed, default and f"default: {default}") if n)
    text = f"{text} ({notes})" if notes else text
    return text.replace("%", "%%")  # argparse formats help with %


RUN_GROUPS = ("run", "data", "model", "optimisation", "spiking student")
# the `teacher` command's own words for a setting whose flag means something else there: (help, default)
TEACHER_COMMAND_WORDS = {"teacher": ("start from this teacher's weights (teacher.pt or its run folder), e.g. to quantize "
                                     "it with --act-levels", "random initialisation")}


def _add_run_flags(p: argparse.ArgumentParser, rule_flag: bool, *, defaults: dict | None = None,
                   overwrite: bool = False, teacher_recipe: bool = False) -> None:
    """Flags shared by `demo`, `teacher`, `train` and `compare`: the command's own (--config, --resume, ...), then
    one flag per run setting of the command's scope, derived from its declaration (``config.RunConfig``).
    Every one defaults to None so that only given flags override the --config file (and ``defaults``, e.g. the
    demo's; shown in the help)."""
    d = defaults or {}
    scopes = ("all", "student") if rule_flag else ("all", "teacher")
    rules = [name for name in CATALOG if name != "ann"]
    words = {"kind": "teacher" if teacher_recipe else "<rule>", "rules": ", ".join(rules),
             "recipe": "the teacher recipe's" if teacher_recipe else "the rule's own; config.yaml records the value used"}
    p.usage = "%(prog)s [options]"
    groups = {title: p.add_argument_group(title) for title in RUN_GROUPS if rule_flag or title != "spiking student"}
    g = groups["run"]
    g.add_argument("--config", metavar="FILE.yaml", help="YAML file of config fields; flags override it")
    first = ("out", "name")  # the run folder's flags, then the command's own
    for name in first:
        _add_setting_flag(g, SETTINGS[name], d, words, rules, None)
    g.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint (without "
                   "--out: the newest folder of the series)")
    if overwrite:
        g.add_argument("--overwrite", action="store_true",
                       help="start again in an existing run folder: removes only the files a run writes")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    for declared in SETTINGS.values():
        if declared.group in groups and declared.scope in scopes and declared.name not in first:
            _add_setting_flag(groups[declared.group], declared, d, words, rules,
                              TEACHER_COMMAND_WORDS.get(declared.name) if teacher_recipe else None)
    if rule_flag:
        _add_rule_options(p, d.get("options") or {})


def _add_setting_flag(g, declared, defaults: dict, words: dict, rules: list, own_words: tuple | None) -> None:
    """The flag of one run setting: its help with its default (the command's own value, else the setting's
    default in words, else its value), its choices or type and metavar."""
    text, shown = own_words or (declared.help.format(**words), declared.shown)
    default = None if declared.name in defaults or shown is None else shown.format(**words)
    kwargs = {"help": _help(text, declared.name, defaults, default)}
    if declared.type is bool:
        kwargs.update(action="store_true", default=None)
    elif declared.name == "rule":
        kwargs.update(choices=rules, metavar=declared.metavar)
    elif declared.choices is not None:
        kwargs["choices"] = [c for c in declared.choices if c is not None]
    else:
        kwargs.update(type=declared.type if declared.type in (int, float) else None, metavar=declared.metavar)
        if declared.nargs:
            kwargs["nargs"] = declared.nargs
    g.add_argument(declared.flag, **{k: v for k, v in kwargs.items() if v is not None or k == "default"})


def _add_rule_options(p: argparse.ArgumentParser, demo_options: dict) -> None:
    """Each rule's options in a group titled by the rule; an option several rules share appears once, in a
    group of its own ("shared by ..."); ``demo_options``: the demo's own values, shown as its defaults."""
    groups: dict[tuple[str, ...], list] = {}
    for opt in all_options().values():
        groups.setdefault(tuple(rules_declaring(opt.name)), []).append(opt)
    for users, options in groups.items():
        title = f"options of --rule {users[0]}" if len(users) == 1 else f"options shared by --rule {', '.join(users)}"
        g = p.add_argument_group(title)
        for opt in options:
            default = "the rule's" if opt.default is None else _shown(opt.default)
            if opt.name in demo_options:
                default = f"{_shown(demo_options[opt.name])} for the demo's ltl-offline"
            text = _help(opt.help, default=default, allowed=opt.bounds())
            if opt.type is bool:
                g.add_argument(opt.flag, action=argparse.BooleanOptionalAction, default=None,
                               dest=f"option_{opt.name}", help=text)
            else:
                g.add_argument(opt.flag, type=opt.type, choices=opt.choices, metavar=_metavar(opt),
                               dest=f"option_{opt.name}", help=text)


def _metavar(opt) -> str | None:
    if opt.choices:
        return None  # argparse shows {a,b,c}
    if opt.type is int:
        return "N"
    if opt.type is float:
        lo = opt.minimum if opt.minimum is not None else opt.above
        hi = opt.maximum if opt.maximum is not None else opt.below
        return "FRACTION" if lo is not None and hi is not None and lo >= 0 and hi <= 1 else "X"
    return "VALUE"


def config_from_args(args, base: dict | None = None):
    """The run config: ``base`` (e.g. the demo's), then the --config file, then the given flags (every
    flag named after a config field, and every rule option)."""
    fields = dict(base or {})
    if getattr(args, "config", None):
        fields.update(load_yaml(args.config))
    overrides = {k: getattr(args, k) for k in FIELD_NAMES if hasattr(args, k)}
    overrides["options"] = {k[len("option_"):]: v for k, v in vars(args).items() if k.startswith("option_")}
    if args.quiet:
        overrides["progress"] = False
    return make_config(fields, overrides)


# ---- demo, teacher, train, eval ------------------------------------------------------------------------------

def add_demo(p: argparse.ArgumentParser) -> None:
    p.description = "Teacher, offline-LTL student, evaluation at several T, report: on digits."
    _add_run_flags(p, rule_flag=True, defaults=DEMO_CONFIG, overwrite=True)
    p.set_defaults(func=cmd_demo)


def add_teacher(p: argparse.ArgumentParser) -> None:
    p.description = ("Train an ANN teacher (SGD + Nesterov momentum, cosine schedule, weight decay, crop+flip where "
                     "it applies).")
    _add_run_flags(p, rule_flag=False, overwrite=True, teacher_recipe=True)
    p.set_defaults(func=cmd_teacher)


def add_train(p: argparse.ArgumentParser) -> None:
    p.description = ("Train a spiking student (default rule: offline LTL). On several GPUs: torchrun "
                     "--nproc_per_node=N -m spiketandem train ... (--batch-size is then the global batch; see "
                     "docs/performance.md).")
    _add_run_flags(p, rule_flag=True, overwrite=True)
    p.set_defaults(func=cmd_train)


def add_eval(p: argparse.ArgumentParser) -> None:
    p.description = "Re-evaluate RUN_DIR's student at each T (and its teacher); updates summary.json."
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--eval-T", type=int, nargs="+", metavar="N", help="time windows (default: the run's eval_T)")
    p.add_argument("--sweep-T", type=int, nargs="*", metavar="N",
                   help="evaluate at these windows (default 1 2 4 8 16 32 64) and write accuracy and SynOps ratio vs "
                        "T to RUN_DIR/sweep_T.csv and sweep_T.png (the LTL paper's Fig. 2)")
    p.add_argument("--mac-pj", type=float, default=4.6, metavar="PJ",
                   help="energy of one multiply-accumulate in pJ (default: 4.6, 45 nm)")
    p.add_argument("--ac-pj", type=float, default=0.9, metavar="PJ",
                   help="energy of one accumulate in pJ (default: 0.9, 45 nm)")
    p.add_argument("--synops-convention", choices=CHOICES["synops_convention"],
                   help=f"{SYNOPS_CONVENTION_HELP} (default: the run's)")
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


def _secondary_rank() -> bool:
    """A torchrun process other than rank 0: it trains but prints nothing (rank 0 reports)."""
    import os
    return int(os.environ.get("RANK", "0")) != 0


def _logger(args):
    if _secondary_rank():
        return lambda *a, **k: None
    if args.json or args.quiet:
        return lambda *a, **k: print(*a, file=sys.stderr, **k) if not args.quiet else None
    return print


def _print_summary(args, summary: dict, run_dir) -> None:
    from .report import accuracy_table
    from .report.tables import synops_convention
    if _secondary_rank():
        return
    if args.json:
        print(json.dumps({**summary, "run_dir": str(run_dir)}))
        return
    print()
    print(accuracy_table(summary.get("teacher_acc"), summary.get("acc_by_T") or {"-": summary["student_acc"]})
          if summary.get("acc_by_T") else f"accuracy {100 * summary['student_acc']:.2f}%")
    if summary.get("synops_ratio") is not None and summary.get("acc_by_T"):
        print(f"SynOps / teacher MACs at T={summary['T']} ({synops_convention(summary)}): "
              f"{summary['synops_ratio']:.3f}")
    print(f"run folder: {run_dir}")


def cmd_teacher(args):
    from .workflow import default_arch, run_dir_for, train_teacher
    cfg = config_from_args(args)
    if cfg.arch is None:
        cfg = cfg.replace(arch=default_arch(cfg.dataset))
    run = run_dir_for(cfg.replace(rule="ann"), "teacher", resume=args.resume)
    summary = train_teacher(cfg, run, resume=args.resume, overwrite=args.overwrite, log=_logger(args))
    _print_summary(args, summary, run.path)


def cmd_train(args, base: dict | None = None):
    from .workflow import run_dir_for, train_student
    cfg = config_from_args(args, base)
    run = run_dir_for(cfg, cfg.rule, resume=args.resume)
    summary = train_student(cfg, run, resume=args.resume, overwrite=args.overwrite, log=_logger(args))
    _print_summary(args, summary, run.path)
    return summary, run


def cmd_demo(args):
    log = _logger(args)
    log("spiketandem demo: digits (1,797 8x8 images) -> CNN teacher -> offline-LTL LIF student")
    t0 = time.perf_counter()
    ltl = config_from_args(args, DEMO_CONFIG).rule == "ltl-offline"  # --rule or a --config file may choose another
    summary, run = cmd_train(args, DEMO_CONFIG if ltl else {**DEMO_CONFIG, "options": {}})
    from .report import build_report
    markdown, html = build_report([run.path], run.path / "report")
    log(f"demo finished in {time.perf_counter() - t0:.0f}s; report: {markdown} and {html}")


def cmd_eval(args):
    from .workflow import eval_run
    from .metrics import EnergyModel
    from .report import SWEEP_T
    T_list = (args.sweep_T or list(SWEEP_T)) if args.sweep_T is not None else args.eval_T
    summary = eval_run(args.run_dir, T_list, device=args.device or "auto", energy=EnergyModel(args.mac_pj, args.ac_pj),
                       sweep=args.sweep_T is not None, synops_convention=args.synops_convention)
    _print_summary(args, summary, args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
