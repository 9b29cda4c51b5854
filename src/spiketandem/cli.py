"""The `spiketandem` command.

Parsing and help never import torch, so that ``--help``, ``--version`` and every usage error answer at
once: the flags, their choices and defaults and every rule option come from torch-free declarations
(``config.RunConfig``, ``choices``, ``rules.catalog``), and a command's module is imported only when
that command is named (its one-line summary lives in ``COMMANDS``, as pip's command table does).
torch is imported when a command runs.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import warnings
import textwrap
from collections.abc import Iterable

from . import __version__
from .errors import SpiketandemError

# command -> ("module:function" that adds its arguments to its parser, the line `spiketandem --help` shows)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spiketandem.commands:add_demo",
             "the whole pipeline on the embedded digits data, in a few minutes on a CPU"),
    "check-teacher": ("spiketandem.commands:add_check_teacher",
                      "before training: what the student builder and NIR export refuse in a teacher, each with its fix"),
    "teacher": ("spiketandem.commands:add_teacher", "train an ANN teacher from the zoo"),
    "train": ("spiketandem.commands:add_train", "train a spiking student by a learning rule"),
    "eval": ("spiketandem.commands:add_eval", "evaluate a trained run folder at several time windows"),
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """spiketandem's own warnings (``"spiketandem: ..."``) as the one line they are; others as Python shows them."""
    if str(message).startswith("spiketandem:"):
        print(message, file=file or sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


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
        with warnings.catch_warnings():  # restores Python's display after the command (main runs in tests too)
            warnings.showwarning = _show_warning
            status = args.func(args)
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
    return status if isinstance(status, int) else 0  # a command may answer with its exit status (check-teacher)


if __name__ == "__main__":
    sys.exit(main())
