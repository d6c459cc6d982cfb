"""Chapter 6: shifted traffic is captured, the drift report says so, and its alarm fires."""

from __future__ import annotations

import json
import time
from typing import Any

from ferry_cli.demo.context import MODEL, DemoContext, Step, expect


def steps(ctx: DemoContext) -> list[Step]:
    return [("Send drifted traffic; the drift report and its alarm", lambda: drift_step(ctx))]


def drift_step(ctx: DemoContext, rows: int = 1500) -> str:
    """Shifted applications over HTTP → captured → the drift function → report and alarm."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records

    shifted = records(generate_credit_data(rows, seed=123, shift=1.0), CREDIT_RISK_SCHEMA)
    name = drive_drift(ctx, MODEL, shifted)
    return (
        f"{rows:,} shifted applications captured; drift report says drift; alarm "
        f"{name} went to ALARM (its EventBridge rule starts the retraining workflow)"
    )


def drive_drift(ctx: DemoContext, model: str, instances: list[dict[str, Any]]) -> str:
    """Score `instances` over HTTP, wait for their capture, run the drift check on `model`,
    show `ferry drift`, and wait for the model's drift alarm to reach ALARM; its name."""
    from ferry_local.alarms import wait_for_alarm_state

    for start in range(0, len(instances), 500):
        status, body = ctx.http(
            "POST", f"/v1/models/{model}/predict", {"instances": instances[start : start + 500]}
        )
        expect(status == 200, f"scoring drifted traffic for {model}: {status} {body}")
    scientist = ctx.as_identity("data-scientist")
    s3, bucket = scientist["s3"], ctx.res.data_bucket
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the capture buffer flushes every 500 rows, off-request
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"capture/rows/{model}/")
        if listed.get("KeyCount", 0) >= len(instances) // 500:
            break
        time.sleep(0.5)
    resp = ctx.aws["lambda"].invoke(  # the admin runs the drift check now, not at its schedule
        FunctionName=ctx.platform.outputs["DriftFunctionName"],
        Payload=json.dumps({"models": [model]}),
    )
    expect("FunctionError" not in resp, f"drift function failed: {resp['Payload'].read()[:300]}")
    ctx.ferry("drift", model, identity="data-scientist")
    cloudwatch = scientist["cloudwatch"]
    # Put by the governance function when the model was registered: no redeploy, no listing.
    name = f"Ferry-local-model-{model}-drift"
    found = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    expect(len(found) == 1, f"expected the drift alarm {name} of {model}, found none")
    alarm = wait_for_alarm_state(cloudwatch, name, "ALARM", timeout=90)
    ctx.console.print(f"[red]ALARM[/] {name}: {alarm.get('StateReason', '')[:160]}")
    return name
