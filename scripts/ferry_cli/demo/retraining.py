"""Chapters 5, 7 and 9: drift starts a retraining run; an approved canary promotes.

1. Labelled recent applications land under `training/credit-risk/` (where the training
   function looks for the newest data).
2. (the drift step sends shifted traffic; its alarm fires)
3. The drift alarm's EventBridge rule has started a run of the retrain state machine: the demo
   follows it, prints the validation report, and checks the promotion.
4. `ferry retrain --require-approval --canary-percent 50`: the run waits at the approval gate,
   `ferry approve` resumes it, half of the traffic goes to the candidate, the canary verdict
   promotes it.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

from rich.table import Table

from ferry_cli.demo.context import MODEL, DemoContext, Step, StepFailed, expect
from ferry_cli.views import gate_table

RUN_TIMEOUT_S = 240


def data_steps(ctx: DemoContext) -> list[Step]:
    """Chapter 5: labelled applications arrive where the training function looks."""
    return [("Labelled applications arrive for retraining", lambda: labelled_step(ctx))]


def steps(ctx: DemoContext) -> list[Step]:
    """Chapter 7: the run the drift alarm started."""
    return [("Drift starts retraining: validated and promoted", lambda: drift_retrain_step(ctx))]


def canary_steps(ctx: DemoContext) -> list[Step]:
    """Chapter 9: a run behind an approval gate and a canary."""
    return [("Retrain behind an approval gate and a canary", lambda: canary_step(ctx))]


def labelled_step(ctx: DemoContext, rows: int = 6000) -> str:
    """Labelled applications from the shifted population arrive for retraining."""
    from ferry_core.onboarding.builder import generate_credit_data

    buf = io.BytesIO()
    generate_credit_data(rows, seed=2026, shift=1.0).to_parquet(buf, index=False)
    key = f"training/{MODEL}/applications-2026-11.parquet"
    s3 = ctx.as_identity("data-scientist")["s3"]
    s3.put_object(Bucket=ctx.res.data_bucket, Key=key, Body=buf.getvalue())
    return f"{rows:,} labelled applications in s3://{ctx.res.data_bucket}/{key}"


def _machine(ctx: DemoContext) -> str:
    return ctx.platform.outputs["RetrainStateMachineArn"]


def follow(ctx: DemoContext, arn: str) -> dict[str, Any]:
    """Wait for the run to end and print the states it went through."""
    from ferry_core.retrain.runs import wait_run

    run = wait_run(ctx.as_identity("data-scientist")["stepfunctions"], arn, RUN_TIMEOUT_S)
    expect(run["status"] != "RUNNING", f"run {run['run_id']} still running")
    ctx.console.print("states: " + " → ".join(run["states"]))
    return run


def drift_run(ctx: DemoContext, model: str, timeout: float = 60) -> str:
    """The execution arn of the retraining run a drift alarm started for `model`."""
    sfn = ctx.as_identity("data-scientist")["stepfunctions"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ex in sfn.list_executions(stateMachineArn=_machine(ctx))["executions"]:
            started = json.loads(sfn.describe_execution(executionArn=ex["executionArn"])["input"])
            if started.get("trigger") == "drift" and started.get("model") == model:
                return ex["executionArn"]
        time.sleep(0.5)
    raise StepFailed(f"the drift alarm did not start a retraining run for {model}")


def _report_table(ctx: DemoContext, run_id: str, model: str = MODEL) -> Table:
    """The validation report the run stored beside its candidate."""
    key = f"candidates/{model}/{run_id}/validation.json"
    report = json.loads(
        ctx.as_identity("approver")["s3"]
        .get_object(Bucket=ctx.res.model_bucket, Key=key)["Body"]
        .read()
    )
    return gate_table(report, f"validation report (s3://…/{key})")


def drift_retrain_step(ctx: DemoContext) -> str:
    """Follow the run the drift alarm started, to its promotion."""
    done = follow(ctx, drift_run(ctx, MODEL))
    ctx.console.print(_report_table(ctx, done["run_id"]))
    outcome = done["outcome"]
    expect(outcome.get("status") == "promoted", f"the drift-started run ended {outcome}")
    # A warm scorer re-reads its stage pointers every second (ferry_core/registry/refresh.py).
    waited = time.monotonic()
    served = None
    while time.monotonic() - waited < 30 and served != outcome["version"]:
        status, card = ctx.http("GET", f"/v1/models/{MODEL}")
        served = card.get("version") if status == 200 else None
        time.sleep(0.25)
    expect(served == outcome["version"], f"the API still serves v{served}")
    ctx.state["retrained_version"] = outcome["version"]
    return (
        f"drift alarm → run {done['run_id'][:8]}… trained on the new data, passed every gate, "
        f"v{outcome['version']} registered and promoted (dev: no approval, no canary); the API "
        f"serves it {time.monotonic() - waited:.1f} s later (pointer cache)"
    )


def canary_step(ctx: DemoContext) -> str:
    """A manual run with an approval gate and a canary, approved from the command line."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records
    from ferry_core.registry.reader import RegistryReader
    from ferry_core.retrain.approval import ApprovalGate

    champion = ctx.state.get("retrained_version")
    rows = records(generate_credit_data(200, seed=7, shift=1.0), CREDIT_RISK_SCHEMA)
    served: dict[int, int] = {}
    failures: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            status, body = ctx.http(
                "POST", f"/v1/models/{MODEL}/predict", {"instances": [rows[i % len(rows)]]}
            )
            if status == 200:
                served[body["version"]] = served.get(body["version"], 0) + 1
            else:
                failures.append(status)
            i += 1
            time.sleep(0.02)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        out = ctx.ferry(
            "retrain",
            MODEL,
            "--params",
            '{"n_estimators": 120}',
            "--require-approval",
            "--approval-timeout",
            "300",
            "--canary-percent",
            "50",
            "--canary-seconds",
            "8",
            "--reason",
            "quarterly refresh",
            "--json",
            identity="data-scientist",
        )
        arn = json.loads(out)["execution_arn"]
        approver = ctx.as_identity("approver")["dynamodb"]
        gate = ApprovalGate(approver, ctx.res.registry_table)
        registry = RegistryReader(approver, ctx.res.registry_table, 0)
        version = None
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while version is None and time.monotonic() < deadline:
            pointer = registry.fresh_pointer(MODEL, "staging")
            staged = pointer.version if pointer else None
            if staged is not None and gate.pending(MODEL, staged):
                version = staged
            time.sleep(0.3)
        expect(version is not None, "the run never asked for an approval")
        ctx.console.print(f"v{version} is waiting for an approval; an operator approves it:")
        ctx.ferry(
            "approve",
            MODEL,
            str(version),
            "--reason",
            "validation report reviewed",
            identity="approver",
        )
        done = follow(ctx, arn)
    finally:
        stop.set()
        thread.join(timeout=30)
    outcome = done["outcome"]
    expect(outcome.get("status") == "promoted", f"the canary run ended {outcome}")
    expect(not failures, f"{len(failures)} request(s) failed during the canary: {failures[:5]}")
    expect(version in served, f"the canary never served v{version}: {served}")
    split = ", ".join(f"v{v}: {n}" for v, n in sorted(served.items()))
    return (
        f"approval gate → `ferry approve` → canary at 50 % ({split} requests, 0 failed) → "
        f"v{version} promoted over v{champion}"
    )
