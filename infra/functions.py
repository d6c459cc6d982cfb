"""One container-image Lambda with its own role and log group: the shape every function has.

Each function gets a role of its own (issue 8: no shared roles), allowed to write its own log
group and nothing else until the construct that owns it grants more; X-Ray active tracing;
the image from `functions/{folder}/Dockerfile` (infra/images.py). A function invoked only
synchronously has no asynchronous event to dead-letter, so its Serverless-LambdaDLQ finding is
acknowledged here with the caller's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.images import image_code
from infra.nag import acknowledge


@dataclass(frozen=True)
class Ids:
    """Construct ids of the three resources (kept per construct so logical ids never move)."""

    function: str
    role: str
    log_group: str


def container_function(
    scope: Construct,
    ids: Ids,
    *,
    folder: str,
    lock: str,
    description: str,
    role_description: str,
    memory_mb: int,
    timeout: Duration,
    environment: dict[str, str],
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    synchronous_reason: str,
    ephemeral_mb: int | None = None,
) -> tuple[lambda_.DockerImageFunction, iam.Role, logs.LogGroup]:
    """The function, its role and its log group; `synchronous_reason` says who invokes it."""
    log_group = logs.LogGroup(
        scope, ids.log_group, retention=log_retention, removal_policy=removal_policy
    )
    role = iam.Role(
        scope,
        ids.role,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="WriteOwnLogs",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    function = lambda_.DockerImageFunction(
        scope,
        ids.function,
        code=image_code(folder, lock),
        description=description,
        architecture=lambda_.Architecture.X86_64,
        role=role,
        memory_size=memory_mb,
        ephemeral_storage_size=Size.mebibytes(ephemeral_mb) if ephemeral_mb else None,
        timeout=timeout,
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        environment=environment,
    )
    acknowledge(function.node.default_child, "Serverless-LambdaDLQ", synchronous_reason)
    return function, role, log_group
