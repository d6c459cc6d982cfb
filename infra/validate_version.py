"""`ValidateVersion`: gate a registered version against the current champion and record it.

    Validate (validation function, `{"model", "version"}`) ─ Record (governance function,
      │                                                        `record_validation`) ─ Done
      └ Catch ─ RecordNotRun (the reason the gate could not run, recorded too) ─ GateNotRun

The governance function starts it (`POST /v1/governance/validate`, and after every
registration) and its last step writes back through the governance function, so the machine
refers to that function and the function to the machine. To keep CloudFormation free of that
cycle the machine has a name computed from the stack's (`validate_version_arn`): the
governance function's environment and role name the ARN without referring to the resource.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.nag import acknowledge
from infra.state_machines import machine_arn, traced_state_machine

NAME_SUFFIX = "ValidateVersion"
TIMEOUT = Duration.minutes(20)  # the validation function's 10 minutes, retries and slack


def validate_version_arn(scope: Construct) -> str:
    """The machine's ARN, computed from its name (no reference to the resource)."""
    return machine_arn(scope, NAME_SUFFIX)


class ValidateVersion(Construct):
    """The state machine; `state_machine` is it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        governance: lambda_.IFunction,
        validation: lambda_.IFunction,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._governance = governance
        validate = tasks.LambdaInvoke(
            self,
            "Validate",
            lambda_function=validation,
            payload=sfn.TaskInput.from_object(
                {
                    "model": sfn.JsonPath.string_at("$.model"),
                    "version": sfn.JsonPath.number_at("$.version"),
                }
            ),
            result_selector={"report.$": "$.Payload.report"},
            result_path="$.validation",
            retry_on_service_exceptions=True,
        )
        record = self._record("Record", {"result": sfn.JsonPath.object_at("$.validation.report")})
        not_run = self._record("RecordNotRun", {"error": sfn.JsonPath.object_at("$.error")})
        validate.add_catch(not_run, result_path="$.error")
        not_run.next(
            sfn.Fail(
                self,
                "GateNotRun",
                error="GateNotRun",
                cause_path=sfn.JsonPath.string_at("$.error.Cause"),
            )
        )
        done = sfn.Succeed(self, "Done", output_path="$.recorded")
        self.state_machine = traced_state_machine(
            self,
            "StateMachine",
            sfn.Chain.start(validate).next(record).next(done),
            timeout=TIMEOUT,
            log_retention=log_retention,
            removal_policy=removal_policy,
            comment="Ferry validate version: gate a registered version, record the result",
            name_suffix=NAME_SUFFIX,
        )
        self._acknowledge_findings(governance, validation)

    def _record(self, construct_id: str, details: dict[str, object]) -> tasks.LambdaInvoke:
        """`record_validation` by the identity that asked for the validation."""
        return tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=self._governance,
            payload=sfn.TaskInput.from_object(
                {
                    "action": "record_validation",
                    "model": sfn.JsonPath.string_at("$.model"),
                    "version": sfn.JsonPath.number_at("$.version"),
                    "run_id": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "actor": sfn.JsonPath.string_at("$.requested_by"),
                    "details": {
                        **details,
                        "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                    },
                }
            ),
            result_selector={"result.$": "$.Payload"},
            result_path="$.recorded",
            retry_on_service_exceptions=True,
        )

    def _acknowledge_findings(
        self, governance: lambda_.IFunction, validation: lambda_.IFunction
    ) -> None:
        stack = Stack.of(self)
        policy = self.state_machine.role.node.find_child("DefaultPolicy").node.default_child
        for fn in (governance, validation):
            fn_id = stack.resolve(stack.get_logical_id(fn.node.default_child))
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::<{fn_id}.Arn>:*]",
                "CDK's LambdaInvoke grant: the function and its versions/aliases, no other.",
            )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Log delivery (logs:*LogDelivery, DescribeResourcePolicies) and X-Ray put calls, "
            "added by CDK for logging and tracing, have no resource-level permissions.",
        )
