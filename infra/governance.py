"""Governance: the audit anchor bucket (S3 Object Lock) and the governance function.

The governance function is the only role in the stack that may write the registry, append
to the audit table, write anchors and publish `ferry.registry` events. People reach it through
the IAM-authorized governance routes of the HTTP API (infra/api.py), which pass it the caller's
verified identity; it also starts retraining runs and resumes the ones waiting on a decision.
tests/infra assert on the synthesized template that no other role writes those tables.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.environment import governance_variables
from infra.functions import FunctionSpec, Ids, isolated_function
from infra.nag import acknowledge
from infra.state_machines import RETRAIN_MACHINE, machine_arn
from infra.storage import MODELS_PREFIX
from infra.validate_version import validate_version_arn

ANCHOR_PREFIX = "anchors/"
EVENT_SOURCE = "ferry.registry"


def publish_registry_events(scope: Construct) -> iam.PolicyStatement:
    """PutEvents on the default bus, for registry events (`ferry.registry`) and no others."""
    return iam.PolicyStatement(
        sid="PublishRegistryEvents",
        actions=["events:PutEvents"],
        resources=[
            Stack.of(scope).format_arn(
                service="events",
                resource="event-bus",
                resource_name="default",
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
        ],
        conditions={"StringEquals": {"events:source": EVENT_SOURCE}},
    )


class Governance(Construct):
    """Audit anchor bucket + governance function with exactly the writes governance needs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        registry_table: dynamodb.ITable,
        audit_table: dynamodb.ITable,
        access_logs_bucket: s3.IBucket,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.retrain_machine_arn = machine_arn(self, RETRAIN_MACHINE)
        self.anchor_key = kms.Key(
            self,
            "AnchorKey",
            description="Ferry audit anchor bucket encryption",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        # Compliance-mode Object Lock: no principal, root included, can delete or shorten the
        # retention of an anchor. Like every bucket here it follows the removal policy; a
        # destroyed dev stack leaves it behind until its (one-day) retention has passed.
        self.anchor_bucket = s3.Bucket(
            self,
            "AnchorBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.anchor_key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            object_lock_enabled=True,
            object_lock_default_retention=s3.ObjectLockRetention.compliance(
                Duration.days(config.audit_anchor_retention_days)
            ),
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix="audit-anchors/",
            removal_policy=removal_policy,
        )
        spec = FunctionSpec(
            folder="governance",
            architecture=config.function_architectures.governance,
            description="Ferry governance: register, validate, promote, roll back, decide, retrain",
            memory_mb=1024,
            timeout=Duration.seconds(60),
            environment=governance_variables(
                config,
                model_bucket=model_bucket.bucket_name,
                registry_table=registry_table.table_name,
                audit_table=audit_table.table_name,
                anchor_bucket=self.anchor_bucket.bucket_name,
                validation_state_machine=validate_version_arn(self),
                retrain_machine=self.retrain_machine_arn,
            ),
            no_dlq_reason="Invoked synchronously by Step Functions and the HTTP API: a failure "
            "returns to the caller (whose retry/catch applies). Its one asynchronous source, "
            "registry events from EventBridge, has an on-failure destination (monitoring).",
        )
        self.function, self.role, self.log_group = isolated_function(
            self,
            Ids("Function", "Role", "LogGroup"),
            spec,
            role_description="Ferry governance function: the only writer of the registry and audit",
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self._grant(model_bucket, model_key, registry_table, audit_table)
        self._acknowledge_findings(model_bucket)

    def _grant(
        self,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        registry_table: dynamodb.ITable,
        audit_table: dynamodb.ITable,
    ) -> None:
        statements = [
            # Conditional Put/Update of pointers, history and version status; Query/Get to read.
            iam.PolicyStatement(
                sid="WriteRegistry",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:ConditionCheckItem",
                ],
                resources=[registry_table.table_arn],
            ),
            # Append-only: no UpdateItem, no DeleteItem on the audit table.
            iam.PolicyStatement(
                sid="AppendAudit",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:ConditionCheckItem",
                ],
                resources=[audit_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="ReadModelArtifacts",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[model_bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="DecryptModelArtifacts", actions=["kms:Decrypt"], resources=[model_key.key_arn]
            ),
            iam.PolicyStatement(
                sid="WriteAnchors",
                actions=["s3:PutObject"],
                resources=[self.anchor_bucket.arn_for_objects(f"{ANCHOR_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="EncryptAnchors",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.anchor_key.key_arn],
            ),
            publish_registry_events(self),
            # `ferry validate` and every registration start a validation of the version.
            iam.PolicyStatement(
                sid="StartValidation",
                actions=["states:StartExecution"],
                resources=[validate_version_arn(self)],
            ),
            # The retrain route starts a run (requested by the verified caller).
            iam.PolicyStatement(
                sid="StartRetraining",
                actions=["states:StartExecution"],
                resources=[self.retrain_machine_arn],
            ),
            # A decision resumes the run waiting on it with its task token; Step Functions has
            # no resource-level permission for these two actions.
            iam.PolicyStatement(
                sid="ResumeRuns",
                actions=["states:SendTaskSuccess", "states:SendTaskFailure"],
                resources=["*"],
            ),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)

    def _acknowledge_findings(self, model_bucket: s3.IBucket) -> None:
        policy = self.role.node.find_child("DefaultPolicy").node.default_child
        stack = Stack.of(self)
        model_id = stack.resolve(stack.get_logical_id(model_bucket.node.default_child))
        anchor_id = stack.resolve(stack.get_logical_id(self.anchor_bucket.node.default_child))
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::<{model_id}.Arn>/{MODELS_PREFIX}*]",
            "Governance checks the sha256 of any registered version before promoting it; keys "
            "are models/{model}/v{n}/..., so the grant is the models/ prefix, read-only.",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::<{anchor_id}.Arn>/{ANCHOR_PREFIX}*]",
            "One anchor object per audit entry, anchors/{model}/{seq}.json; PutObject only, on "
            "the anchors/ prefix of a compliance-locked bucket (nothing can be overwritten).",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "xray:PutTraceSegments/PutTelemetryRecords (added by CDK for active tracing) and "
            "states:SendTaskSuccess/SendTaskFailure (resuming a run waiting on a decision) use "
            "Resource *: neither service supports resource-level permissions for them.",
        )
