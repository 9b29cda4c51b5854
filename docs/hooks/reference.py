"""The reference pages of the documentation site, generated from the code when the site is built.

Nothing here is typed twice: every command and flag comes from the `spiketandem` parser
(``spiketandem.cli.build_parser``), every config key from ``spiketandem.config.SETTINGS``, every learning
rule and option from ``spiketandem.rules.catalog.CATALOG``, and the Python API page names the public exports
(``spiketandem._EXPORTS``) for mkdocstrings to render from their docstrings.  A flag, setting, option or export
added to the code appears in the reference at the next build, with no edit to any page.

Used as an MkDocs hook (``hooks:`` in mkdocs.yml): ``on_files`` adds the generated pages to the build (they are
never written into ``docs/``), ``on_config`` lists optional pages in the navigation only when they exist.
The functions that write Markdown take the parser, settings or catalog as arguments, so that a test can hand
them a parser with one more flag and see it in the page.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import re
from pathlib import Path

# generated page (path under docs/) -> the function that writes it
PAGES = {
    "reference/cli.md": "cli_page",
    "reference/config.md": "config_page",
    "reference/rules.md": "rules_page",
    "reference/api.md": "api_page",
}

# pages written by hand that are listed in the navigation only once they exist: path -> (section, title)
OPTIONAL_PAGES = {"teachers.md": ("Reference", "Shipped teachers")}

# a setting's help or default in words may name these (``config.RunConfig``; the run commands fill them in)
HELP_WORDS = {
    "kind": "<rule>, or teacher for `spiketandem teacher`",
    "recipe": "the rule's own, or the teacher recipe's for `spiketandem teacher`; config.yaml records the value used",
}


# ---- Markdown text --------------------------------------------------------------------------------------

_CODE = re.compile(r"(``?)(.+?)\1")


def text(value: str) -> str:
    """Plain text as Markdown inline text: ``code`` and `code` spans kept as code, everything else escaped
    (HTML ``<>&``, emphasis ``*_``, links ``[]``, table cells ``|``), on one line."""
    value = " ".join(str(value).split())
    out, last = [], 0
    for m in _CODE.finditer(value):
        out.append(_escape(value[last:m.start()]))
        out.append(code(m.group(2)))
        last = m.end()
    out.append(_escape(value[last:]))
    return "".join(out)


def _escape(value: str) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\*_\[\]|`])", r"\\\1", value)


def code(value: str) -> str:
    """``value`` as an inline code span (a table cell's ``|`` escaped)."""
    value = str(value).replace("|", "\\|")
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}" if fence == "`" else f"{fence} {value} {fence}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


# ---- commands and flags: from the parser ----------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each subcommand of ``parser``."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def _anchor(prog: str) -> str:
    return "-".join(prog.split()[1:]) or "spiketandem"


def _split_default(help_text: str) -> tuple[str, str | None]:
    """A help text's trailing ``(default: X)`` or ``(...; default: X)`` (as ``run_flags`` writes it) taken
    out: the help without it, and X."""
    at = help_text.rfind("default: ")
    if at < 0 or not help_text.endswith(")"):
        return help_text, None
    before, default = help_text[:at], help_text[at + len("default: "):-1]
    if before.endswith("("):
        return before[:-1].rstrip(), default
    if before.endswith("; "):
        return before[:-2] + ")", default
    return help_text, None


def _shown_default(action: argparse.Action) -> str | None:
    default = action.default
    if default in (None, argparse.SUPPRESS) or (isinstance(action, argparse._StoreTrueAction) and default is False):
        return None
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(default)


def _flag_rows(parser: argparse.ArgumentParser, formatter: argparse.HelpFormatter, actions) -> list[list[str]]:
    rows = []
    for action in actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        invocation = formatter._format_action_invocation(action)
        if isinstance(action, argparse._SubParsersAction):
            invocation = f"{action.metavar or action.dest} ({', '.join(action.choices)})"
        help_text = formatter._expand_help(action) if action.help else ""
        help_text, default = _split_default(help_text)
        default = _shown_default(action) or default
        choices = [] if action.choices is None or isinstance(action, argparse._SubParsersAction) else list(action.choices)
        if choices and action.metavar is not None and not all(str(c) in help_text for c in choices):
            help_text += f" (one of {', '.join(map(str, choices))})"
        rows.append([code(invocation), text(default) if default else "", text(help_text)])
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _prose(parser: argparse.ArgumentParser, value: str | None) -> str:
    """A description or epilog: preformatted where the parser keeps its layout, else a paragraph."""
    if not value:
        return ""
    if issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
        return "```text\n" + value.strip("\n") + "\n```\n"
    return text(value) + "\n"


def _command_section(prog: str, summary: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    formatter = parser.formatter_class(prog=parser.prog)
    out = [f"{'#' * level} `{prog}` {{#{_anchor(prog)}}}\n"]
    if summary:
        out.append(f"*{text(summary)}*\n")
    out.append("```text\n" + _usage(parser) + "\n```\n")
    for part in (parser.description, parser.epilog):
        if part:
            out.append(_prose(parser, part))
    for group in parser._action_groups:
        rows = _flag_rows(parser, formatter, group._group_actions)
        if rows:
            out.append(f"**{text(group.title)}**\n")
            out.append(table(["flag", "default", "description"], rows))
    for name, sub_summary, sub in _subcommands(parser):
        out += _command_section(f"{prog} {name}", sub_summary, sub, min(level + 1, 4))
    return out


def cli_page(parser: argparse.ArgumentParser | None = None) -> str:
    """Every command, subcommand and flag of ``parser`` (default: the `spiketandem` parser), with help and
    default, as one Markdown page."""
    if parser is None:
        from spiketandem.cli import build_parser
        parser = build_parser()
    commands = _subcommands(parser)
    out = ["# Command line\n",
           "Every command and flag of `spiketandem`, as `spiketandem COMMAND --help` prints them; "
           "this page is generated from the parser when the documentation is built. The run settings behind the "
           "run commands' flags are listed with their types and bounds under [Config keys](config.md), and each "
           "rule's options under [Learning rules](rules.md).\n",
           table(["command", "what it does"],
                 [[f"[`{parser.prog} {name}`](#{_anchor(f'{parser.prog} {name}')})", text(summary)]
                  for name, summary, _ in commands])]
    formatter = parser.formatter_class(prog=parser.prog)
    top = [a for a in parser._actions if not isinstance(a, argparse._SubParsersAction)]
    rows = _flag_rows(parser, formatter, top)
    if rows:
        out += [f"Flags of `{parser.prog}` itself:\n", table(["flag", "default", "description"], rows)]
    for name, summary, sub in commands:
        out += _command_section(f"{parser.prog} {name}", summary, sub, 2)
    return "\n".join(out)


# ---- config keys: from the settings ---------------------------------------------------------------------

class _Words(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def _words(catalog=None) -> _Words:
    if catalog is None:
        from spiketandem.rules.catalog import CATALOG as catalog
    return _Words(HELP_WORDS, rules=", ".join(name for name in catalog if name != "ann"))


def _value(value) -> str:
    """A default as YAML writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _type(declared) -> str:
    name = {int: "int", float: "float", bool: "bool", str: "str"}.get(declared.type, "list")
    return f"list of {name}" if declared.nargs else name


def _allowed(declared) -> str:
    if declared.choices:
        allowed = "one of " + ", ".join(str(c) for c in declared.choices if c is not None)
    elif declared.type in (int, float):
        allowed = declared.allowed()
    else:
        allowed = ""
    if declared.null:
        allowed += ("; " if allowed else "") + f"null: {declared.null}"
    return allowed


def _flag_commands(parser: argparse.ArgumentParser | None) -> dict[str, list[str]]:
    """Flag -> the commands of ``parser`` that take it."""
    if parser is None:
        return {}
    found: dict[str, list[str]] = {}
    for name, _, sub in _subcommands(parser):
        for action in sub._actions:
            for option in action.option_strings:
                found.setdefault(option, []).append(name)
    return found


def config_page(settings: dict | None = None, parser: argparse.ArgumentParser | None = None, catalog=None) -> str:
    """Every config key (``RunConfig``'s settings) as a table: YAML key, flag and the commands that take it,
    type, default, allowed values, help."""
    if settings is None:
        from spiketandem.config import SETTINGS as settings
        from spiketandem.cli import build_parser
        parser = build_parser(["demo", "teacher", "train", "compare"])
    words = _words(catalog)
    takers = _flag_commands(parser)
    rows = []
    for declared in settings.values():
        if declared.group is None:
            flag = "config only"
        else:
            commands = takers.get(declared.flag)
            flag = code(declared.flag) + (f" ({', '.join(commands)})" if commands else "")
        default = declared.shown.format_map(words) if declared.shown else _value(declared.default)
        rows.append([code(declared.name), flag, _type(declared), text(default), text(_allowed(declared)),
                     text(declared.help.format_map(words))])
    return "\n".join([
        "# Config keys\n",
        "Every field of a run's configuration (`spiketandem.config.RunConfig`): the key in a YAML file given "
        "by `--config FILE.yaml` and in a run folder's `config.yaml`, the flag that sets it (and the commands that "
        "take that flag; flags override the file), its type, default, allowed values and meaning. This page is "
        "generated from the settings' declarations (`spiketandem.config.SETTINGS`) when the documentation is "
        "built. A bad value is refused with one line naming the key and what is allowed.\n",
        "A rule's own options go under `options:` in the YAML file (or at its top level) and have flags of their "
        "own: see [Learning rules](rules.md).\n",
        table(["key", "flag", "type", "default", "allowed", "description"], rows),
    ])


# ---- learning rules: from the catalog -------------------------------------------------------------------

def _docstring_summary(implementation: str, package: str = "spiketandem.rules") -> str:
    """The first paragraph of a rule class's docstring, else of its module's, read from the source without
    importing it (the rules import torch)."""
    module, _, cls = implementation.partition(":")
    spec = importlib.util.find_spec(f"{package}.{module}")
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls and ast.get_docstring(node):
            return first_paragraph(ast.get_docstring(node))
    return first_paragraph(ast.get_docstring(tree))


def _option_rows(options, words) -> list[list[str]]:
    rows = []
    for option in options:
        default = "decided by the rule" if option.default is None else _value(option.default)
        rows.append([code(option.name), code(option.flag), _type(option), text(default), text(_allowed(option)),
                     text(option.help.format_map(words))])
    return rows


def rules_page(catalog: dict | None = None, summaries: bool = True) -> str:
    """Every learning rule of ``catalog`` (default: ``CATALOG``) with its options and their defaults."""
    if catalog is None:
        from spiketandem.rules.catalog import CATALOG as catalog
    words = _words(catalog)
    described = {name: _docstring_summary(entry.implementation) if summaries else "" for name, entry in catalog.items()}
    out = ["# Learning rules\n",
           "Every learning rule (`--rule NAME`, `api.train(NAME, ...)`) with its options, their defaults and "
           "allowed values; generated from the rule catalog (`spiketandem.rules.catalog.CATALOG`) when the "
           "documentation is built. An option is a flag (`--NAME` with dashes) and a YAML key (under `options:`); "
           "giving one to a rule that does not declare it is an error naming the rules that do. How the rules "
           "work: [offline LTL](../ltl_offline.md), [online LTL](../online_ltl.md), "
           "[direct training](../rules_direct.md), [tandem learning and conversion](../rules_conversion.md).\n",
           table(["rule", "what it is", "options"],
                 [[f"[`{name}`](#{name})", text(described[name]), str(len(entry.options))]
                  for name, entry in catalog.items()])]
    for name, entry in catalog.items():
        module, _, cls = entry.implementation.partition(":")
        out.append(f"## `{name}` {{#{name}}}\n")
        if described[name]:
            out.append(text(described[name]) + "\n")
        facts = [f"class {code(f'spiketandem.rules.{module}.{cls}')}"]
        if entry.fixed:
            facts.append("runs only with " + ", ".join(code(f"{k}: {_value(v)}") for k, v in entry.fixed))
        if entry.levels_option:
            facts.append(f"a sweep over T sets {code(entry.levels_option)} to each window")
        facts.append("layer pipelining (`--pipeline-stages`): "
                     + ("supported" if entry.no_pipeline is None else "not supported, " + text(entry.no_pipeline)))
        out.append("\n".join(f"- {fact}" for fact in facts) + "\n")
        if entry.options:
            out.append(table(["option", "flag", "type", "default", "allowed", "description"],
                             _option_rows(entry.options, words)))
        else:
            out.append("No options of its own.\n")
    return "\n".join(out)


# ---- the Python API: mkdocstrings renders the docstrings ------------------------------------------------

def api_page(exports: dict | None = None) -> str:
    """The public Python API: every name ``import spiketandem`` exports (``_EXPORTS``, name -> submodule),
    and ``spiketandem.api``, each rendered by mkdocstrings from its docstring."""
    if exports is None:
        import spiketandem
        exports = spiketandem._EXPORTS
    out = ["# Python API\n",
           "The public names of `spiketandem` and the functions of `spiketandem.api`, rendered from their "
           "docstrings when the documentation is built. How to use them: [Use the Python API](../api.md).\n",
           "## `spiketandem`\n",
           "::: spiketandem.errors.SpiketandemError\n    options:\n      heading_level: 3\n"]
    for name, module in exports.items():
        out.append(f"::: spiketandem.{module}.{name}\n    options:\n      heading_level: 3\n")
    out += ["## `spiketandem.api`\n",
            "::: spiketandem.api\n    options:\n      show_root_heading: false\n      heading_level: 3\n"]
    return "\n".join(out)


# ---- the MkDocs hook ------------------------------------------------------------------------------------

def generate() -> dict[str, str]:
    """Every generated page: path under docs/ -> Markdown."""
    return {path: globals()[function]() for path, function in PAGES.items()}


def on_config(config, **kwargs):
    docs = Path(config["docs_dir"])
    for path, (section, title) in OPTIONAL_PAGES.items():
        if not (docs / path).is_file():
            continue
        for entry in config["nav"] or []:
            if isinstance(entry, dict) and section in entry and not any(
                    path in (item.values() if isinstance(item, dict) else [item]) for item in entry[section]):
                entry[section].append({title: path})
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File
    for path, content in generate().items():
        files.append(File.generated(config, path, content=content))
    return files
