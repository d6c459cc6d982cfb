"""`ferry alarms --env local|dev|prod`: every alarm of the stage's stack and of its models,
firing ones first.

Read with the caller's identity (locally `admin` unless `ferry --as` says otherwise), which
needs `cloudwatch:DescribeAlarms` only; which alarms are the stack's is explained in
ferry_cli/alarm_list.py. A table for people, `--json` for scripts.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ferry_cli.alarm_list import STATES, StackAlarm, select, stack_alarms
from ferry_cli.environments import resolve
from ferry_cli.shell import ENV_OPTION, JSON_OPTION, emit, fail, reporting

STATE_STYLE = {"ALARM": "bold red", "INSUFFICIENT_DATA": "yellow", "OK": "green"}


def render(console: Console, stack: str, alarms: list[StackAlarm]) -> None:
    """One row per alarm: state, name, what it watches, how, when it fires, since when, why."""
    if not alarms:
        console.print(f"no alarm of {stack} matches")
        return
    prefix = f"{stack}-"
    table = Table(title=f"alarms of {stack} (each name is {prefix}<alarm>)", show_lines=True)
    table.add_column("state", no_wrap=True)
    table.add_column("alarm", no_wrap=True)
    table.add_column("watches", overflow="fold", ratio=3)
    table.add_column("stat / period, fires when", overflow="fold", ratio=2)
    table.add_column("since (UTC)", overflow="fold", ratio=1)
    table.add_column("reason", overflow="fold", ratio=3)
    for a in alarms:
        since = (a.transitioned_at or "").replace("T", " ").removesuffix("+00:00")
        table.add_row(
            f"[{STATE_STYLE.get(a.state, '')}]{a.state}[/]",
            a.name.removeprefix(prefix),
            a.watches(),
            "\n".join(x for x in (a.aggregation(), a.condition()) if x),
            since,
            a.state_reason,
        )
    console.print(table)
    firing = sum(a.state == "ALARM" for a in alarms)
    console.print(f"{len(alarms)} alarm(s), {firing} in ALARM")


def alarms(
    env: str = ENV_OPTION,
    state: str | None = typer.Option(
        None, "--state", help="only alarms in this state: ALARM, OK or INSUFFICIENT_DATA"
    ),
    model: str | None = typer.Option(
        None, "--model", help="only the alarms that watch this model's metrics"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every alarm of the stage's stack and its models, ALARM first: what it watches, its
    threshold, its state, why and since when."""
    wanted = state.upper() if state else None
    if wanted is not None and wanted not in STATES:
        fail("alarms", f"--state must be one of {', '.join(STATES)}, not {state!r}")
    with reporting("alarms"):
        environment = resolve(env)
        found = stack_alarms(environment.client("cloudwatch"), environment.stack)
    shown = select(found, state=wanted, model=model)
    emit(
        [a.as_dict() for a in shown],
        as_json,
        lambda console: render(console, environment.stack, shown),
    )


def register_alarms_command(app: typer.Typer) -> None:
    app.command("alarms")(alarms)
