"""Container-image Lambdas: every function in the stack is built here, in one shape.

Each function runs under a role of its own (no role is shared: a function's credentials act as
that function only), starts with no permission but the X-Ray calls active tracing adds, writes
to a log group the stack owns, and runs the image of `functions/{folder}/Dockerfile`
(infra/images.py). Every function states why it needs no dead-letter queue of its own (it is
invoked synchronously, by SQS, or by a schedule that supersedes a failed run), and that reason
acknowledges its Serverless-LambdaDLQ finding.

Most functions are `isolated_function`s: their own log group, their own role allowed to write
it, and the function. A few compose the parts themselves: the batch functions share one log
group, and the scoring and drift functions grant their log writes after the function exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import Architecture
from infra.images import image_code
from infra.nag import acknowledge

LAMBDA_ARCHITECTURES: dict[Architecture, lambda_.Architecture] = {
    "x86_64": lambda_.Architecture.X86_64,
    "arm64": lambda_.Architecture.ARM_64,
}


@dataclass(frozen=True)
class FunctionSpec:
    """What sets one function apart: its image, its sizing, its environment, its invoker."""

    folder: str
    description: str
    memory_mb: int
    timeout: Duration
    environment: Mapping[str, str]
    no_dlq_reason: str  # who invokes it, and so why a failure needs no dead-letter queue
    architecture: Architecture  # the function's and its image's (config.function_architectures)
    lock: str = "runtime"
    cmd: str | None = None
    ephemeral_mb: int | None = None
    reserved_concurrency: int | None = None
    retry_attempts: int | None = None
    on_failure: lambda_.IDestination | None = None


@dataclass(frozen=True)
class Ids:
    """Construct ids of the three resources (kept per construct so logical ids never move)."""

    function: str
    role: str
    log_group: str


def function_log_group(
    scope: Construct, construct_id: str, *, retention: logs.RetentionDays, removal: RemovalPolicy
) -> logs.LogGroup:
    """A log group owned by the stack, so retention and removal follow the environment."""
    return logs.LogGroup(scope, construct_id, retention=retention, removal_policy=removal)


def lambda_role(scope: Construct, construct_id: str, *, description: str) -> iam.Role:
    """A role Lambda assumes, with no permission until its owner grants one."""
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )


def write_own_logs(log_group: logs.ILogGroup) -> iam.PolicyStatement:
    """Log writes to the function's own log group and no other."""
    return iam.PolicyStatement(
        sid="WriteOwnLogs",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[log_group.log_group_arn],
    )


def container_function(
    scope: Construct,
    construct_id: str,
    spec: FunctionSpec,
    *,
    role: iam.IRole,
    log_group: logs.ILogGroup,
) -> lambda_.DockerImageFunction:
    """The function of `spec`, running as `role` and logging to `log_group`."""
    function = lambda_.DockerImageFunction(
        scope,
        construct_id,
        code=image_code(spec.folder, spec.architecture, spec.lock, spec.cmd),
        description=spec.description,
        architecture=LAMBDA_ARCHITECTURES[spec.architecture],
        role=role,
        memory_size=spec.memory_mb,
        ephemeral_storage_size=Size.mebibytes(spec.ephemeral_mb) if spec.ephemeral_mb else None,
        timeout=spec.timeout,
        reserved_concurrent_executions=spec.reserved_concurrency,
        retry_attempts=spec.retry_attempts,
        on_failure=spec.on_failure,
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        environment=dict(spec.environment),
    )
    acknowledge(function.node.default_child, "Serverless-LambdaDLQ", spec.no_dlq_reason)
    return function


def isolated_function(
    scope: Construct,
    ids: Ids,
    spec: FunctionSpec,
    *,
    role_description: str,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
) -> tuple[lambda_.DockerImageFunction, iam.Role, logs.LogGroup]:
    """The function, its own role and its own log group, the role allowed to write it."""
    log_group = function_log_group(
        scope, ids.log_group, retention=log_retention, removal=removal_policy
    )
    role = lambda_role(scope, ids.role, description=role_description)
    role.add_to_policy(write_own_logs(log_group))
    function = container_function(scope, ids.function, spec, role=role, log_group=log_group)
    return function, role, log_group
