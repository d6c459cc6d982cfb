"""Chapter 8: a second model, onboarded on the running platform without a redeploy.

The `tumour` classifier (scikit-learn's breast-cancer data; not credit-risk, other features)
comes with its owner's trainer file and lock (`ferry_cli/demo/owner_trainer/`). The data
scientist registers it with `ferry register --trainer --trainer-lock` through the governance
API; the registration starts its validation gate and the approver promotes it. The governance
function has put its own alarms; drifted traffic drives its drift alarm to ALARM, which starts
a retraining run for it, and that run fits the next candidate with the owner's trainer.
"""

from __future__ import annotations

from typing import Any

from ferry_cli.demo.context import DemoContext, Step, expect
from ferry_cli.demo.owner_trainer import LOCK, MODEL, TRAINER, laptop_files, register_args

ALARM_KINDS = ("latency-p99", "errors-4xx", "errors-5xx", "drift", "batch-failures")
DRIFTED_ROWS = 1000


def steps(ctx: DemoContext) -> list[Step]:
    return [
        (
            "A second model, onboarded without a redeploy: register it with its owner's trainer",
            lambda: register_step(ctx),
        ),
        (f"Gate {MODEL} and promote it to production", lambda: promote_step(ctx)),
        (f"{MODEL} has its own alarms, put at registration", lambda: alarms_step(ctx)),
        (f"Drifted {MODEL} traffic: its alarm starts its retraining", lambda: drift_step(ctx)),
        (f"{MODEL} is retrained by its owner's trainer", lambda: retrain_step(ctx)),
    ]


def _reader(ctx: DemoContext) -> Any:
    from ferry_core.registry.reader import RegistryReader

    return RegistryReader(ctx.as_identity("approver")["dynamodb"], ctx.res.registry_table, 0)


def _sha(path: Any) -> str:
    from ferry_core.store import sha256_hex

    return sha256_hex(path.read_bytes())


def register_step(ctx: DemoContext) -> str:
    """The owner's files → `ferry --as data-scientist register tumour … --trainer --trainer-lock`;
    the owner's labelled rows land where the training function looks."""
    where = ctx.state["state_dir"] / MODEL
    where.mkdir(parents=True, exist_ok=True)
    files = laptop_files(where)
    ctx.ferry(*register_args(files), "--reason", "a second model", identity="data-scientist")
    reader = _reader(ctx)
    version = max(v.version for v in reader.versions(MODEL))
    lineage = reader.card(MODEL, version).lineage
    expect(
        (lineage.trainer_sha256, lineage.trainer_lock_sha256) == (_sha(TRAINER), _sha(LOCK)),
        f"{MODEL} v{version} does not record the owner's trainer and lock: {lineage}",
    )
    key = f"training/{MODEL}/labelled.parquet"
    s3 = ctx.as_identity("data-scientist")["s3"]
    s3.put_object(Bucket=ctx.res.data_bucket, Key=key, Body=files["labelled.parquet"].read_bytes())
    ctx.state[MODEL] = version
    return (
        f"{MODEL} v{version} registered by the data scientist through the governance API, its "
        f"lineage naming trainer {lineage.trainer_sha256[:12]}… and its lock; no synth, no "
        f"deploy; its labelled rows in s3://…/{key}"
    )


def promote_step(ctx: DemoContext) -> str:
    """The gate the registration started records its result; the approver promotes."""
    from ferry_core.registry.policies import wait_for_gate

    version, reader = ctx.state[MODEL], _reader(ctx)
    gate = wait_for_gate(reader, MODEL, version, None, timeout=120)
    expect(gate is not None, f"{MODEL} v{version}: no gate result was recorded")
    expect(bool(gate.get("execution")), f"the gate result was not recorded by a run: {gate}")
    ctx.console.print(f"{MODEL} v{version} gated: {gate.get('summary', '')}")
    expect(gate.get("passed") is True, f"{MODEL} v{version} did not pass the validation gate")
    ctx.ferry("promote", MODEL, str(version), "--reason", "onboarded", identity="approver")
    expect(reader.fresh_pointer(MODEL, "production").version == version, "production pointer")
    status, body = ctx.http("GET", f"/v1/models/{MODEL}")
    expect(status == 200 and body.get("version") == version, f"model card: {status} {body}")
    return f"gate passed ({gate.get('summary', '')}); production → v{version}, served by the API"


def alarms_step(ctx: DemoContext) -> str:
    """The governance function put the model's five alarms on its own metrics."""
    from ferry_local.alarms import wait_for_model_alarms

    prefix = f"Ferry-local-model-{MODEL}-"
    cloudwatch = ctx.as_identity("data-scientist")["cloudwatch"]
    alarms = wait_for_model_alarms(cloudwatch, prefix, len(ALARM_KINDS))
    expect(sorted(alarms) == sorted(ALARM_KINDS), f"{MODEL}'s alarms: {sorted(alarms)}")
    for kind, alarm in alarms.items():
        metrics = [
            alarm,
            *(m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m),
        ]
        watched = any({"Name": "model", "Value": MODEL} in m.get("Dimensions", []) for m in metrics)
        expect(watched, f"{kind} does not watch {MODEL}'s metrics")
    ctx.console.print(", ".join(prefix + kind for kind in sorted(alarms)))
    return f"{len(alarms)} alarms named {prefix}…, each on {MODEL}'s own metrics"


def drift_step(ctx: DemoContext) -> str:
    """Scaled-up measurements → its drift alarm → a retraining run for this model."""
    from ferry_cli.demo.drift import drive_drift
    from ferry_cli.demo.owner_trainer import drifted
    from ferry_cli.demo.retraining import drift_run

    name = drive_drift(ctx, MODEL, drifted(DRIFTED_ROWS))
    arn = drift_run(ctx, MODEL)
    ctx.state[f"{MODEL}-run"] = arn
    return f"{DRIFTED_ROWS:,} drifted requests; {name} → ALARM → run {arn.rsplit(':', 1)[-1][:8]}…"


def retrain_step(ctx: DemoContext) -> str:
    """Follow the run; its candidate was fitted by the owner's file (by sha256)."""
    from ferry_cli.demo.retraining import follow
    from ferry_core.retrain.candidate import read_bundle

    done = follow(ctx, ctx.state[f"{MODEL}-run"])
    s3 = ctx.as_identity("approver")["s3"]
    bundle = read_bundle(s3, ctx.res.model_bucket, MODEL, done["run_id"])
    trainer = bundle.spec.trainer
    expect(
        trainer is not None and trainer.module_sha256 == _sha(TRAINER),
        f"the candidate was not fitted by the owner's trainer: {trainer}",
    )
    expect(
        bundle.spec.lineage.trainer_sha256 == _sha(TRAINER),
        f"the candidate's lineage does not name the owner's trainer: {bundle.spec.lineage}",
    )
    outcome = done["outcome"]
    expect(outcome.get("status") == "promoted", f"the {MODEL} run ended {outcome}")
    return (
        f"run {done['run_id'][:8]}… fitted the candidate with trainer "
        f"{trainer.module_sha256[:12]}… (its lineage says so); v{outcome['version']} promoted"
    )
