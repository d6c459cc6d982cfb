"""Object storage: the model store, the data bucket and the access-log bucket they log to."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

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
        removal_policy: RemovalPolicy,
        access_log_retention: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = access_logs_bucket(
            self, "AccessLogsBucket", retention=access_log_retention, removal_policy=removal_policy
        )
        self.model_key, self.model_bucket = secure_bucket(
            self, "Model", logs_bucket=self.access_logs_bucket, removal_policy=removal_policy
        )
        self.data_key, self.data_bucket = secure_bucket(
            self, "Data", logs_bucket=self.access_logs_bucket, removal_policy=removal_policy
        )


def access_logs_bucket(
    scope: Construct, construct_id: str, *, retention: Duration, removal_policy: RemovalPolicy
) -> s3.Bucket:
    """A private, versioned bucket that receives S3 server access logs for `retention`."""
    return s3.Bucket(
        scope,
        construct_id,
        # S3 server access logging can only deliver to SSE-S3 buckets, not SSE-KMS.
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        lifecycle_rules=[
            s3.LifecycleRule(
                expiration=retention,
                noncurrent_version_expiration=Duration.days(1),
            )
        ],
        removal_policy=removal_policy,
    )


def secure_bucket(
    scope: Construct, name: str, *, logs_bucket: s3.IBucket, removal_policy: RemovalPolicy
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
        removal_policy=removal_policy,
    )
    return key, bucket
