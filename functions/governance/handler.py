"""Governance function (the promotion path): validate the request, call the core, shape the answer.

Step Functions (issue 6) invokes it with a `GovernanceRequest` as the task input; it is the
only function whose role may write stage pointers. Domain refusals come back as a result with
`ok: false` and the error code (the state machine branches on them); anything else raises, so
the task fails and its retry/catch policy applies.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from ferry_core import errors
from ferry_core.governance import (
    Governance,
    GovernanceRequest,
    GovernanceSettings,
    connect,
    run_request,
)

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))


@cache
def governance() -> Governance:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = GovernanceSettings.from_env()
    return connect(
        dynamodb=boto3.client("dynamodb"),
        s3=boto3.client("s3"),
        events=boto3.client("events"),
        registry_table=s.registry_table,
        audit_table=s.audit_table,
        anchor_bucket=s.anchor_bucket,
        cache_dir=s.model_cache_dir,
        env=s.env,
        event_bus=s.event_bus,
        approval_required=s.approval_required,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = GovernanceRequest.model_validate(event)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        return {"ok": False, "error": "bad_request", "message": f"{where}: {first['msg']}"}
    metrics.add_dimension("action", request.action)
    try:
        outcome = run_request(governance(), request)
    except errors.FerryError as exc:
        metrics.add_metric(name="GovernanceRefused", unit=MetricUnit.Count, value=1)
        logger.info(
            "refused", action=request.action, model=request.model, code=exc.code, error=exc.message
        )
        return {"ok": False, "error": exc.code, "message": exc.message}
    metrics.add_metric(name="GovernanceEvents", unit=MetricUnit.Count, value=1)
    logger.info("governance event", **outcome.as_dict())
    return {"ok": True, **outcome.as_dict()}
