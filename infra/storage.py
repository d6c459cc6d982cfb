"""Object storage: the model store, the data bucket and the access-log bucket they log to.

Every bucket's lifecycle rules come from infra/retention.py (one config field per copy)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.retention import access_log_rules, data_rules, model_rules

MODELS_PREFIX = "models/"


class Storage(Construct):
    """Versioned, KMS-encrypted, TLS-only, private buckets, each with its own customer key.

    One key per bucket so a grant on the model store (scoring) never opens the data bucket.
    Model objects live at `models/{model}/v{version}/model.onnx` and `.../card.json`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = access_logs_bucket(
            self,
            "AccessLogsBucket",
            lifecycle_rules=access_log_rules(config),
            removal_policy=removal_policy,
        )
        self.model_key, self.model_bucket = secure_bucket(
            self,
            "Model",
            logs_bucket=self.access_logs_bucket,
            lifecycle_rules=model_rules(config),
            removal_policy=removal_policy,
        )
        self.data_key, self.data_bucket = secure_bucket(
            self,
            "Data",
            logs_bucket=self.access_logs_bucket,
            lifecycle_rules=data_rules(config),
            removal_policy=removal_policy,
        )


def access_logs_bucket(
    scope: Construct,
    construct_id: str,
    *,
    lifecycle_rules: Sequence[s3.LifecycleRule],
    removal_policy: RemovalPolicy,
) -> s3.Bucket:
    """A private, versioned bucket that receives S3 server access logs, expired by its rules."""
    return s3.Bucket(
        scope,
        construct_id,
        # S3 server access logging can only deliver to SSE-S3 buckets, not SSE-KMS.
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        lifecycle_rules=list(lifecycle_rules) or None,
        removal_policy=removal_policy,
    )


def secure_bucket(
    scope: Construct,
    name: str,
    *,
    logs_bucket: s3.IBucket,
    removal_policy: RemovalPolicy,
    lifecycle_rules: Sequence[s3.LifecycleRule] = (),
) -> tuple[kms.Key, s3.Bucket]:
    """One hardened bucket and its rotating customer key; logs under `{name}/`."""
    key = kms.Key(
        scope,
        f"{name}Key",
        description=f"Ferry {name.lower()} bucket encryption",
        enable_key_rotation=True,
        removal_policy=removal_policy,
    )
    bucket = s3.Bucket(
        scope,
        f"{name}Bucket",
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        server_access_logs_bucket=logs_bucket,
        server_access_logs_prefix=f"{name.lower()}/",
        lifecycle_rules=list(lifecycle_rules) or None,
        removal_policy=removal_policy,
    )
    return key, bucket
