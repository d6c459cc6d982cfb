"""The real-time scoring function: a container image running onnxruntime behind a `live` alias."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.images import image_code
from infra.nag import acknowledge
from infra.storage import MODELS_PREFIX

MODEL_CACHE_DIR = "/tmp/ferry-models"  # /tmp is the only writable path in Lambda.


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
        env_name: str,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        data_bucket: s3.IBucket,
        registry_table: dynamodb.ITable,
        audit_table: dynamodb.ITable,
        memory_mb: int,
        timeout: Duration,
        reserved_concurrency: int | None,
        provisioned_concurrency: int,
        registry_cache_seconds: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Ferry scoring function: read-only registry and model store",
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=image_code("scoring"),
            description="Ferry real-time scoring",
            architecture=lambda_.Architecture.X86_64,
            role=self.role,
            memory_size=memory_mb,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            environment={
                "FERRY_ENV": env_name,
                "MODEL_BUCKET": model_bucket.bucket_name,
                "DATA_BUCKET": data_bucket.bucket_name,
                "REGISTRY_TABLE": registry_table.table_name,
                "AUDIT_TABLE": audit_table.table_name,
                "REGISTRY_CACHE_SECONDS": str(registry_cache_seconds),
                "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
                "POWERTOOLS_SERVICE_NAME": "ferry-scoring",
                "POWERTOOLS_METRICS_NAMESPACE": "Ferry",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        # The API invokes the alias, so provisioned concurrency (prod) and later traffic
        # shifting apply without changing the integration; dev has the same alias, just cold.
        self.alias = self.function.add_alias(
            "live",
            provisioned_concurrent_executions=provisioned_concurrency or None,
        )
        self._grant_least_privilege(model_bucket, model_key, registry_table)
        self._acknowledge_findings(model_bucket)

    def _grant_least_privilege(
        self, model_bucket: s3.IBucket, model_key: kms.IKey, registry_table: dynamodb.ITable
    ) -> None:
        """Explicit statements instead of grant_read*, which would also allow List/Scan/Describe."""
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
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
        acknowledge(
            self.function.node.default_child,
            "Serverless-LambdaDLQ",
            "Only API Gateway invokes this function, synchronously: a failure goes back to the "
            "caller as an HTTP error, there is no asynchronous event to dead-letter.",
        )
