"""The retrain-and-promote state machine, one builder per part of the run.

    Lock ─ Train ─ Validate ─ Decide ─ Register (staging) ─ [approval] ─ [canary] ─ Promote
      │       └────────┴─────────┴────────────┴──── Catch ──── RejectRun (audited)    │
      └ AlreadyRunning                                            Notify (SNS) ─ Unlock ─ end

Every step that touches the registry is the governance function (the core's workflow). The
states are created in the scope of the Retraining construct, so their ids do not depend on how
this module is organised. CDK lists the states in the definition in the order their transitions
were added, so the builders below add them in a fixed order (approval before canary).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

_MODEL = "$.run.model"
_RUN_ID = "$.run.run_id"


class RetrainWorkflow:
    """Builds the states of one retrain run in `scope`; `definition` chains them."""

    def __init__(
        self,
        scope: Construct,
        *,
        governance: lambda_.IFunction,
        validation: lambda_.IFunction,
        topic: sns.ITopic,
    ) -> None:
        self._scope = scope
        self._governance = governance
        self._validation = validation
        self._topic = topic
        self._version = sfn.JsonPath.number_at("$.registered.version")

    # ---------------------------------------------------------------- state builders

    def _step(
        self,
        name: str,
        action: str,
        extra: dict[str, Any] | None = None,
        result_path: str | None = None,
    ) -> tasks.LambdaInvoke:
        """A governance action on the run's model, by the run's actor."""
        payload = {
            "action": action,
            "model": sfn.JsonPath.string_at(_MODEL),
            "run_id": sfn.JsonPath.string_at(_RUN_ID),
            "actor": sfn.JsonPath.string_at("$.run.actor"),
            **(extra or {}),
        }
        return tasks.LambdaInvoke(
            self._scope,
            name,
            lambda_function=self._governance,
            payload=sfn.TaskInput.from_object(payload),
            result_selector={"result.$": "$.Payload"},
            result_path=result_path or sfn.JsonPath.DISCARD,
            retry_on_service_exceptions=True,
        )

    def _outcome(self, name: str, status: str, reason_path: str) -> sfn.Pass:
        """How the run ended: what Notify publishes and the end state reads."""
        return sfn.Pass(
            self._scope,
            name,
            parameters={
                "status": status,
                "model": sfn.JsonPath.string_at(_MODEL),
                "run_id": sfn.JsonPath.string_at(_RUN_ID),
                "trigger": sfn.JsonPath.string_at("$.run.trigger"),
                "version": self._version,
                "reason": sfn.JsonPath.string_at(reason_path),
            },
            result_path="$.outcome",
        )

    def _guarded(self, task: sfn.TaskStateBase) -> sfn.TaskStateBase:
        task.add_catch(self._reject_run, result_path="$.error")
        return task

    # ---------------------------------------------------------------- the run's parts

    def _ending(self) -> tasks.SnsPublish:
        """Notify → Unlock → end as the outcome says; a failed notification still unlocks."""
        unlock = self._step("Unlock", "unlock")
        unlock.add_catch(sfn.Fail(self._scope, "UnlockFailed", error="UnlockFailed"))
        end = (
            sfn.Choice(self._scope, "Ended?")
            .when(
                sfn.Condition.string_equals("$.outcome.status", "failed"),
                sfn.Fail(
                    self._scope,
                    "RunFailed",
                    error="RetrainFailed",
                    cause_path=sfn.JsonPath.string_at("$.outcome.reason"),
                ),
            )
            .otherwise(sfn.Succeed(self._scope, "Done", output_path="$.outcome"))
        )
        notify = tasks.SnsPublish(
            self._scope,
            "Notify",
            topic=self._topic,
            subject=sfn.JsonPath.format(
                "Ferry retraining: {} {}",
                sfn.JsonPath.string_at(_MODEL),
                sfn.JsonPath.string_at("$.outcome.status"),
            ),
            message=sfn.TaskInput.from_json_path_at("$.outcome"),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_catch(unlock, result_path="$.notify_error")
        notify.next(unlock)
        unlock.next(end)
        return notify

    def _reject_path(self) -> tasks.LambdaInvoke:
        """The Catch path: audit why the run ended, then end as failed."""
        reject_run = self._step(
            "RejectRun",
            "reject_run",
            {"version": self._version, "error": sfn.JsonPath.object_at("$.error")},
            result_path="$.rejection",
        )
        failed = self._outcome("Failed", "failed", "$.rejection.result.reason")
        reject_run.next(failed)
        failed.next(self._notify)
        reject_run.add_catch(
            self._outcome("RejectRunFailed", "failed", "$.error.Cause").next(self._notify),
            result_path="$.error",
        )
        return reject_run

    def _lock(self, run_timeout: Duration) -> tasks.LambdaInvoke:
        """One run per model; the lock also returns the run's effective settings."""
        return tasks.LambdaInvoke(
            self._scope,
            "Lock",
            lambda_function=self._governance,
            payload=sfn.TaskInput.from_object(
                {
                    "action": "lock",
                    "model": sfn.JsonPath.string_at("$.model"),
                    "run_id": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "details": sfn.JsonPath.object_at("$"),
                    "lock_seconds": int(run_timeout.to_seconds()),
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=True,
        )

    def _validate(self) -> sfn.TaskStateBase:
        """The gate every candidate passes before it is registered."""
        return self._guarded(
            tasks.LambdaInvoke(
                self._scope,
                "Validate",
                lambda_function=self._validation,
                payload=sfn.TaskInput.from_object(
                    {
                        "model": sfn.JsonPath.string_at(_MODEL),
                        "run_id": sfn.JsonPath.string_at(_RUN_ID),
                        "breaking_change": sfn.JsonPath.string_at("$.run.breaking_change"),
                    }
                ),
                result_selector={
                    "passed.$": "$.Payload.passed",
                    "summary.$": "$.Payload.summary",
                    "report_uri.$": "$.Payload.report_uri",
                    "failed_checks.$": "$.Payload.failed_checks",
                    "champion_version.$": "$.Payload.champion_version",
                },
                result_path="$.validation",
                retry_on_service_exceptions=True,
            )
        )

    def _ask_approval(self) -> tasks.SnsPublish:
        """Tell the approvers which version waits, and the commands that decide."""
        ask = tasks.SnsPublish(
            self._scope,
            "AskApproval",
            topic=self._topic,
            subject=sfn.JsonPath.format(
                "Ferry: approval needed for {} v{}",
                sfn.JsonPath.string_at(_MODEL),
                sfn.JsonPath.string_at("$.registered.version"),
            ),
            message=sfn.TaskInput.from_object(
                {
                    "model": sfn.JsonPath.string_at(_MODEL),
                    "version": self._version,
                    "run_id": sfn.JsonPath.string_at(_RUN_ID),
                    "validation": sfn.JsonPath.string_at("$.validation.report_uri"),
                    "approve": sfn.JsonPath.string_at("$.settings.approve_command"),
                    "reject": sfn.JsonPath.string_at("$.settings.reject_command"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        ask.add_catch(self._reject_run, result_path="$.error")
        return ask

    def _wait_for_approval(self) -> tasks.LambdaInvoke:
        """A task token `ferry approve` / `ferry reject` resume; the timeout rejects."""
        wait_approval = tasks.LambdaInvoke(
            self._scope,
            "WaitForApproval",
            lambda_function=self._governance,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "action": "request_approval",
                    "model": sfn.JsonPath.string_at(_MODEL),
                    "run_id": sfn.JsonPath.string_at(_RUN_ID),
                    "version": self._version,
                    "task_token": sfn.JsonPath.task_token,
                }
            ),
            task_timeout=sfn.Timeout.at("$.settings.approval_timeout_seconds"),
            result_path="$.approval",
        )
        timed_out = self._step(
            "ApprovalTimedOut",
            "reject_run",
            {
                "version": self._version,
                "reason": sfn.JsonPath.format(
                    "no approval within {} s: rejected",
                    sfn.JsonPath.string_at("$.settings.approval_timeout_seconds"),
                ),
            },
            result_path="$.rejection",
        )
        timed_out.add_catch(self._reject_run, result_path="$.error")
        # `ferry reject` audited the decision already; this step reads its reason back.
        approval_rejected = self._step(
            "ApprovalRejected",
            "reject_run",
            {"version": self._version, "error": sfn.JsonPath.object_at("$.error")},
            result_path="$.rejection",
        )
        approval_rejected.add_catch(self._reject_run, result_path="$.error")
        wait_approval.add_catch(timed_out, errors=["States.Timeout"], result_path="$.error")
        wait_approval.add_catch(
            approval_rejected, errors=["ApprovalRejected"], result_path="$.error"
        )
        wait_approval.add_catch(self._reject_run, result_path="$.error")
        approval_rejected.next(self._rejected)
        timed_out.next(self._rejected)
        return wait_approval

    def _canary_or_switch(self) -> sfn.Choice:
        """A canary judged on its metrics, or the switch straight away."""
        version = self._version
        promote = self._guarded(
            self._step("Promote", "promote_candidate", {"version": version}, "$.promotion")
        )
        start_canary = self._guarded(
            self._step(
                "StartCanary",
                "start_canary",
                {
                    "version": version,
                    "percent": sfn.JsonPath.number_at("$.settings.canary_percent"),
                },
            )
        )
        wait_canary = sfn.Wait(
            self._scope,
            "CanaryWindow",
            time=sfn.WaitTime.seconds_path("$.settings.canary_seconds"),
        )
        evaluate = self._guarded(
            self._step("EvaluateCanary", "evaluate_canary", {"version": version}, "$.canary")
        )
        rollback = self._guarded(
            self._step(
                "RollbackCanary",
                "rollback_canary",
                {"version": version, "reason": sfn.JsonPath.string_at("$.canary.result.summary")},
            )
        )
        promoted = self._outcome("Promoted", "promoted", "$.run.reason")
        rolled_back = self._outcome("RolledBack", "rolled_back", "$.canary.result.summary")
        canary_or_switch = (
            sfn.Choice(self._scope, "Canary?")
            .when(
                sfn.Condition.boolean_equals("$.settings.canary", True),
                start_canary.next(wait_canary)
                .next(evaluate)
                .next(
                    sfn.Choice(self._scope, "CanaryHealthy?")
                    .when(sfn.Condition.boolean_equals("$.canary.result.healthy", True), promote)
                    .otherwise(rollback.next(rolled_back).next(self._notify))
                ),
            )
            .otherwise(promote)
        )
        promote.next(promoted).next(self._notify)
        return canary_or_switch

    def _approval(self) -> sfn.Choice:
        """Ask and wait when the run's settings require an approval, then canary or switch."""
        # The approval states (and their catches) before the canary's: see the module's note.
        ask = self._ask_approval()
        wait_approval = self._wait_for_approval()
        canary_or_switch = self._canary_or_switch()
        return (
            sfn.Choice(self._scope, "Approval?")
            .when(
                sfn.Condition.boolean_equals("$.settings.approval_required", True),
                ask.next(wait_approval).next(canary_or_switch),
            )
            .otherwise(canary_or_switch)
        )

    def _decide(self) -> sfn.Choice:
        """Register a validated candidate (then approval, canary); reject any other."""
        reject_candidate = self._step(
            "RejectCandidate",
            "reject_run",
            {
                "reason": sfn.JsonPath.format(
                    "validation failed: {}", sfn.JsonPath.string_at("$.validation.summary")
                )
            },
            result_path="$.rejection",
        )
        reject_candidate.add_catch(self._reject_run, result_path="$.error")
        register = self._guarded(
            self._step("Register", "register_candidate", result_path="$.registered_step")
        )
        registered = sfn.Pass(
            self._scope,
            "Registered",
            parameters={"version": sfn.JsonPath.number_at("$.registered_step.result.version")},
            result_path="$.registered",
        )
        approval = self._approval()
        reject_candidate.next(self._rejected)
        self._rejected.next(self._notify)
        return (
            sfn.Choice(self._scope, "Decide")
            .when(
                sfn.Condition.boolean_equals("$.validation.passed", True),
                register.next(registered).next(approval),
            )
            .otherwise(reject_candidate)
        )

    def definition(
        self, train: sfn.TaskStateBase | sfn.CustomState, run_timeout: Duration
    ) -> sfn.IChainable:
        """Lock → (Train → Validate → Decide …) or AlreadyRunning when another run holds it."""
        self._notify = self._ending()
        self._reject_run = self._reject_path()
        self._rejected = self._outcome("Rejected", "rejected", "$.rejection.result.reason")
        lock = self._lock(run_timeout)
        if isinstance(train, sfn.CustomState):
            train.add_catch(self._reject_run, result_path="$.error")
            train.add_retry(errors=["SageMaker.AmazonSageMakerException"], max_attempts=2)
        else:
            self._guarded(train)
        validate = self._validate()
        decide = self._decide()
        already = sfn.Succeed(self._scope, "AlreadyRunning", comment="another run holds the lock")
        return lock.next(
            sfn.Choice(self._scope, "Locked?")
            .when(
                sfn.Condition.boolean_equals("$.locked", True),
                sfn.Chain.start(train).next(validate).next(decide),
            )
            .otherwise(already)
        )
