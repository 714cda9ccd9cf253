"""The `gateway` group imports a command's module only when that command is used: `--help`
lists every command from `gateway.cli.COMMANDS`, which must say what the commands say."""
from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from gateway.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_help_is_the_command_s_own(name: str) -> None:
    module, _, attribute = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(f"gateway.cli.{module}"), attribute)
    assert command.name == name
    listed = click.Command(name, help=COMMANDS[name][1])
    for limit in (30, 45, 60, 200):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_help_lists_every_command_and_loads_none() -> None:
    script = ("import sys\nfrom gateway.cli import main\nmain(['--help'], standalone_mode=False)\n"
              "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    listing = out.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listing[:len(COMMANDS)]] == sorted(COMMANDS)
    # `ingest`'s own module is the group's (its usage errors under an MTA), and light.
    modules = {f"gateway.cli.{where.partition(':')[0]}" for where, _ in COMMANDS.values()} - {"gateway.cli.ingest"}
    assert not (modules | {"gateway.views", "alembic"}) & set(listing[-1].split())


def test_a_command_s_own_help_and_an_unknown_command() -> None:
    assert "--client TEXT" in CliRunner().invoke(main, ["cases", "list", "--help"]).output
    result = CliRunner().invoke(main, ["nosuch"])
    assert result.exit_code == 2 and "No such command 'nosuch'" in result.output
