"""The retrain-and-promote workflow's governed steps, run by the governance function.

The state machine (infra/retraining.py) is the order; these are its steps that touch the
registry, so they stay in the one role allowed to write it:

- `lock` / `unlock`: one retraining run per model at a time (`ferry_core.retrain.lock`).
- `register_candidate`: the validated bundle becomes the next version (artifacts copied into
  `models/{model}/v{n}/`, card carrying the validation report) and is staged. Idempotent per run:
  a retried task finds the version its first attempt registered instead of allocating another.
- `request_approval`: stores the Step Functions task token beside the version; the approve /
  reject routes (`ferry approve|reject`) record the decision (audited) and resume the execution
  (`ferry_core.retrain.approval`).
- `start_canary` / `evaluate_canary` / `promote_candidate` / `rollback_canary`: the canary and
  the switch.
- `reject_run`: the Catch path. Records why the run ended in the audit trail: rejecting the
  candidate's version when there is one, else an entry for the model (version null).
- `record_validation`: the `ValidateVersion` machine's last step: the gate result of a
  registered version (or why the gate could not run) onto the version, audited as `validate`.

A run's author is its `requested_by`: the verified identity that started it, `alarm:<name>`
for a drift alarm, `schedule` for the schedule. Training records it as the card's
`trained_by`, which the four-eyes rule reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ferry_core.errors import PromotionRefused, RegistryConflict
from ferry_core.names import ModelName
from ferry_core.registry.governance import Governance, Outcome
from ferry_core.retrain.approval import ApprovalGate
from ferry_core.retrain.candidate import RUN_ID, Bundle, read_bundle
from ferry_core.retrain.lock import RetrainLock, RetrainRunning
from ferry_core.retrain.register import register_bundle, registered_from
from ferry_core.serving.canary import CanaryPolicy, evaluate


class WorkflowRequest(BaseModel):
    """One workflow step, as the retrain-and-promote state machine sends it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal[
        "lock",
        "unlock",
        "register_candidate",
        "request_approval",
        "start_canary",
        "evaluate_canary",
        "promote_candidate",
        "rollback_canary",
        "reject_run",
        "record_validation",
    ]
    model: ModelName
    run_id: str = Field(pattern=RUN_ID.pattern)
    version: int | None = Field(default=None, ge=1)
    actor: str = Field(default="ferry-retrain", min_length=1, max_length=256)
    reason: str = Field(default="", max_length=4096)
    details: dict[str, Any] = Field(default_factory=dict)
    task_token: str | None = Field(default=None, max_length=8192)
    percent: float | None = Field(default=None, gt=0, le=50)
    lock_seconds: int = Field(default=86_400, ge=60, le=31 * 86_400)
    error: dict[str, Any] | None = None


class RunInput(BaseModel):
    """A run's input (`ferry retrain`, the drift rule, the schedule), with its defaults.

    The overrides can make a run stricter or quicker to judge, never skip a gate the
    environment requires: `require_approval` only adds an approval, `approval_timeout_seconds`
    only shortens the environment's, a canary is only as long as asked. `requested_by` is who
    started the run (the verified caller of the retrain route, `alarm:NAME` or `schedule`):
    the author of the run's registry steps. Only the governance function and EventBridge
    may start a run, so no caller can name someone else.
    """

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    trigger: Literal["manual", "drift", "schedule"] = "manual"
    requested_by: str | None = Field(default=None, min_length=1, max_length=2048)
    reason: str = Field(default="", max_length=1024)
    training_data: str | None = Field(default=None, pattern=r"^s3://[^/]+/.+")
    # A trainer of the training image; None: the model's own (ferry_core/retrain/trainer_choice.py)
    entry_point: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    breaking_change: bool = False
    require_approval: bool = False
    approval_timeout_seconds: int | None = Field(default=None, ge=1)
    canary_percent: float | None = Field(default=None, ge=0, le=50)
    canary_seconds: int | None = Field(default=None, ge=1, le=86_400)

    def author(self) -> str:
        """Who the run is by: `requested_by`, else what started it (the schedule, an alarm
        whose name the rule did not pass, or the workflow itself for a run started without one)."""
        if self.requested_by:
            return self.requested_by
        return {"schedule": "schedule", "drift": "alarm:unknown"}.get(self.trigger, "ferry-retrain")


class WorkflowSettings(BaseModel):
    """The environment's workflow settings (infra/config.py, via the governance function)."""

    model_config = ConfigDict(frozen=True)

    env: str = "local"
    approval_required: bool = False
    approval_timeout_seconds: int = Field(default=3 * 86_400, ge=1)
    canary_percent: float = Field(default=0.0, ge=0, le=50)
    canary_seconds: int = Field(default=600, ge=1)

    def effective(self, run: RunInput, has_champion: bool) -> dict[str, Any]:
        """This run's settings: the environment's, tightened by the run's overrides."""
        timeout = self.approval_timeout_seconds
        if run.approval_timeout_seconds is not None:
            timeout = min(timeout, run.approval_timeout_seconds)
        percent = self.canary_percent if run.canary_percent is None else run.canary_percent
        env = f" --env {self.env}"
        return {
            "approval_required": self.approval_required or run.require_approval,
            "approval_timeout_seconds": timeout,
            # A canary needs a production version to compare with; a first version switches.
            "canary": percent > 0 and has_champion,
            "canary_percent": percent,
            "canary_seconds": run.canary_seconds or self.canary_seconds,
            "approve_command": f"ferry approve {run.model} VERSION{env}",
            "reject_command": f"ferry reject {run.model} VERSION --reason '...'{env}",
        }


class Workflow:
    """The workflow steps over one environment's registry, buckets and CloudWatch."""

    def __init__(
        self,
        gov: Governance,
        *,
        dynamodb: Any,
        s3: Any,
        cloudwatch: Any | None,
        registry_table: str,
        model_bucket: str,
        canary_policy: CanaryPolicy | None = None,
        settings: WorkflowSettings | None = None,
    ) -> None:
        self.gov = gov
        self.settings = settings or WorkflowSettings()
        self.s3 = s3
        self.cloudwatch = cloudwatch
        self.bucket = model_bucket
        self.lock = RetrainLock(dynamodb, registry_table)
        self.approvals = ApprovalGate(dynamodb, registry_table)
        self.canary_policy = canary_policy or CanaryPolicy()

    def run(self, req: WorkflowRequest) -> dict[str, Any]:
        """Dispatch one step by action; returns the step's JSON output."""
        actions: dict[str, Callable[[WorkflowRequest], dict[str, Any]]] = {
            "lock": self._lock,
            "unlock": self._unlock,
            "register_candidate": self._register,
            "request_approval": self._request_approval,
            "start_canary": self._start_canary,
            "evaluate_canary": self._evaluate_canary,
            "promote_candidate": self._promote,
            "rollback_canary": self._rollback_canary,
            "reject_run": self._reject_run,
            "record_validation": self._record_validation,
        }
        return actions[req.action](req)

    # -- steps --------------------------------------------------------------------------
    def _lock(self, req: WorkflowRequest) -> dict[str, Any]:
        """Take the model's lock and return the run's state: its normalised input, its
        effective settings, and an empty `registered` (the Catch path reads it)."""
        run = RunInput.model_validate({"model": req.model, **req.details})
        try:
            self.lock.acquire(req.model, req.run_id, req.lock_seconds)
        except RetrainRunning as exc:
            return {"locked": False, "message": exc.message, "model": req.model}
        has_champion = self.gov.reader.fresh_pointer(req.model, "production") is not None
        return {
            "locked": True,
            "run": {
                **run.model_dump(),
                "requested_by": run.author(),
                "actor": run.author(),
                "run_id": req.run_id,
            },
            "settings": self.settings.effective(run, has_champion),
            "registered": {"version": None},
        }

    def _unlock(self, req: WorkflowRequest) -> dict[str, Any]:
        return {"released": self.lock.release(req.model, req.run_id)}

    def _need_version(self, req: WorkflowRequest) -> int:
        if req.version is None:
            raise PromotionRefused(f"{req.action} needs a version")
        return req.version

    def _register(self, req: WorkflowRequest) -> dict[str, Any]:
        bundle = read_bundle(self.s3, self.bucket, req.model, req.run_id)
        report = self._report(bundle)
        if report.get("passed") is not True:
            raise PromotionRefused(
                f"candidate {req.model}/{req.run_id} did not pass validation; not registered"
            )
        card = registered_from(self.gov, req.model, req.run_id)
        outcome: Outcome | None = None
        if card is None:
            reason = req.reason or f"retraining run {req.run_id}"
            card, outcome = register_bundle(
                self.gov, self.s3, self.bucket, bundle, req.actor, reason, report
            )
        staged = self.gov.promote(
            card.name, card.version, "staging", actor=req.actor, reason=req.reason
        )
        return {
            "version": card.version,
            "artifact_sha256": card.artifact.sha256,
            "registered": outcome.as_dict() if outcome else "already registered by this run",
            "staged": staged.as_dict(),
        }

    def _report(self, bundle: Bundle) -> dict[str, Any]:
        try:
            obj = self.s3.get_object(Bucket=bundle.bucket, Key=f"{bundle.prefix}/validation.json")
        except self.s3.exceptions.NoSuchKey as exc:
            raise PromotionRefused(f"{bundle.uri} has no validation report") from exc
        return json.loads(obj["Body"].read())

    def _record_validation(self, req: WorkflowRequest) -> dict[str, Any]:
        """`details`: `result`, the validation function's answer, or `error`, a Catch's
        `{"Error", "Cause"}` when the gate could not run (recorded as a failed result)."""
        version = self._need_version(req)
        result = req.details.get("result")
        if not isinstance(result, dict):
            reason = _error_reason(req.details.get("error")) or "the gate did not run"
            result = {"passed": False, "summary": f"validation could not run: {reason}"}
        execution = req.details.get("execution")
        out = self.gov.record_validation(
            req.model, version, result, actor=req.actor, execution=execution
        )
        return {"passed": result.get("passed") is True, "recorded": out.as_dict()}

    def _request_approval(self, req: WorkflowRequest) -> dict[str, Any]:
        version = self._need_version(req)
        if not req.task_token:
            raise PromotionRefused("request_approval needs the execution's task token")
        self.approvals.request(req.model, version, req.task_token, req.run_id)
        return {"pending": True, "version": version}

    def _start_canary(self, req: WorkflowRequest) -> dict[str, Any]:
        version = self._need_version(req)
        if req.percent is None:
            raise PromotionRefused("start_canary needs a percent")
        out = self.gov.start_canary(
            req.model, version, req.percent, actor=req.actor, run_id=req.run_id, reason=req.reason
        )
        return out.as_dict()

    def _evaluate_canary(self, req: WorkflowRequest) -> dict[str, Any]:
        version = self._need_version(req)
        canary = self.gov.reader.fresh_canary(req.model)
        if canary is None or canary.version != version:
            raise PromotionRefused(f"{req.model} v{version} has no canary in progress")
        if self.cloudwatch is None:
            raise PromotionRefused("no CloudWatch client: the canary cannot be judged")
        since = datetime.fromisoformat(canary.since.replace("Z", "+00:00")).astimezone(UTC)
        verdict = evaluate(self.cloudwatch, req.model, since, self.canary_policy)
        return {**verdict.as_dict(), "summary": verdict.summary()}

    def _promote(self, req: WorkflowRequest) -> dict[str, Any]:
        version = self._need_version(req)
        promoted = self.gov.promote(
            req.model, version, "production", actor=req.actor, reason=req.reason
        )
        out: dict[str, Any] = {"promoted": promoted.as_dict()}
        canary = self.gov.reader.fresh_canary(req.model)
        if canary is not None and canary.version == version:
            out["canary"] = self.gov.stop_canary(
                req.model,
                version,
                outcome="promoted",
                actor=req.actor,
                reason=req.reason,
                details=req.details,
            ).as_dict()
        return out

    def _rollback_canary(self, req: WorkflowRequest) -> dict[str, Any]:
        version = self._need_version(req)
        reason = req.reason or "canary unhealthy"
        stopped = self.gov.stop_canary(
            req.model,
            version,
            outcome="rolled_back",
            actor=req.actor,
            reason=reason,
            details=req.details,
        )
        rejected = self.gov.reject(
            req.model,
            version,
            actor=req.actor,
            reason=f"canary rolled back: {reason}",
            details={"run_id": req.run_id},
        )
        return {"canary": stopped.as_dict(), "rejected": rejected.as_dict()}

    def _reject_run(self, req: WorkflowRequest) -> dict[str, Any]:
        """Record why a run ended without a promotion (the state machine's Reject step)."""
        reason = req.reason or _error_reason(req.error) or "retraining run rejected"
        details = {"run_id": req.run_id, **req.details}
        if req.version is not None:
            self.approvals.clear(req.model, req.version)
        if req.error:
            details["error"] = {k: str(v)[:2000] for k, v in req.error.items()}
        canary = self.gov.reader.fresh_canary(req.model)
        if req.version is not None and canary is not None and canary.version == req.version:
            self.gov.stop_canary(
                req.model, req.version, outcome="rolled_back", actor=req.actor, reason=reason
            )
        if req.version is not None:
            record = self.gov.reader.version_record(req.model, req.version)
            if record.get("status") != "rejected":
                try:
                    out = self.gov.reject(
                        req.model, req.version, actor=req.actor, reason=reason, details=details
                    )
                    return {"rejected": out.as_dict(), "reason": reason}
                except (PromotionRefused, RegistryConflict) as exc:
                    details["reject_refused"] = exc.message
            else:  # an operator's `ferry reject`: their reason is the run's
                entries = [
                    e
                    for e in self.gov.audit.entries(req.model)
                    if e.event == "reject" and e.version == req.version
                ]
                if entries and entries[-1].reason:
                    reason = f"rejected by {entries[-1].actor}: {entries[-1].reason}"
                return {"rejected": "already rejected", "reason": reason}
        out = self.gov.record_run_rejection(
            req.model, req.version, actor=req.actor, reason=reason, details=details
        )
        return {"rejected": out.as_dict(), "reason": reason}


def _error_reason(error: Mapping[str, Any] | None) -> str | None:
    """A readable reason from a Step Functions Catch's `{"Error", "Cause"}`."""
    if not error:
        return None
    name, cause = str(error.get("Error", "")), str(error.get("Cause", ""))
    try:  # a Lambda error's Cause is JSON: {"errorMessage", "errorType", ...}
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            cause = f"{parsed.get('errorType', '')}: {parsed['errorMessage']}".strip(": ")
    except ValueError:
        pass
    if not cause:
        return name or None
    # A Lambda error's Cause already starts with its type, which is usually the Error's name.
    return (cause if cause.startswith(name) else f"{name}: {cause}")[:1024]
