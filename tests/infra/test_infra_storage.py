"""Buckets, keys and tables: hardened identically in every environment."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import ENVIRONMENTS

STATEFUL_TYPES = (
    "AWS::S3::Bucket",
    "AWS::KMS::Key",
    "AWS::DynamoDB::Table",
    "AWS::Logs::LogGroup",
)


def _one(template: Template, resource_type: str, id_part: str) -> tuple[str, dict[str, Any]]:
    matches = {
        logical_id: resource
        for logical_id, resource in template.find_resources(resource_type).items()
        if id_part in logical_id
    }
    assert len(matches) == 1, f"expected one {resource_type} {id_part!r}: {sorted(matches)}"
    return next(iter(matches.items()))


@pytest.mark.parametrize("name", ["Model", "Data"])
def test_content_buckets_are_versioned_kms_encrypted_private_and_logged(
    template: Template, name: str
) -> None:
    """
    Given the synthesized stack
    When I look at the model and the data bucket
    Then each is versioned, encrypted with its own rotating customer key, blocks all public
        access, enforces bucket-owner object ownership and logs access to the log bucket
    """
    key_id, key = _one(template, "AWS::KMS::Key", f"Storage{name}Key")
    _, bucket = _one(template, "AWS::S3::Bucket", f"Storage{name}Bucket")
    logs_id, _ = _one(template, "AWS::S3::Bucket", "StorageAccessLogsBucket")
    props = bucket["Properties"]

    assert key["Properties"]["EnableKeyRotation"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": logs_id},
        "LogFilePrefix": f"{name.lower()}/",
    }


def test_access_log_bucket_is_private_and_sse_s3(template: Template) -> None:
    """
    Given the access-log bucket
    When I read its encryption and public access settings
    Then it uses SSE-S3 (the only encryption log delivery supports) and blocks public access
    """
    _, bucket = _one(template, "AWS::S3::Bucket", "StorageAccessLogsBucket")
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(props["PublicAccessBlockConfiguration"].values())


def test_every_bucket_denies_requests_without_tls(template: Template) -> None:
    """
    Given every bucket in the stack
    When I look for its bucket policy
    Then the policy denies all s3 actions when aws:SecureTransport is false
    """
    buckets = template.find_resources("AWS::S3::Bucket")
    policies = template.find_resources("AWS::S3::BucketPolicy").values()
    tls_only = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                statement["Effect"] == "Deny"
                and statement["Action"] == "s3:*"
                and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            ):
                tls_only.add(policy["Properties"]["Bucket"]["Ref"])
    assert tls_only == set(buckets)


def test_tables_have_contract_keys_pitr_encryption_and_on_demand_billing(
    template: Template,
) -> None:
    """
    Given the registry and audit tables
    When I read their definitions
    Then keys are (model S, sk S) and (model S, seq N), PITR and SSE are on, billing on demand
    """
    expected = {
        "TablesRegistryTable": ("sk", "S"),
        "TablesAuditTable": ("seq", "N"),
    }
    for id_part, (sort_key, sort_type) in expected.items():
        _, table = _one(template, "AWS::DynamoDB::Table", id_part)
        props = table["Properties"]
        assert props["KeySchema"] == [
            {"AttributeName": "model", "KeyType": "HASH"},
            {"AttributeName": sort_key, "KeyType": "RANGE"},
        ]
        assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
            [
                {"AttributeName": "model", "AttributeType": "S"},
                {"AttributeName": sort_key, "AttributeType": sort_type},
            ],
            key=lambda a: a["AttributeName"],
        )
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["BillingMode"] == "PAY_PER_REQUEST"


def test_stateful_resources_follow_the_configured_removal_policy(
    template: Template, env: str
) -> None:
    """
    Given an environment's removal policy (prod: retain, dev: destroy)
    When I read every bucket, key, table and log group
    Then their DeletionPolicy and UpdateReplacePolicy match it, and retained tables are
        deletion-protected
    """
    retain = ENVIRONMENTS[env].removal_policy == "retain"
    expected = "Retain" if retain else "Delete"
    for resource_type in STATEFUL_TYPES:
        resources = template.find_resources(resource_type)
        assert resources, resource_type
        for logical_id, resource in resources.items():
            assert resource["DeletionPolicy"] == expected, logical_id
            assert resource["UpdateReplacePolicy"] == expected, logical_id
    for table in template.find_resources("AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is retain
