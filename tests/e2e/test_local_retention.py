"""The local platform stores the stack's retention as AWS would: lifecycle rules and TTLs.

moto applies neither (it expires no object and deletes no item): expiry is AWS's job, and the
local platform only holds the rules, read back through the same API (README "Retention")."""

from __future__ import annotations

from typing import Any

from ferry_local.moto_stack import local_stack
from ferry_local.template import Resolver


def _template_rules(bucket: str) -> list[dict[str, Any]]:
    stack = local_stack()
    resolver = Resolver(stack.template, stack_name=stack.name)
    for logical_id, resource in stack.template["Resources"].items():
        if resource["Type"] == "AWS::S3::Bucket" and resolver.physical_id(logical_id) == bucket:
            return resource["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
    raise KeyError(bucket)


def test_buckets_hold_the_templates_lifecycle_rules(aws: Any, boto: dict[str, Any]) -> None:
    """
    Given the local stack created from the template
    When I read each content bucket's lifecycle configuration through the S3 API
    Then it holds the template's rules, prefix by prefix, with their days
    """
    for bucket in (aws.data_bucket, aws.model_bucket):
        stored = boto["s3"].get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        expected = _template_rules(bucket)
        assert [r["ID"] for r in stored] == [r["Id"] for r in expected]
        for got, want in zip(stored, expected, strict=True):
            assert got["Filter"].get("Prefix", "") == want.get("Prefix", "")
            assert got["Expiration"]["Days"] == want["ExpirationInDays"]
            assert (
                got["NoncurrentVersionExpiration"]["NoncurrentDays"]
                == (want["NoncurrentVersionExpiration"]["NoncurrentDays"])
            )
            assert got["AbortIncompleteMultipartUpload"] == want["AbortIncompleteMultipartUpload"]


def test_only_the_idempotency_table_has_a_ttl(aws: Any, boto: dict[str, Any]) -> None:
    """
    Given the local stack's tables
    When I describe their TTL
    Then the idempotency table expires items on `expiration`; the registry and audit do not
    """
    ddb = boto["dynamodb"]

    def ttl(table: str) -> dict[str, Any]:
        return ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]

    assert ttl(aws.idempotency_table) == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expiration",
    }
    for table in (aws.registry_table, aws.audit_table):
        assert ttl(table)["TimeToLiveStatus"] == "DISABLED"
