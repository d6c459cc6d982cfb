"""Step Functions state machines and dead-letter queues, in the one shape the stack uses."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


def traced_state_machine(
    scope: Construct,
    construct_id: str,
    definition: sfn.IChainable,
    *,
    timeout: Duration,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    comment: str | None = None,
    state_machine_name: str | None = None,
) -> sfn.StateMachine:
    """A state machine traced by X-Ray and logged in full to a `StateMachineLogs` group."""
    log_group = logs.LogGroup(
        scope, "StateMachineLogs", retention=log_retention, removal_policy=removal_policy
    )
    return sfn.StateMachine(
        scope,
        construct_id,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL),
        timeout=timeout,
        comment=comment,
        state_machine_name=state_machine_name,
    )


def dead_letter_queue(scope: Construct, *, removal_policy: RemovalPolicy) -> sqs.Queue:
    """A `DeadLetterQueue`: encrypted, TLS only, messages kept 14 days for a look and a replay."""
    return sqs.Queue(
        scope,
        "DeadLetterQueue",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=removal_policy,
    )
