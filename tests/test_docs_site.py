"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link, anchor or reference fails),
and its reference is generated from the code (docs/hooks/reference.py), so that a flag, setting, rule option or
public name added to the code appears in the reference with no page edited."""
import argparse
import ast
import dataclasses
import html
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spiketandem.cli import build_parser
from spiketandem.config import SETTINGS
from spiketandem.ownership import RUN_FILES
from spiketandem.rules.catalog import CATALOG, Option, RuleEntry
from spiketandem.settings import Setting

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _generator()


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _long_flags(sub)
        else:
            found |= {o for o in action.option_strings if o.startswith("--") and o != "--help"}
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def _page(site: Path, path: str) -> str:
    return html.unescape((site / path / "index.html").read_text())


def test_the_site_builds_strict_with_every_section(site):
    home = (site / "index.html").read_text()
    for section in ("Tutorials", "How-to guides", "Reference", "Explanation", "Results"):
        assert section in home
    for page in ("reference/cli", "reference/config", "reference/rules", "reference/api", "reference/run-folder",
                 "tutorials/first-student"):
        assert (site / page / "index.html").is_file(), page


def test_the_built_reference_lists_every_flag_setting_rule_and_export(site):
    cli = _page(site, "reference/cli")
    missing = sorted(flag for flag in _long_flags(build_parser()) if flag not in cli)
    assert missing == []
    config = _page(site, "reference/config")
    assert [name for name in SETTINGS if name not in config] == []
    rules = _page(site, "reference/rules")
    assert [name for name in CATALOG if f'id="{name}"' not in rules] == []
    assert [o.flag for e in CATALOG.values() for o in e.options if o.flag not in rules] == []
    api = _page(site, "reference/api")
    import spiketandem
    # mkdocstrings rendered each public name from its docstring (its heading carries the full path as id)
    assert [n for n, m in spiketandem._EXPORTS.items() if f'id="spiketandem.{m}.{n}"' not in api] == []
    assert 'id="spiketandem.api.train_ltl"' in api


def test_generated_pages_are_never_committed():
    """The reference is produced at build time only: no generated page lives in docs/."""
    assert [path for path in reference.PAGES if (DOCS / path).exists()] == []


def test_a_new_flag_changes_the_command_reference_with_no_doc_edit():
    parser = build_parser(["train"])
    before = reference.cli_page(parser)
    assert "--brand-new-flag" not in before
    _subparser(parser, "train").add_argument("--brand-new-flag", type=int, default=7, metavar="N",
                                             help="a flag that no page mentions")
    after = reference.cli_page(parser)
    row = next(line for line in after.splitlines() if "--brand-new-flag" in line)
    assert row == "| `--brand-new-flag N` | 7 | a flag that no page mentions |"


def test_a_flag_default_in_its_help_goes_to_the_default_column():
    parser = argparse.ArgumentParser(prog="spiketandem")
    sub = parser.add_subparsers().add_parser("cmd", help="one command")
    sub.add_argument("--width", help="channel width multiplier (in [0, 1); default: 1.0)")
    sub.add_argument("--seed", help="random seed (default: 0)")
    page = reference.cli_page(parser)
    assert "| `--width WIDTH` | 1.0 | channel width multiplier (in \\[0, 1)) |" in page
    assert "| `--seed SEED` | 0 | random seed |" in page


def test_a_new_setting_changes_the_config_reference():
    added = Setting("brand_new_key", int, 3, "a key that no page mentions", minimum=1, group="run")
    page = reference.config_page({**SETTINGS, added.name: added})
    row = next(line for line in page.splitlines() if "brand_new_key" in line)
    assert row == ("| `brand_new_key` | `--brand-new-key` | int | 3 | an integer &gt;= 1 | a key that no page "
                   "mentions |")
    assert "brand_new_key" not in reference.config_page(SETTINGS)


def test_a_new_rule_option_changes_the_rules_reference():
    entry = CATALOG["ltl-offline"]
    option = Option("brand_new_option", float, 0.5, "an option that no page mentions", minimum=0.0, below=1.0)
    catalog = {**CATALOG, "ltl-offline": dataclasses.replace(entry, options=entry.options + (option,)),
               "brand-new-rule": RuleEntry("brand-new-rule", "stbp:STBP", (option,))}
    page = reference.rules_page(catalog)
    assert "## `brand-new-rule` {#brand-new-rule}" in page
    rows = [line for line in page.splitlines() if "`--brand-new-option`" in line]
    assert len(rows) == 2 and rows[0] == ("| `brand_new_option` | `--brand-new-option` | float | 0.5 | a number "
                                          "&gt;= 0.0 and &lt; 1.0 | an option that no page mentions |")
    assert "brand_new_option" not in reference.rules_page(CATALOG)


def test_a_new_export_changes_the_api_reference():
    import spiketandem
    page = reference.api_page({**spiketandem._EXPORTS, "count_ops": "metrics"})
    assert "::: spiketandem.metrics.count_ops" in page
    assert all(f"::: spiketandem.{m}.{n}" in page for n, m in spiketandem._EXPORTS.items())


def test_an_optional_page_enters_the_navigation_only_once_it_exists(tmp_path):
    nav = [{"Home": "index.md"}, {"Reference": [{"Command line": "reference/cli.md"}]}]
    config = {"docs_dir": str(tmp_path), "nav": nav}
    reference.on_config(config)
    assert nav[1]["Reference"] == [{"Command line": "reference/cli.md"}]
    for path in reference.OPTIONAL_PAGES:
        (tmp_path / path).write_text("# page\n")
    reference.on_config(config)
    reference.on_config(config)  # once only
    titles = [title for section, title in reference.OPTIONAL_PAGES.values() if section == "Reference"]
    assert [next(iter(item)) for item in nav[1]["Reference"]] == ["Command line", *titles]


def test_the_run_folder_page_names_every_run_file_and_summary_field():
    """The run folder's files (ownership.RUN_FILES) and summary.json's fields (workflow.summary_row) are written
    by hand in docs/reference/run-folder.md: this keeps the page complete."""
    page = (DOCS / "reference" / "run-folder.md").read_text()
    assert [name for name in RUN_FILES if f"`{name}" not in page] == []
    tree = ast.parse((ROOT / "src" / "spiketandem" / "workflow.py").read_text())
    row = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "summary_row")
    returned = next(n for n in ast.walk(row) if isinstance(n, ast.Return)).value
    fields = [key.value for key in returned.keys]
    assert "student_acc" in fields and [f for f in fields if f"`{f}`" not in page] == []
