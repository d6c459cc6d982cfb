"""Governance function (the promotion path): validate the request, call the core, shape the answer.

It is the only function whose role may write stage pointers. Three kinds of input:
- a `GovernanceRequest` (validate, promote, rollback, archive, approve, reject) from an
  operator or a script: domain refusals come back as `{"ok": false, "error": code}`;
- a `WorkflowRequest` (lock, register_candidate, request_approval, canary, promote_candidate,
  reject_run, record_validation) from the retrain-and-promote and validate-version state
  machines (ferry_core/retrain/workflow.py):
  a domain refusal raises, so the task fails with the error's class name (`PromotionRefused`,
  …) and the state machine's Catch records the reason in the audit trail;
- a `Model Version Registered` registry event (EventBridge): the model's alarms are put again
  (ferry_core/monitoring/alarms.py), as they are after every registration here.
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
from ferry_core.monitoring.alarms import ModelAlarms, RegisteredEvent
from ferry_core.registry.governance import (
    Governance,
    GovernanceRequest,
    GovernanceSettings,
    connect,
    run_request,
)
from ferry_core.retrain.workflow import Workflow, WorkflowRequest, WorkflowSettings
from ferry_core.serving.canary import CanaryPolicy

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))


@cache
def monitors() -> ModelAlarms | None:
    """The model alarms put on registration (None when the stack configured none)."""
    s = GovernanceSettings.from_env()
    return s.model_monitors(boto3.client("cloudwatch"), s.env)


@cache
def governance() -> Governance:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = GovernanceSettings.from_env()
    return connect(
        monitors=monitors(),
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
        sfn=boto3.client("stepfunctions"),
        validation_state_machine=s.validation_state_machine,
    )


@cache
def workflow() -> Workflow:
    s = GovernanceSettings.from_env()
    return Workflow(
        governance(),
        dynamodb=boto3.client("dynamodb"),
        s3=boto3.client("s3"),
        cloudwatch=boto3.client("cloudwatch"),
        registry_table=s.registry_table,
        model_bucket=s.model_bucket,
        canary_policy=CanaryPolicy.model_validate(s.canary_policy),
        settings=WorkflowSettings(
            env=s.env,
            approval_required=s.approval_required,
            approval_timeout_seconds=s.approval_timeout_seconds,
            canary_percent=s.canary_percent,
            canary_seconds=s.canary_seconds,
        ),
    )


WORKFLOW_ACTIONS = frozenset(WorkflowRequest.model_fields["action"].annotation.__args__)


def _workflow_step(event: dict[str, Any]) -> dict[str, Any]:
    """A state machine step: invalid input or a refusal raises (the task fails, Catch records)."""
    request = WorkflowRequest.model_validate(event)
    metrics.add_dimension("action", request.action)
    result = workflow().run(request)
    metrics.add_metric(name="WorkflowSteps", unit=MetricUnit.Count, value=1)
    logger.info("workflow step", action=request.action, model=request.model, run=request.run_id)
    return result


def _registered(event: dict[str, Any]) -> dict[str, Any]:
    """A registry event (EventBridge): put the registered model's alarms (idempotent)."""
    model = RegisteredEvent.model_validate(event).detail.model
    alarms = monitors()
    names = alarms.ensure(model) if alarms is not None else []
    logger.info("model alarms put", model=model, alarms=names)
    return {"ok": True, "model": model, "alarms": names}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") in WORKFLOW_ACTIONS:
        return _workflow_step(event)
    if "detail-type" in event:
        return _registered(event)
    try:
        request = GovernanceRequest.model_validate(event)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        return {"ok": False, "error": "bad_request", "message": f"{where}: {first['msg']}"}
    metrics.add_dimension("action", request.action)
    try:
        outcome = run_request(governance(), request, request.actor)
    except errors.FerryError as exc:
        metrics.add_metric(name="GovernanceRefused", unit=MetricUnit.Count, value=1)
        logger.info(
            "refused", action=request.action, model=request.model, code=exc.code, error=exc.message
        )
        return {"ok": False, "error": exc.code, "message": exc.message}
    metrics.add_metric(name="GovernanceEvents", unit=MetricUnit.Count, value=1)
    logger.info("governance event", **outcome.as_dict())
    return {"ok": True, **outcome.as_dict()}
