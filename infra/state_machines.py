"""Step Functions state machines and dead-letter queues, in the one shape the stack uses."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# The retraining state machine is named after the stack: the governance function starts it.
RETRAIN_MACHINE = "Retrain"


def machine_name(suffix: str) -> str:
    """`{stack name}-{suffix}`: a state machine whose ARN is known before it exists.

    The governance function starts the machines that invoke it; referring to the machine by
    this name (not by a reference to the resource) keeps that loop out of the dependency graph.
    """
    return f"{Aws.STACK_NAME}-{suffix}"


def machine_arn(scope: Construct, suffix: str) -> str:
    """The ARN of the state machine named `machine_name(suffix)` in this stack."""
    return Stack.of(scope).format_arn(
        service="states",
        resource="stateMachine",
        resource_name=machine_name(suffix),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def traced_state_machine(
    scope: Construct,
    construct_id: str,
    definition: sfn.IChainable,
    *,
    timeout: Duration,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    comment: str | None = None,
    name_suffix: str | None = None,
) -> sfn.StateMachine:
    """A state machine traced by X-Ray and logged in full to a `StateMachineLogs` group;
    named `machine_name(name_suffix)` when given (else CloudFormation names it)."""
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
        state_machine_name=machine_name(name_suffix) if name_suffix else None,
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
