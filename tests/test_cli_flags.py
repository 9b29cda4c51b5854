"""Every command's flags against a checked-in list (tests/cli_flags.json): a flag added or removed is a reviewed
decision, made by updating that list in the same change."""
import argparse
import json
from pathlib import Path

import pytest

from spiketandem.cli import COMMANDS, build_parser

LISTED = json.loads((Path(__file__).parent / "cli_flags.json").read_text())


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    """The long flags of ``parser`` (a subcommand's as "SUB --flag"), --help left out."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [f"{name} {flag}" for flag in flags_of(sub)]
        else:
            found += [o for o in action.option_strings if o.startswith("--") and o != "--help"]
    return sorted(found)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_commands_flags_are_the_listed_ones(command):
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    have, listed = set(flags_of(sub)), set(LISTED[command])
    assert (sorted(have - listed), sorted(listed - have)) == ([], []), (
        f"`{command}` flags changed (added, removed); if intended, update tests/cli_flags.json")


def test_the_list_names_every_command():
    assert sorted(LISTED) == sorted(COMMANDS)
