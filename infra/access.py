"""The people and clients who use a stage: one IAM role per persona, least privilege each.

A person or an application assumes its persona's role (from SSO, a CI role or a workload
identity in the same account); the local platform hands each local identity credentials of
the same role, so what a persona may do locally is what it may do in AWS.

- `client`: an application that scores: invokes the read and predict routes of the API, nothing
  else (no bucket, no table).
- `data-scientist`: uploads candidate bundles and registers them, validates, promotes to
  staging, archives, starts retraining; drops training data and batch files, reads drift and
  results.
- `approver`: validates, approves or rejects a version (resuming a run waiting on it), promotes
  to either stage, rolls back, archives.
- `admin`: operates the stage: all of the above plus stopping a run, running the drift check
  now, and seeing what the stage holds (its resources' names, settings and functions).

Every governance change goes through the governance routes of the HTTP API (`GOVERNANCE_GRANTS`
says which persona may call which): the governance function is the only writer of the registry
and audit tables and records the caller's verified identity. No persona may write those tables,
the anchors or registry events, resume a run, or write under `models/`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.api import ROUTES
from infra.nag import acknowledge_wildcard_resources
from infra.retention import CANDIDATES_PREFIX
from infra.storage import MODELS_PREFIX

PERSONAS: tuple[str, ...] = ("client", "data-scientist", "approver", "admin")
# The routes an application calls; the governance routes of the API are for people.
CLIENT_ROUTES: tuple[tuple[str, str], ...] = ROUTES
_SCIENCE, _DECIDE, _ALL = (
    ("data-scientist", "admin"),
    ("approver", "admin"),
    ("data-scientist", "approver", "admin"),
)
# Who may call each governance route (a route's path with its stage filled in: IAM resources
# are per path, so "who may promote to production" is decided here).
GOVERNANCE_GRANTS: dict[str, tuple[str, ...]] = {
    "/v1/governance/register": _SCIENCE,
    "/v1/governance/validate": _ALL,
    "/v1/governance/promote/staging": _ALL,
    "/v1/governance/promote/production": _DECIDE,
    "/v1/governance/rollback/staging": _DECIDE,
    "/v1/governance/rollback/production": _DECIDE,
    "/v1/governance/approve": _DECIDE,
    "/v1/governance/reject": _DECIDE,
    "/v1/governance/archive": _ALL,
    "/v1/governance/retrain": _SCIENCE,
}
SESSION_HOURS = 12
# What the admin lists to see the stage's resources: these actions have no resource-level
# permission, so their resource is `*`.
LIST_ACTIONS = (
    "s3:ListAllMyBuckets",
    "dynamodb:ListTables",
    "sqs:ListQueues",
    "sns:ListTopics",
    "lambda:ListFunctions",
    "states:ListStateMachines",
)
# Data bucket prefixes people write: training data and batch inputs (DESIGN.md 3.4).
DATA_WRITE_PREFIXES = ("training/", "batch/incoming/")


@dataclass(frozen=True)
class StageResources:
    """What the personas act on (the stack's constructs)."""

    api: apigwv2.HttpApi
    stage_name: str
    model_bucket: s3.IBucket
    model_key: kms.IKey
    data_bucket: s3.IBucket
    data_key: kms.IKey
    anchor_bucket: s3.IBucket
    anchor_key: kms.IKey
    registry_table: dynamodb.ITable
    audit_table: dynamodb.ITable
    retrain_machine: sfn.IStateMachine
    batch_machine: sfn.IStateMachine
    drift_function: lambda_.IFunction
    functions: tuple[lambda_.IFunction, ...]  # the stage's functions the admin may inspect


def output_id(persona: str) -> str:
    """`data-scientist` → `IdentityDataScientistRoleArn`, the output holding its role's ARN
    (the local platform finds the personas by this shape)."""
    return "Identity" + "".join(part.capitalize() for part in persona.split("-")) + "RoleArn"


class Access(Construct):
    """One role per persona (`roles[name]`), assumable by principals of this account."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageResources) -> None:
        super().__init__(scope, construct_id)
        self._stage = stage
        statements = {
            "client": self._invoke(CLIENT_ROUTES),
            "data-scientist": [*self._read(), *self._govern("data-scientist"), *self._data()],
            "approver": [*self._read(), *self._govern("approver")],
            "admin": [
                *self._read(),
                *self._govern("admin"),
                *self._data(),
                *self._operate(),
            ],
        }
        self.roles: dict[str, iam.Role] = {}
        for persona in PERSONAS:
            cid = output_id(persona).removeprefix("Identity").removesuffix("Arn")
            role = iam.Role(
                self,
                cid,
                assumed_by=iam.AccountRootPrincipal(),
                max_session_duration=Duration.hours(SESSION_HOURS),
                description=f"Ferry {persona}: what that persona may do on this stage",
            )
            policy = iam.Policy(self, f"{cid}Policy", statements=statements[persona])
            policy.attach_to_role(role)
            self._acknowledge(policy, persona)
            self.roles[persona] = role
            CfnOutput(Stack.of(self), output_id(persona), value=role.role_arn)

    # -- statements ------------------------------------------------------------------------------

    def _invoke(
        self, routes: Sequence[tuple[str, str]], sid: str = "InvokeApi"
    ) -> list[iam.PolicyStatement]:
        arns = [
            self._stage.api.arn_for_execute_api(
                method, re.sub(r"\{[^}]+\}", "*", path), self._stage.stage_name
            )
            for method, path in routes
        ]
        return [iam.PolicyStatement(sid=sid, actions=["execute-api:Invoke"], resources=arns)]

    def _read(self) -> list[iam.PolicyStatement]:
        s = self._stage
        return [
            *self._invoke(ROUTES),
            iam.PolicyStatement(
                sid="ReadRegistryAndAudit",
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"],
                resources=[s.registry_table.table_arn, s.audit_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="ListBuckets",
                actions=["s3:ListBucket", "s3:ListBucketVersions"],
                resources=[
                    s.model_bucket.bucket_arn,
                    s.data_bucket.bucket_arn,
                    s.anchor_bucket.bucket_arn,
                ],
            ),
            iam.PolicyStatement(
                sid="ReadObjects",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[
                    s.model_bucket.arn_for_objects(f"{MODELS_PREFIX}*"),
                    # a retraining run's candidate and its validation report, read to decide
                    s.model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*"),
                    s.data_bucket.arn_for_objects("*"),
                    s.anchor_bucket.arn_for_objects("*"),
                ],
            ),
            iam.PolicyStatement(
                sid="DecryptObjects",
                actions=["kms:Decrypt"],
                resources=[s.model_key.key_arn, s.data_key.key_arn, s.anchor_key.key_arn],
            ),
            iam.PolicyStatement(
                sid="FollowRuns",
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[self._executions(s.retrain_machine), self._executions(s.batch_machine)],
            ),
            iam.PolicyStatement(
                sid="ListRuns",
                actions=["states:ListExecutions", "states:DescribeStateMachine"],
                resources=[s.retrain_machine.state_machine_arn, s.batch_machine.state_machine_arn],
            ),
            iam.PolicyStatement(
                sid="ReadMonitoring",
                actions=[
                    "cloudwatch:GetMetricData",
                    "cloudwatch:GetMetricStatistics",
                    "cloudwatch:ListMetrics",
                    "cloudwatch:DescribeAlarms",
                ],
                resources=["*"],
            ),
        ]

    def _govern(self, persona: str) -> list[iam.PolicyStatement]:
        """The governance routes `persona` may call; registering also takes uploading a
        candidate bundle (never anything under `models/`, which only governance writes)."""
        routes = [("POST", path) for path, who in GOVERNANCE_GRANTS.items() if persona in who]
        statements = self._invoke(routes, sid="InvokeGovernance")
        if persona in GOVERNANCE_GRANTS["/v1/governance/register"]:
            s = self._stage
            statements += [
                iam.PolicyStatement(
                    sid="UploadCandidates",
                    actions=["s3:PutObject"],
                    resources=[s.model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*")],
                ),
                iam.PolicyStatement(
                    sid="EncryptCandidates",
                    actions=["kms:GenerateDataKey"],
                    resources=[s.model_key.key_arn],
                ),
            ]
        return statements

    def _data(self) -> list[iam.PolicyStatement]:
        s = self._stage
        return [
            iam.PolicyStatement(
                sid="WriteData",
                actions=["s3:PutObject"],
                resources=[s.data_bucket.arn_for_objects(f"{p}*") for p in DATA_WRITE_PREFIXES],
            ),
            iam.PolicyStatement(
                sid="EncryptData",
                actions=["kms:GenerateDataKey"],
                resources=[s.data_key.key_arn],
            ),
        ]

    def _operate(self) -> list[iam.PolicyStatement]:
        """What operating the stage takes beyond deciding: stopping a run, and seeing what the
        stage holds."""
        s = self._stage
        buckets = [s.model_bucket, s.data_bucket, s.anchor_bucket]
        return [
            iam.PolicyStatement(  # the drift check, now rather than at its next schedule
                sid="RunDriftCheck",
                actions=["lambda:InvokeFunction"],
                resources=[s.drift_function.function_arn],
            ),
            iam.PolicyStatement(
                sid="StopRuns",
                actions=["states:StopExecution"],
                resources=[self._executions(s.retrain_machine), self._executions(s.batch_machine)],
            ),
            iam.PolicyStatement(sid="ListResources", actions=list(LIST_ACTIONS), resources=["*"]),
            iam.PolicyStatement(
                sid="InspectBuckets",
                actions=["s3:GetBucketVersioning", "s3:GetEncryptionConfiguration"],
                resources=[b.bucket_arn for b in buckets],
            ),
            iam.PolicyStatement(
                sid="InspectTables",
                actions=["dynamodb:DescribeTable"],
                resources=[s.registry_table.table_arn, s.audit_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="InspectFunctions",
                actions=["lambda:GetFunction", "lambda:GetFunctionConfiguration"],
                resources=[f.function_arn for f in s.functions],
            ),
        ]

    @staticmethod
    def _executions(machine: sfn.IStateMachine) -> str:
        """The ARN pattern of a state machine's executions."""
        return Stack.of(machine).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _acknowledge(self, policy: iam.Policy, persona: str) -> None:
        acknowledge_wildcard_resources(
            policy.node.default_child,
            f"The {persona} role's wildcards are each scoped to this stage: the API's routes with "
            "their path parameters, object prefixes of this stage's buckets (models/, candidates/, "
            "training/, batch/incoming/, and reads of the anchor bucket), and executions of this "
            "stage's state machines; Resource * only where the service has no resource-level "
            "permission (CloudWatch reads, the services' List actions).",
        )
