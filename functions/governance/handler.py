"""Governance function (the only writer of the registry and audit tables): parse, call, shape.

Three kinds of input:
- an HTTP API event (payload 2.0) from a governance route (`POST /v1/governance/{action}`,
  always IAM-authorized): the body becomes a `GovernanceRequest`, the actor is the caller's
  verified identity from the event's authorizer context, and every refusal is an HTTP status
  from `STATUS` in the API's error shape;
- a `WorkflowRequest` (lock, register_candidate, request_approval, canary, promote_candidate,
  reject_run, record_validation) from the retrain-and-promote and validate-version state
  machines (ferry_core/retrain/workflow.py):
  a domain refusal raises, so the task fails with the error's class name (`PromotionRefused`,
  …) and the state machine's Catch records the reason in the audit trail;
- a `Model Version Registered` registry event (EventBridge): the model's alarms are put again
  (ferry_core/monitoring/alarms.py), as they are after every registration here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from ferry_core import errors
from ferry_core.governance.requests import STARTS, GovernanceRequest, Services, run_request
from ferry_core.monitoring.alarms import ModelAlarms, RegisteredEvent
from ferry_core.registry.governance import Governance, GovernanceSettings, connect
from ferry_core.retrain.approval import ApprovalGate
from ferry_core.retrain.workflow import Workflow, WorkflowRequest, WorkflowSettings
from ferry_core.serving.api import error_body, request_body, response
from ferry_core.serving.canary import CanaryPolicy

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))

# The one mapping from a refusal's code to its HTTP status; anything else is a 500 (a bug).
STATUS: dict[str, int] = {
    "bad_request": 400,
    "candidate_unavailable": 400,
    "forbidden": 403,
    "model_not_found": 404,
    "version_not_found": 404,
    "promotion_refused": 409,
    "registration_refused": 409,
    "conflict": 409,
    "model_unavailable": 503,
}
# The body fields of each route (the path names the action and, for stage moves, the stage).
# A retraining run's options are the other fields of its body.
BODY_FIELDS: dict[str, frozenset[str]] = {
    "register": frozenset({"model", "candidate", "reason"}),
    "validate": frozenset({"model", "version"}),
    "promote": frozenset({"model", "version", "expected_version", "reason"}),
    "rollback": frozenset({"model", "reason"}),
    "approve": frozenset({"model", "version", "reason", "details"}),
    "reject": frozenset({"model", "version", "reason", "details"}),
    "archive": frozenset({"model", "version", "reason"}),
    "retrain": frozenset({"model", "reason"}),
}
ACTIONS = frozenset(GovernanceRequest.model_fields["action"].annotation.__args__)
WORKFLOW_ACTIONS = frozenset(WorkflowRequest.model_fields["action"].annotation.__args__)


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
def services() -> Services:
    s = GovernanceSettings.from_env()
    return Services(
        s3=boto3.client("s3"),
        model_bucket=s.model_bucket,
        stepfunctions=boto3.client("stepfunctions"),
        approvals=ApprovalGate(boto3.client("dynamodb"), s.registry_table),
        retrain_machine=s.retrain_state_machine,
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


def verified_actor(event: dict[str, Any]) -> str:
    """The caller's identity as the API verified it: the IAM principal, or the JWT subject."""
    authorizer = event.get("requestContext", {}).get("authorizer") or {}
    actor = (authorizer.get("iam") or {}).get("userArn") or (
        (authorizer.get("jwt") or {}).get("claims") or {}
    ).get("sub")
    if not actor:
        raise errors.GovernanceForbidden("the request carries no verified caller identity")
    return str(actor)


def parse_request(event: dict[str, Any]) -> GovernanceRequest:
    """The route's action (and stage) from the path, the rest from the JSON body."""
    path = event.get("routeKey", "").partition(" ")[2]  # /v1/governance/ACTION[/{stage}]
    action = (path.split("/")[3:4] or [""])[0]
    raw = request_body(event.get("body"), bool(event.get("isBase64Encoded")))
    try:
        body = json.loads(raw or "{}")
    except ValueError as exc:
        raise errors.BadRequest("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise errors.BadRequest("the body must be a JSON object")
    if "actor" in body:
        raise errors.BadRequest("actor: not a field here; the actor is your signed identity")
    if action not in ACTIONS:
        raise errors.BadRequest(f"unknown action {action!r}")
    fields = {k: v for k, v in body.items() if k in BODY_FIELDS[action]}
    extra = sorted(set(body) - set(fields))
    if action == "retrain":
        fields["run"] = {k: body[k] for k in extra}
    elif extra:
        raise errors.BadRequest(f"{', '.join(extra)}: not a field of {action}")
    stage = (event.get("pathParameters") or {}).get("stage")
    try:
        return GovernanceRequest.model_validate(
            {**fields, "action": action, **({"stage": stage} if stage else {})}
        )
    except ValidationError as exc:
        raise errors.BadRequest(errors.validation_message(exc)) from exc


def _http(event: dict[str, Any]) -> dict[str, Any]:
    """A governance route: 200 with the outcome (202 for a started run), or the refusal."""
    try:
        actor = verified_actor(event)
        request = parse_request(event)
        metrics.add_dimension("action", request.action)
        result = run_request(governance(), request, actor, services())
    except errors.FerryError as exc:
        if exc.code not in STATUS:
            raise
        metrics.add_metric(name="GovernanceRefused", unit=MetricUnit.Count, value=1)
        logger.info("refused", code=exc.code, error=exc.message)
        return response(STATUS[exc.code], error_body(exc))
    metrics.add_metric(name="GovernanceEvents", unit=MetricUnit.Count, value=1)
    body = {"ok": True, **result.as_dict()}
    logger.info("governance event", action=request.action, actor=actor, **body)
    return response(202 if request.action in STARTS else 200, body)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "routeKey" in event and "requestContext" in event:
        return _http(event)
    if "detail-type" in event:
        return _registered(event)
    return _workflow_step(event)
