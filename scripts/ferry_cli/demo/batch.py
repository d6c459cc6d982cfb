"""Chapter 4: a batch upload with malformed rows is scored, every row accounted for."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.table import Table

from ferry_cli.demo.context import MODEL, DemoContext, Step, expect


def steps(ctx: DemoContext) -> list[Step]:
    return [("Score a batch upload with malformed rows", lambda: batch_step(ctx))]


def batch_step(ctx: DemoContext, rows: int = 2000, timeout: float = 180.0) -> str:
    """Upload a CSV to the data bucket and wait for its manifest: S3 → SQS → batch function."""
    from ferry_core.batch.sample_files import applications, encode

    s3, bucket = ctx.as_identity("data-scientist")["s3"], ctx.res.data_bucket
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
