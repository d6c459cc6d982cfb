"""Helpers of the workflow tests: run a step, write a candidate, publish canary metrics."""

from __future__ import annotations

from typing import Any

from ferry_core.card import Lineage
from ferry_core.registry.governance import Governance
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import Bundle, write_bundle, write_report
from ferry_core.retrain.workflow import Workflow, WorkflowRequest

MODEL = "credit-risk"
LOCAL_ROLE = "arn:aws:iam::123456789012:role/ferry-local"


def step(wf: Workflow, action: str, run_id: str = "run-1", **fields: Any) -> dict[str, Any]:
    return wf.run(WorkflowRequest(action=action, model=MODEL, run_id=run_id, **fields))


def candidate(aws, boto, built, run_id: str, report: dict[str, Any] | None = None) -> Bundle:
    """A candidate bundle written as training writes it, with a validation report beside it
    (a minimal passing one unless `report` says otherwise; None-valued → no report)."""
    bundle = write_bundle(
        boto["s3"],
        aws.model_bucket,
        built,
        MODEL,
        run_id,
        Lineage(training_data_uri=f"s3://{aws.data_bucket}/training/{MODEL}/{run_id}.parquet"),
        training={"rows": 1600},
    )
    if report is None:  # gated, as the validation function gates, against production now
        live = RegistryReader(boto["dynamodb"], aws.registry_table, 0).fresh_pointer(
            MODEL, "production"
        )
        report = {
            "passed": True,
            "source": "validation",
            "champion_version": live.version if live else None,
            "checks": [{"name": "parity", "passed": True, "message": "ok"}],
        }
    if report:
        write_report(boto["s3"], bundle, report)
    return bundle


def registered_candidate(wf: Workflow, aws, boto, built, run_id: str = "run-1") -> int:
    """A candidate registered (and staged) by the workflow; returns its version."""
    candidate(aws, boto, built, run_id)
    return step(wf, "register_candidate", run_id)["version"]


def audit(gov: Governance) -> list[tuple[str, int | None]]:
    return [(e.event, e.version) for e in gov.audit.entries(MODEL)]


def put_canary_metrics(
    cloudwatch: Any, variant: str, requests: int, errors: int, latency_ms: float
) -> None:
    """What the scoring function publishes per variant while a canary runs."""
    dims = [
        {"Name": "model", "Value": MODEL},
        {"Name": "variant", "Value": variant},
        {"Name": "service", "Value": "ferry-scoring"},
    ]
    cloudwatch.put_metric_data(
        Namespace="Ferry",
        MetricData=[
            {
                "MetricName": "CanaryRequests",
                "Dimensions": dims,
                "Value": requests,
                "Unit": "Count",
            },
            {"MetricName": "CanaryErrors5xx", "Dimensions": dims, "Value": errors, "Unit": "Count"},
            {
                "MetricName": "CanaryLatency",
                "Dimensions": dims,
                "Value": latency_ms,
                "Unit": "Milliseconds",
            },
        ],
    )
