"""The real-time scoring function: a container image running onnxruntime behind a `live` alias."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.environment import scoring_variables
from infra.functions import (
    FunctionSpec,
    container_function,
    function_log_group,
    lambda_role,
    write_own_logs,
)
from infra.nag import acknowledge
from infra.storage import MODELS_PREFIX


class ScoringFunction(Construct):
    """Scoring Lambda with a read-only view of the registry and the model store.

    It can read stage pointers and cards and download `models/*` artifacts; it cannot write the
    registry, the audit log or any bucket, so a compromised scorer cannot promote a model.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        data_bucket: s3.IBucket,
        registry_table: dynamodb.ITable,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = function_log_group(
            self, "LogGroup", retention=log_retention, removal=removal_policy
        )
        self.role = lambda_role(
            self, "Role", description="Ferry scoring function: read-only registry and model store"
        )
        spec = FunctionSpec(
            folder="scoring",
            architecture=config.function_architectures.scoring,
            description="Ferry real-time scoring",
            memory_mb=config.scoring_memory_mb,
            timeout=Duration.seconds(config.scoring_timeout_seconds),
            reserved_concurrency=config.scoring_reserved_concurrency,
            environment=scoring_variables(
                config,
                model_bucket=model_bucket.bucket_name,
                data_bucket=data_bucket.bucket_name,
                registry_table=registry_table.table_name,
            ),
            no_dlq_reason="Only API Gateway invokes this function, synchronously: a failure goes "
            "back to the caller as an HTTP error, there is no asynchronous event to dead-letter.",
        )
        self.function = container_function(
            self, "Function", spec, role=self.role, log_group=self.log_group
        )
        # The API invokes the alias, so provisioned concurrency (prod) and later traffic
        # shifting apply without changing the integration; dev has the same alias, just cold.
        self.alias = self.function.add_alias(
            "live",
            provisioned_concurrent_executions=config.scoring_provisioned_concurrency or None,
        )
        self._grant_least_privilege(model_bucket, model_key, registry_table)
        self._acknowledge_findings(model_bucket)

    def _grant_least_privilege(
        self, model_bucket: s3.IBucket, model_key: kms.IKey, registry_table: dynamodb.ITable
    ) -> None:
        """Explicit statements instead of grant_read*, which would also allow List/Scan/Describe."""
        self.role.add_to_policy(write_own_logs(self.log_group))
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadRegistry",
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"],
                resources=[registry_table.table_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadModelArtifacts",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[model_bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DecryptModelArtifacts",
                actions=["kms:Decrypt"],
                resources=[model_key.key_arn],
            )
        )

    def _acknowledge_findings(self, model_bucket: s3.IBucket) -> None:
        # On the CloudFormation resources themselves: the narrowest scope cdk-nag reports on.
        policy = self.role.node.find_child("DefaultPolicy").node.default_child
        stack = Stack.of(self)
        bucket_id = stack.resolve(stack.get_logical_id(model_bucket.node.default_child))
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{MODELS_PREFIX}*]",
            "Scoring loads any registered model version; keys are models/{model}/v{n}/..., "
            "so the grant is the models/ prefix (GetObject/GetObjectVersion only), not the bucket.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only xray:PutTraceSegments/PutTelemetryRecords (added by CDK for active tracing) "
            "use Resource *: X-Ray does not support resource-level permissions for them.",
        )
