"""Drift function: run on a schedule (EventBridge), one drift report per live model.

For every model with a production version (or the `models` an invocation names), the core's
`run_drift` reads the capture window, computes PSI/KS against the version's baseline and
writes the report beside the capture; this module only publishes the report's figures as
EMF metrics (`DriftMaxPSI` per model is what the drift alarm watches) and logs a summary.
A model that fails is counted (`DriftFailures`, alarmed on) and the others still run.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from ferry_core.monitoring.drift import DriftReport, DriftThresholds, live_models, run_drift
from ferry_core.registry.reader import RegistryReader
from ferry_core.settings import DriftSettings

logger = Logger()
metrics = Metrics()

UNITS = {"DriftRows": MetricUnit.Count}


@cache
def runtime() -> tuple[DriftSettings, Any, RegistryReader]:
    """Built on first use, once per container; tests call cache_clear()."""
    s = DriftSettings.from_env()
    return s, boto3.client("s3"), RegistryReader(boto3.client("dynamodb"), s.registry_table, 0)


def publish(report: DriftReport) -> None:
    """One EMF line per series: per-feature metrics carry a `feature` dimension."""
    for name, value, dims in report.metric_points():
        unit = UNITS.get(name, MetricUnit.NoUnit)
        with single_metric(name=name, unit=unit, value=value, namespace=metrics.namespace) as m:
            for k, v in dims.items():
                m.add_dimension(k, v)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s, s3, registry = runtime()
    thresholds = DriftThresholds(s.psi_warn, s.psi_alarm, s.min_samples)
    results: list[dict[str, Any]] = []
    failures = 0
    for model in (event or {}).get("models") or live_models(registry):
        try:
            report = run_drift(
                s3,
                s.data_bucket,
                registry,
                model,
                window_hours=s.window_hours,
                thresholds=thresholds,
                max_rows=s.max_rows,
            )
        except Exception:  # one model's failure must not blind the others
            failures += 1
            logger.exception("drift run failed", model=model)
            results.append({"model": model, "verdict": "failed"})
            continue
        publish(report)
        logger.info("drift report", **report.summary())
        results.append(report.summary())
    metrics.add_metric(name="DriftFailures", unit=MetricUnit.Count, value=failures)
    return {"reports": results}
