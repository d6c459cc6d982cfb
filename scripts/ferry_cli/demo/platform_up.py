"""Chapter 1: the local platform comes up, and a model is built where it is fitted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.table import Table

from ferry_cli.demo.context import DemoContext, Step, expect


def steps(ctx: DemoContext, rows: int, estimators: int) -> list[Step]:
    """Start the platform (the synthesized stack on moto), then build the credit-risk model."""
    from ferry_core.onboarding.builder import build_credit_risk
    from ferry_local.platform import LocalPlatform

    console = ctx.console

    def start() -> str:
        state_dir = Path(tempfile.mkdtemp(prefix="ferry-demo-"))
        ctx.state["state_dir"] = state_dir
        platform = LocalPlatform(
            state_dir=state_dir,
            restore=False,
            alarm_interval=1.0,
            alarm_time_scale=0.002,  # the drift alarm's hourly period becomes ~7 s
            progress=lambda msg: console.print(f"[dim]  {msg}[/]"),
        ).start()
        ctx.connect(platform)
        p = platform
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

    return [
        ("Start the local platform", start),
        ("Build a model where it is fitted", build),
    ]
