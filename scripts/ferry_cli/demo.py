"""`ferry demo`: the platform's main job, end to end, on this machine.

Start the local platform (the synthesized stack on moto, the real handlers), build a
credit-risk model, register and govern it, score over the HTTP API, refuse bad requests,
and verify the audit trail from the command line. Later issues add their steps (batch,
drift, retraining) through `EXTRA_STEPS`. Every step checks what it claims; the demo exits
non-zero if any did not hold.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.table import Table

MODEL = "credit-risk"

# (title, factory(ctx) -> step) added by other capabilities (batch, drift, retraining).
EXTRA_STEPS: list[tuple[str, Callable[[DemoContext], Callable[[], str]]]] = []


class StepFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


@dataclass
class DemoContext:
    """What every step can use: the console, the running platform and what earlier steps made."""

    console: Console
    platform: Any = None
    aws: dict[str, Any] = field(default_factory=dict)
    res: Any = None
    built: Any = None
    state: dict[str, Any] = field(default_factory=dict)

    def http(
        self, method: str, path: str, body: Any = None, query: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """One request to the local HTTP API, as any client would send it."""
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        url = self.platform.api_url.rstrip("/") + path + (f"?{query}" if query else "")
        req = urllib.request.Request(
            url, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@dataclass
class Demo:
    console: Console
    results: list[tuple[str, bool, str, float]] = field(default_factory=list)

    def step(self, title: str, fn: Callable[[], str]) -> None:
        self.console.rule(f"[bold]{len(self.results) + 1}. {title}")
        started = time.perf_counter()
        try:
            outcome, ok = fn(), True
        except StepFailed as exc:
            outcome, ok = str(exc), False
        except Exception as exc:  # a step that crashed did not hold: say why, stop the story
            outcome, ok = f"{type(exc).__name__}: {exc}", False
        seconds = time.perf_counter() - started
        mark = "[green]✔" if ok else "[red]✘"
        self.console.print(f"{mark} {outcome}[/] [dim]({seconds:.1f}s)[/]")
        self.results.append((title, ok, outcome, seconds))
        if not ok:
            raise StepFailed(outcome)


def _clients(endpoint: str, region: str) -> dict[str, Any]:
    import boto3

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    return {
        name: session.client(name, endpoint_url=endpoint)
        for name in ("s3", "dynamodb", "events", "sqs", "stepfunctions", "cloudwatch")
    }


def _resources(outputs: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(
        model_bucket=outputs["ModelBucketName"],
        data_bucket=outputs["DataBucketName"],
        registry_table=outputs["RegistryTableName"],
        audit_table=outputs["AuditTableName"],
        anchor_bucket=outputs["AuditAnchorBucketName"],
    )


def core_steps(ctx: DemoContext, rows: int, estimators: int) -> list[tuple[str, Callable[[], str]]]:
    """Start the platform, build, govern, score and refuse: the foundation of the story."""
    from ferry_cli.governance_cmds import demo_steps
    from ferry_core.retrain.builder import build_credit_risk, generate_credit_data, records
    from ferry_local.platform import LocalPlatform

    console = ctx.console

    def start() -> str:
        state_dir = Path(tempfile.mkdtemp(prefix="ferry-demo-"))
        ctx.state["state_dir"] = state_dir
        ctx.platform = LocalPlatform(
            state_dir=state_dir,
            restore=False,
            alarm_interval=1.0,
            alarm_time_scale=0.002,  # the drift alarm's hourly period becomes ~7 s
            progress=lambda msg: console.print(f"[dim]  {msg}[/]"),
        ).start()
        p = ctx.platform
        ctx.aws = _clients(p.aws_endpoint_url, p.region)
        ctx.res = _resources(p.outputs)
        os.environ["FERRY_LOCAL_CONFIG"] = str(p.local_json)  # `ferry … --env local` finds it
        t = Table("endpoint", "value", title="local platform (stack Ferry-local)")
        t.add_row("HTTP API", p.api_url)
        t.add_row("AWS endpoint (moto)", p.aws_endpoint_url)
        for key in sorted(p.outputs):
            t.add_row(key, str(p.outputs[key]))
        console.print(t)
        status, body = ctx.http("GET", "/health")
        expect(status == 200 and body["status"] == "ok", f"health: {status} {body}")
        return f"stack up with {len(p.outputs)} outputs; endpoints in {p.local_json}"

    def build() -> str:
        built = build_credit_risk(rows=rows, n_estimators=estimators)
        ctx.built = built
        p, m = built.parity, built.metrics["overall"]
        t = Table("check", "value", title="candidate: credit-risk (GradientBoosting → ONNX)")
        t.add_row("features", ", ".join(f.name for f in built.schema.features))
        t.add_row("ONNX size", f"{len(built.onnx_bytes):,} bytes")
        t.add_row("max |ONNX − sklearn|", f"{p['max_abs_diff']:.2e} on {p['rows']:,} rows")
        t.add_row("AUC / accuracy", f"{m['auc']:.3f} / {m['accuracy']:.3f}")
        for band, sm in built.metrics["segments"]["age_band"].items():
            t.add_row(f"AUC age {band}", f"{sm.get('auc', float('nan')):.3f} ({sm['rows']} rows)")
        console.print(t)
        expect(p["passed"], f"parity failed: {p['max_abs_diff']:.2e}")
        return "model trained, converted, parity within tolerance"

    def served_version() -> int:
        status, card = ctx.http("GET", f"/v1/models/{MODEL}")
        expect(status == 200, f"model card: {status} {card}")
        return int(card["version"])

    def score() -> str:
        rows_ = records(generate_credit_data(5, seed=99), ctx.built.schema)
        rows_[0]["debt_to_income"] = 3.7  # above the schema's 2.0: clipped with a warning
        status, body = ctx.http("POST", f"/v1/models/{MODEL}/predict", {"instances": rows_})
        expect(status == 200, f"expected 200, got {status}: {body}")
        t = Table(
            "#", "age", "income", "purpose", "dti", "score", "label", "warnings",
            title=f"POST /v1/models/{MODEL}/predict → 200 (v{body['version']})",
        )  # fmt: skip
        for i, (r, p) in enumerate(zip(rows_, body["predictions"], strict=True)):
            t.add_row(
                str(i), str(r["age"]), str(r["annual_income"]), str(r["purpose"]),
                str(r["debt_to_income"]), f"{p['score']:.4f}", str(p["label"]),
                "; ".join(w["message"] for w in p["warnings"]),
            )  # fmt: skip
        console.print(t)
        expect(len(body["predictions"]) == 5, "missing predictions")
        expect(bool(body["predictions"][0]["warnings"]), "the clipped value has no warning")
        return f"5 applications scored over HTTP by v{body['version']}, one clipped with a warning"

    def refuse() -> str:
        good = records(generate_credit_data(1, seed=5), ctx.built.schema)[0]
        predict = f"/v1/models/{MODEL}/predict"
        cases = [
            ("wrong type, unknown category, unknown field", "POST", predict,
             {"instances": [{**good, "age": "forty", "purpose": "yacht", "colour": "red"}]},
             "", 422),
            ("out of range and missing", "POST", predict,
             {"instances": [{k: v for k, v in {**good, "age": 130}.items() if k != "employment"}]},
             "", 422),
            ("not JSON", "POST", predict, "{oops", "", 400),
            ("1,001 instances", "POST", predict, {"instances": [good] * 1001}, "", 413),
            ("unknown model", "POST", "/v1/models/no-such-model/predict",
             {"instances": [good]}, "", 404),
            ("unknown version", "GET", f"/v1/models/{MODEL}", None, "version=99", 404),
        ]  # fmt: skip
        t = Table("request", "status", "error", "details", title="bad requests get clear errors")
        for label, method, path, body, query, want in cases:
            status, resp = ctx.http(method, path, body, query)
            details = "\n".join(
                f"[{d.get('instance')}] {d['field']}: {d['problem']} — {d['message']}"
                for d in resp.get("details", [])
            )
            t.add_row(label, str(status), f"{resp.get('error')}: {resp.get('message')}", details)
            expect(
                status == want and set(resp) == {"error", "message", "details"},
                f"{label}: expected {want}, got {status} {resp}",
            )
        console.print(t)
        return f"{len(cases)} bad requests refused over HTTP with the documented error shape"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("Start the local platform", start),
        ("Build a model where it is fitted", build),
    ]

    def governance(index: int) -> Callable[[], str]:
        def run() -> str:
            if "governance" not in ctx.state:
                ctx.state["governance"] = demo_steps(
                    console, ctx.aws, ctx.res, ctx.built, expect, served_version, MODEL
                )
            return ctx.state["governance"][index][1]()

        return run

    titles = [
        "Register two versions with lineage and audit",
        "Promote v1, then v2, to production",
        "Refuse a version without validation results",
        "Roll production back to the previous version",
    ]
    steps += [(title, governance(i)) for i, title in enumerate(titles)]
    steps += [
        ("Score applications over the HTTP API", score),
        ("Refuse bad requests", refuse),
        ("Score a batch upload with malformed rows", lambda: batch_step(ctx)),
    ]
    from ferry_cli.retrain_demo import canary_step, drift_retrain_step, labelled_step

    steps += [
        ("Labelled applications arrive for retraining", lambda: labelled_step(ctx)),
        ("Send drifted traffic; the drift report and its alarm", lambda: drift_step(ctx)),
        ("Drift starts retraining: validated and promoted", lambda: drift_retrain_step(ctx)),
        ("Retrain behind an approval gate and a canary", lambda: canary_step(ctx)),
    ]
    return steps


def drift_step(ctx: DemoContext, rows: int = 1500) -> str:
    """Shifted applications over HTTP → captured → the drift function → report and alarm."""
    import boto3
    from typer.testing import CliRunner

    from ferry_cli.main import app
    from ferry_core.retrain.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records
    from ferry_local.alarms import wait_for_alarm_state

    shifted = records(generate_credit_data(rows, seed=123, shift=1.0), CREDIT_RISK_SCHEMA)
    for start in range(0, rows, 500):
        status, body = ctx.http(
            "POST", f"/v1/models/{MODEL}/predict", {"instances": shifted[start : start + 500]}
        )
        expect(status == 200, f"scoring drifted traffic: {status} {body}")
    s3, bucket = ctx.aws["s3"], ctx.res.data_bucket
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the capture buffer flushes every 500 rows, off-request
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"capture/rows/{MODEL}/")
        if listed.get("KeyCount", 0) >= rows // 500:
            break
        time.sleep(0.5)
    p = ctx.platform
    lam = boto3.client(
        "lambda",
        endpoint_url=p.aws_endpoint_url,
        region_name=p.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    resp = lam.invoke(
        FunctionName=p.outputs["DriftFunctionName"], Payload=json.dumps({"models": [MODEL]})
    )
    expect("FunctionError" not in resp, f"drift function failed: {resp['Payload'].read()[:300]}")
    result = CliRunner().invoke(app, ["drift", MODEL, "--env", "local"])
    ctx.console.print(result.output.rstrip())
    expect(result.exit_code == 0, f"`ferry drift {MODEL}` exited {result.exit_code}")
    cloudwatch = ctx.aws["cloudwatch"]
    names = [
        a["AlarmName"]
        for page in cloudwatch.get_paginator("describe_alarms").paginate()
        for a in page["MetricAlarms"]
        if "Drift" in a["AlarmName"]
        and MODEL.replace("-", "") in a["AlarmName"].lower().replace("-", "")
    ]
    expect(len(names) == 1, f"expected one drift alarm for {MODEL}, found {names}")
    alarm = wait_for_alarm_state(cloudwatch, names[0], "ALARM", timeout=90)
    ctx.console.print(f"[red]ALARM[/] {names[0]}: {alarm.get('StateReason', '')[:160]}")
    return (
        f"{rows:,} shifted applications captured; drift report says drift; alarm "
        f"{names[0]} went to ALARM (its EventBridge rule starts the retraining workflow)"
    )


def batch_step(ctx: DemoContext, rows: int = 2000, timeout: float = 180.0) -> str:
    """Upload a CSV to the data bucket and wait for its manifest: S3 → SQS → batch function."""
    from ferry_cli.batch_files import applications, encode

    s3, bucket = ctx.aws["s3"], ctx.res.data_bucket
    key = f"batch/incoming/{MODEL}/demo/applications.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=encode(applications(rows, "csv"), "csv"))
    manifest_key = f"batch/manifests/{MODEL}/demo/applications.json"
    deadline = time.monotonic() + timeout
    manifest: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
            manifest = json.loads(body)
            if manifest.get("status") not in (None, "in_progress"):
                break
        except s3.exceptions.NoSuchKey:
            pass
        time.sleep(0.5)
    expect(bool(manifest), f"no manifest at s3://{bucket}/{manifest_key} after {timeout:.0f} s")
    t = Table("manifest field", "value", title=f"s3://{bucket}/{manifest_key}")
    model = manifest.get("model") or {}
    t.add_row("model", f"{model.get('name')} v{model.get('version')}")
    for field_name in ("status", "rows_in", "rows_scored", "rows_rejected"):
        t.add_row(field_name, str(manifest.get(field_name)))
    for name, out_key in (manifest.get("outputs") or {}).items():
        t.add_row(f"output: {name}", out_key)
    ctx.console.print(t)
    outputs = manifest.get("outputs") or {}
    if outputs.get("rejected"):
        lines = s3.get_object(Bucket=bucket, Key=outputs["rejected"])["Body"].read().splitlines()
        r = Table("row", "problems", title=f"first rejected rows (of {len(lines)})")
        for line in lines[:5]:
            rec = json.loads(line)
            problems = "; ".join(
                f"{p.get('field')}: {p.get('problem')}" for p in rec.get("problems", [])
            )
            r.add_row(str(rec.get("row")), problems)
        ctx.console.print(r)
    expect(
        manifest.get("status") == "succeeded",
        f"batch status {manifest.get('status')}: {manifest.get('reason')}",
    )
    rows_in, scored, rejected = (
        manifest.get("rows_in"),
        manifest.get("rows_scored"),
        manifest.get("rows_rejected"),
    )
    expect(rows_in == rows and scored + rejected == rows_in, f"accounting: {manifest}")
    expect(rejected > 0, "the malformed rows were not rejected")
    return f"{rows_in:,} rows in = {scored:,} scored + {rejected:,} rejected (each with its reason)"


def closing_steps(ctx: DemoContext) -> list[tuple[str, Callable[[], str]]]:
    """The audit trail, checked by the library and from the command line."""

    def verify() -> str:
        return ctx.state["governance"][4][1]()

    def verify_cli() -> str:
        from typer.testing import CliRunner

        from ferry_cli.main import app

        result = CliRunner().invoke(app, ["audit", "verify", "--env", "local"])
        ctx.console.print(result.output.rstrip())
        expect(result.exit_code == 0, f"`ferry audit verify --env local` exited {result.exit_code}")
        return "`ferry audit verify --env local`: every model's chain intact"

    return [
        ("Verify the audit trail (and catch a forged entry)", verify),
        ("Verify every chain from the command line", verify_cli),
    ]


def run_demo(console: Console | None = None, rows: int = 6000, estimators: int = 100) -> bool:
    """Run every step; True when all held."""
    console = console or Console()
    ctx = DemoContext(console)
    demo = Demo(console)
    steps = core_steps(ctx, rows, estimators)
    steps += [(title, factory(ctx)) for title, factory in EXTRA_STEPS]
    steps += closing_steps(ctx)
    started = time.perf_counter()
    try:
        for title, fn in steps:
            demo.step(title, fn)
    except StepFailed:
        pass
    finally:
        if ctx.platform is not None:
            ctx.platform.stop(snapshot=False)
            console.print(f"[dim]function logs: {ctx.state['state_dir'] / 'logs'}[/]")
    summary = Table("step", "result", "seconds", title="ferry demo — summary")
    for title, ok, _outcome, seconds in demo.results:
        summary.add_row(title, "[green]ok" if ok else "[red]FAILED", f"{seconds:.1f}")
    console.print(summary)
    total = time.perf_counter() - started
    ok = all(ok for _, ok, _, _ in demo.results) and len(demo.results) == len(steps)
    verdict = "[green]every step held" if ok else "[red]a step did not hold"
    console.print(f"{verdict}[/] ({len(demo.results)}/{len(steps)} steps, {total:.0f} s)")
    return ok
