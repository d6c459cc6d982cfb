"""The governance function's contract: one request per governance action, and its dispatch.

Transport-free: the HTTP API's governance routes become a `GovernanceRequest` in the handler,
which passes the caller's verified identity as `actor` (never a field of the request, so no
caller can name someone else). Actions beyond the registry itself (register a candidate
bundle, start a retraining run, resume a run waiting on a decision) reach the model bucket and
Step Functions through `Services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_core.errors import BadRequest, PromotionRefused, validation_message
from ferry_core.names import ModelName
from ferry_core.registry.governance import Governance
from ferry_core.retrain.approval import ApprovalGate, decide
from ferry_core.retrain.candidate import RUN_ID, read_bundle
from ferry_core.retrain.register import register_candidate
from ferry_core.retrain.runs import start_run
from ferry_core.retrain.workflow import RunInput

Action = Literal[
    "register", "validate", "promote", "rollback", "archive", "approve", "reject", "retrain"
]
# Actions that start a run and answer before it ends (HTTP 202).
STARTS = frozenset({"retrain", "validate"})


class GovernanceRequest(BaseModel):
    """One governance action on a model, from a verified caller."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    model: ModelName
    version: int | None = Field(default=None, ge=1)
    stage: Literal["production", "staging"] = "production"
    candidate: str | None = Field(default=None, pattern=RUN_ID.pattern)
    expected_version: int | None = Field(default=None, ge=1)
    reason: str = Field(default="", max_length=1024)
    details: dict[str, Any] = Field(default_factory=dict)
    # A retraining run's options: the fields of `RunInput` other than model and reason.
    run: dict[str, Any] = Field(default_factory=dict)


class Result(Protocol):
    """What an action answers: an audited `Outcome`, or a started run."""

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Started:
    """A run an action started (its progress is the execution's to tell)."""

    model: str
    execution: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "execution": self.execution,
            "run_id": self.execution.rsplit(":", 1)[-1],
        }


@dataclass(frozen=True)
class Services:
    """What actions beyond registry writes reach: the model bucket and the runs."""

    s3: Any
    model_bucket: str
    stepfunctions: Any
    approvals: ApprovalGate
    retrain_machine: str | None = None


def _need_version(req: GovernanceRequest) -> int:
    if req.version is None:
        raise BadRequest(f"{req.action} needs a version")
    return req.version


def _register(gov: Governance, req: GovernanceRequest, actor: str, services: Services) -> Result:
    if req.candidate is None:
        raise BadRequest("register needs a candidate (the run id of an uploaded bundle)")
    bundle = read_bundle(services.s3, services.model_bucket, req.model, req.candidate)
    return register_candidate(gov, services.s3, services.model_bucket, bundle, actor, req.reason)[1]


def _retrain(gov: Governance, req: GovernanceRequest, actor: str, services: Services) -> Result:
    for field in ("model", "reason", "requested_by"):
        if field in req.run:
            raise BadRequest(f"run.{field}: not a run option here")
    try:
        run = RunInput.model_validate(
            {**req.run, "model": req.model, "reason": req.reason, "requested_by": actor}
        )
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from exc
    if services.retrain_machine is None:
        raise PromotionRefused("this stage has no retraining workflow")
    options = run.model_dump(mode="json", exclude_none=True, exclude={"model"})
    arn = start_run(services.stepfunctions, services.retrain_machine, req.model, options)
    return Started(req.model, arn)


def _decide(gov: Governance, req: GovernanceRequest, actor: str, services: Services) -> Result:
    """Approve or reject, then resume the retraining run waiting on this decision (if any)."""
    outcome, _ = decide(
        gov,
        services.approvals,
        services.stepfunctions,
        req.model,
        _need_version(req),
        approved=req.action == "approve",
        actor=actor,
        reason=req.reason,
    )
    return outcome


def _registry_action(
    gov: Governance, req: GovernanceRequest, actor: str
) -> Callable[[], Result] | None:
    """The actions that only change the registry (no services needed)."""
    expected = {} if req.expected_version is None else {"expected_version": req.expected_version}
    return {
        "promote": lambda: gov.promote(
            req.model, _need_version(req), req.stage, actor=actor, reason=req.reason, **expected
        ),
        "rollback": lambda: gov.rollback(
            req.model, actor=actor, reason=req.reason, stage=req.stage
        ),
        "archive": lambda: gov.archive(
            req.model, _need_version(req), actor=actor, reason=req.reason
        ),
        "validate": lambda: gov.start_validation(req.model, _need_version(req), actor=actor),
    }.get(req.action)


SERVICE_ACTIONS: dict[str, Callable[[Governance, GovernanceRequest, str, Services], Result]] = {
    "register": _register,
    "retrain": _retrain,
    "approve": _decide,
    "reject": _decide,
}


def run_request(
    gov: Governance, req: GovernanceRequest, actor: str, services: Services | None = None
) -> Result:
    """Dispatch one request by action (a table, not an if-chain), as `actor` acting."""
    registry = _registry_action(gov, req, actor)
    if registry is not None:
        return registry()
    if services is None:
        raise PromotionRefused(f"{req.action} is not available without the stage's services")
    return SERVICE_ACTIONS[req.action](gov, req, actor, services)
