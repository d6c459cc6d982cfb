"""Every `ferry bench` subcommand has a smoke run in the test command.

The commands are read from the Typer app, the smoke runs from the tests' own source (a
command line that names `bench` and the subcommand), so a new bench without one fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from ferry_cli.main import app

TESTS = Path(__file__).resolve().parents[1]


def bench_commands() -> set[str]:
    group = typer.main.get_command(app)
    bench = group.commands["bench"]  # type: ignore[attr-defined]
    return set(bench.commands)


def smoked_commands() -> set[str]:
    """Subcommands some test runs as `"bench", "<name>"` or through a `bench("<name>"` or
    `run_bench("<name>"` helper."""
    pattern = re.compile(r"""(?:["']bench["'],\s*|\b(?:run_)?bench\(\s*)["']([a-z][a-z-]*)["']""")
    found: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        if path.resolve() != Path(__file__).resolve():
            found |= set(pattern.findall(path.read_text()))
    return found


def test_every_bench_command_has_a_smoke_run() -> None:
    commands = bench_commands()
    assert {"batch", "scoring", "load", "cost", "reliability"} <= commands
    missing = commands - smoked_commands()
    assert not missing, f"bench commands without a smoke run in tests/: {sorted(missing)}"
