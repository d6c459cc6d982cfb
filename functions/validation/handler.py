"""Validation function (the gate): parse the task input, run the gate, shape the result.

Step Functions invokes it with `{"model", "run_id", "breaking_change"}` after training
wrote `candidates/{model}/{run_id}/` (the retrain workflow), or with `{"model", "version"}` for
a registered version (the `ValidateVersion` machine, which records the result on the version).
A completed gate run returns its result, passed or not (the Decide state branches on `passed`;
a candidate's report is stored beside its bundle either way).
Anything else raises so the task fails and the state machine's Catch applies: a malformed
input is the caller's bug (pydantic `ValidationError`), a missing or corrupt bundle is
`CandidateUnavailable`, a champion failing its integrity check is `ModelUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ferry_core.errors import FerryError
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.gate.policy import ValidationRequest, ValidationSettings
from ferry_core.retrain.gate.registered import validate_version
from ferry_core.retrain.gate.report import GateReport
from ferry_core.retrain.gate.validate import validate_candidate
from ferry_core.store import ModelStore

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))


@dataclass(frozen=True)
class Runtime:
    settings: ValidationSettings
    s3: Any
    registry: RegistryReader
    store: ModelStore


@cache
def runtime() -> Runtime:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = ValidationSettings.from_env()
    s3 = boto3.client("s3")
    # No pointer cache: the champion is whoever is in production when this candidate is gated.
    registry = RegistryReader(boto3.client("dynamodb"), s.registry_table, pointer_ttl_seconds=0)
    return Runtime(s, s3, registry, ModelStore(s3, s.model_cache_dir))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ValidationRequest.model_validate(event)
    rt = runtime()
    report_uri: str | None = None
    try:
        if request.version is not None:
            report: GateReport = validate_version(
                rt.s3, rt.registry, rt.store, request.model, request.version, rt.settings.policy
            )
        else:
            run = validate_candidate(
                rt.s3, rt.settings.model_bucket, rt.registry, rt.store, request, rt.settings.policy
            )
            report, report_uri = run.report, run.report_uri
    except FerryError as exc:
        logger.error("validation could not run", **request.model_dump(), code=exc.code)
        metrics.add_metric(name="ValidationErrors", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(
        name="CandidatesPassed" if report.passed else "CandidatesRejected",
        unit=MetricUnit.Count,
        value=1,
    )
    logger.info(
        "candidate gated",
        **request.model_dump(),
        passed=report.passed,
        failed_checks=report.failed_checks,
        champion_version=report.champion_version,
        report_uri=report_uri,
    )
    return {
        "passed": report.passed,
        "summary": report.summary(),
        "report_uri": report_uri,
        "champion_version": report.champion_version,
        "failed_checks": report.failed_checks,
        "report": report.as_dict(),
    }
