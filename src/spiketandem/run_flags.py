"""The run flags of `demo`, `teacher`, `train` and `compare`: one flag per run setting of the command's scope,
derived from its declaration (``config.RunConfig``'s Settings), the rules' options grouped by the rules that
declare them, and the run config built from the flags, a --config file and a command's own defaults."""
from __future__ import annotations

import argparse

from .config import FIELD_NAMES, SETTINGS, load_yaml, make_config
from .rules import CATALOG, all_options, rules_declaring



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
        value = (defaults or {}).get(field, SETTINGS[field].default)
        default = None if value is None else _shown(value)
    notes = "; ".join(n for n in (allowed, default and f"default: {default}") if n)
    text = f"{text} ({notes})" if notes else text
    return text.replace("%", "%%")  # argparse formats help with %


RUN_GROUPS = ("run", "data", "model", "optimisation", "spiking student")
# the `teacher` command's own words for a setting whose flag means something else there: (help, default)
TEACHER_COMMAND_WORDS = {"teacher": ("start from this teacher's weights (teacher.pt, its run folder or "
                                     "pretrained:NAME), e.g. to quantize it with --act-levels",
                                     "random initialisation")}


def add_run_flags(p: argparse.ArgumentParser, rule_flag: bool, *, defaults: dict | None = None,
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


