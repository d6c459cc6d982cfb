"""An in-process AWS (moto) holding Ferry's buckets and tables, for the demo and benchmarks.

The same resources the stack defines: a versioned model bucket, a data bucket, the registry
table (`model`/`sk`) and the audit table (`model`/`seq`). `environment()` is what the stack
gives the scoring function, so the real handler runs against it unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass(frozen=True)
class LocalResources:
    model_bucket: str = "ferry-local-models"
    data_bucket: str = "ferry-local-data"
    registry_table: str = "ferry-local-registry"
    audit_table: str = "ferry-local-audit"
    anchor_bucket: str = "ferry-local-audit-anchors"
    anchor_retention_days: int = 1
    # Batch scoring (issue 5): S3 → SQS (redrive to a DLQ) → batch function, idempotency table.
    batch_queue: str = "ferry-local-batch"
    batch_dlq: str = "ferry-local-batch-dlq"
    idempotency_table: str = "ferry-local-batch-idempotency"

    def batch_environment(self, cache_dir: str) -> dict[str, str]:
        """The batch function's environment, as infra/batch.py sets it."""
        return {
            **self.environment(cache_dir),
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "AUDIT_ANCHOR_BUCKET": self.anchor_bucket,
            "POWERTOOLS_SERVICE_NAME": "ferry-batch",
        }

    def environment(self, cache_dir: str) -> dict[str, str]:
        """The scoring function's environment, as the stack sets it."""
        return {
            "FERRY_ENV": "local",
            "MODEL_BUCKET": self.model_bucket,
            "DATA_BUCKET": self.data_bucket,
            "REGISTRY_TABLE": self.registry_table,
            "AUDIT_TABLE": self.audit_table,
            "REGISTRY_CACHE_SECONDS": "5",
            "MODEL_CACHE_DIR": cache_dir,
            "POWERTOOLS_SERVICE_NAME": "ferry-scoring",
            "POWERTOOLS_METRICS_NAMESPACE": "Ferry",
        }


def create_resources(res: LocalResources, region: str = REGION) -> None:
    """Create the buckets and tables in whatever AWS endpoint boto3 points at (moto here)."""
    s3 = boto3.client("s3", region_name=region)
    for bucket in (res.model_bucket, res.data_bucket):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # The audit anchor bucket: Object Lock in compliance mode, as infra/governance.py makes it.
    s3.create_bucket(Bucket=res.anchor_bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=res.anchor_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": res.anchor_retention_days}},
        },
    )
    ddb = boto3.client("dynamodb", region_name=region)
    tables: list[tuple[str, str, str, str]] = [
        (res.registry_table, "model", "sk", "S"),
        (res.audit_table, "model", "seq", "N"),
    ]
    for name, pk, sk, sk_type in tables:
        ddb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": pk, "KeyType": "HASH"},
                {"AttributeName": sk, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": pk, "AttributeType": "S"},
                {"AttributeName": sk, "AttributeType": sk_type},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    create_batch_resources(res, region)


def create_batch_resources(res: LocalResources, region: str = REGION) -> None:
    """The batch path as infra/batch.py builds it: queue + DLQ, S3 notification, idempotency."""
    import json

    boto3.client("dynamodb", region_name=region).create_table(
        TableName=res.idempotency_table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs", region_name=region)
    dlq_url = sqs.create_queue(QueueName=res.batch_dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(
        QueueName=res.batch_queue,
        Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "60"},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    boto3.client("s3", region_name=region).put_bucket_notification_configuration(
        Bucket=res.data_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn["QueueArn"],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": "batch/incoming/"}]}
                    },
                }
            ]
        },
    )


@contextmanager
def local_aws(
    res: LocalResources | None = None, cache_dir: str = "/tmp/ferry-local-models"
) -> Iterator[LocalResources]:
    """moto in this process, with Ferry's resources created and the function env exported."""
    from moto import mock_aws

    res = res or LocalResources()
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, *res.environment(cache_dir)]}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.update(res.environment(cache_dir))
    try:
        with mock_aws():
            create_resources(res)
            yield res
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clients(region: str = REGION) -> dict[str, Any]:
    return {
        "s3": boto3.client("s3", region_name=region),
        "dynamodb": boto3.client("dynamodb", region_name=region),
        "sqs": boto3.client("sqs", region_name=region),
    }
