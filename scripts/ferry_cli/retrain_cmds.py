"""`ferry retrain MODEL`: start the retrain-and-promote workflow, optionally wait for it.

The run is started by the governance API's retrain route (signed as the caller, who becomes
the run's `requested_by`): an execution of the stack's state machine, the same as one started
by the drift alarm or the schedule, with the same lock, gates, approval and canary. `--wait`
follows it state by state (reading the execution directly) and ends with its outcome and
validation summary; the exit status is non-zero unless the run promoted its candidate.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ferry_cli.shell import ENV_OPTION, JSON_OPTION, emit, fail, reporting, session
from ferry_core.retrain.runs import wait_run


def retrain(
    model: str = typer.Argument(..., help="the model to retrain"),
    data: str | None = typer.Option(
        None, help="labelled data (s3:// CSV/Parquet); default: newest under training/MODEL/"
    ),
    params: str = typer.Option(
        "{}", help="trainer parameters as JSON, e.g. '{\"n_estimators\": 200}'"
    ),
    entry_point: str | None = typer.Option(
        None, help="a trainer of the training image, module:attribute (default: the model's own)"
    ),
    breaking_change: bool = typer.Option(False, help="accept an incompatible input schema"),
    require_approval: bool = typer.Option(
        False, help="ask for an approval even where not required"
    ),
    approval_timeout: int | None = typer.Option(
        None, help="seconds (only shortens the environment's)"
    ),
    canary_percent: float | None = typer.Option(
        None, help="share of traffic for the canary; 0 = switch"
    ),
    canary_seconds: int | None = typer.Option(None, help="how long the canary runs"),
    reason: str = typer.Option("", help="why: recorded with the run"),
    wait: bool = typer.Option(False, "--wait", help="follow the run until it ends"),
    timeout: float = typer.Option(3600, help="--wait gives up after this many seconds"),
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Retrain MODEL: train, validate, register, approve (where required), canary, promote."""
    try:
        parsed = json.loads(params)
    except ValueError as exc:
        fail("retrain", f"--params is not JSON: {exc}")
    run_input: dict[str, Any] = {"model": model, "params": parsed, "reason": reason}
    optional = {
        "training_data": data,
        "entry_point": entry_point,
        "approval_timeout_seconds": approval_timeout,
        "canary_percent": canary_percent,
        "canary_seconds": canary_seconds,
    }
    run_input |= {k: v for k, v in optional.items() if v is not None}
    if breaking_change:
        run_input["breaking_change"] = True
    if require_approval:
        run_input["require_approval"] = True
    console = Console(stderr=as_json)
    with reporting("retrain"), session(env) as p:
        started = p.api.call("retrain", run_input)
        arn, run_id = started["execution"], started["run_id"]
        if not wait:
            started = f"started retraining run [bold]{run_id}[/] of {model} (follow it with --wait)"
            emit({"run_id": run_id, "execution_arn": arn}, as_json, lambda c: c.print(started))
            return
        console.print(f"retraining run [bold]{run_id}[/] of {model}:")
        sfn = p.env.client("stepfunctions")
        result = wait_run(sfn, arn, timeout, lambda s: console.print(f"  → {s}"))
        emit(result, as_json, lambda c: c.print(_outcome_table(result)))
        status = result["outcome"].get("status", result["status"])
        if status != "promoted":
            why = result["outcome"].get("reason") or ""
            fail("retrain", f"run {run_id} ended {status}: {why}".strip())


def _outcome_table(result: dict[str, Any]) -> Table:
    t = Table(title=f"run {result['run_id']}", show_header=False)
    o = result["outcome"]
    for key in ("status", "model", "version", "trigger", "reason"):
        if o.get(key) is not None:
            t.add_row(key, str(o[key]))
    t.add_row("execution", result["status"])
    return t


def register_retrain_commands(app: typer.Typer) -> None:
    app.command("retrain")(retrain)
