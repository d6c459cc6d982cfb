"""Retention: every stored copy of data expires on a schedule from config, except the
governance record, which no rule touches."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from ferry_core.batch.accounting import TTL_ATTRIBUTE
from infra.config import ENVIRONMENTS, EnvironmentConfig
from infra.governance import ANCHOR_PREFIX
from infra.retention import (
    ACCESS_LOG_RETENTION,
    DATA_FALLBACK_ID,
    DATA_RETENTION,
    MODEL_RETENTION,
    Retention,
)
from infra.storage import MODELS_PREFIX

ROOT = Path(__file__).resolve().parents[2]
# Where the code names the keys it writes: the core and the stack.
SOURCES = (ROOT / "layers" / "core" / "ferry_core", ROOT / "infra")
# The governance record: the model store's versions and the audit chain's anchors.
KEPT_FOREVER = {MODELS_PREFIX, ANCHOR_PREFIX}
GOVERNANCE_TABLES = ("TablesRegistryTable", "TablesAuditTable")


def _prefix_constants() -> dict[str, str]:
    """Every module-level UPPER_CASE string constant shaped like an S3 key prefix (`a/b/`),
    read from the source: a new prefix constant anywhere is found without listing it here."""
    found: dict[str, str] = {}
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
                    continue
                value = node.value.value
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if (
                    isinstance(value, str)
                    and names
                    and names[0].isupper()
                    and value.endswith("/")
                    and not value.startswith("/")
                    and " " not in value
                ):
                    found[f"{path.relative_to(ROOT)}:{names[0]}"] = value
    return found


def _bucket(template_json: dict[str, Any], id_part: str) -> dict[str, Any]:
    (bucket,) = [
        resource
        for logical_id, resource in template_json["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket" and id_part in logical_id
    ]
    return bucket


def _rules(template_json: dict[str, Any], id_part: str) -> list[dict[str, Any]]:
    bucket = _bucket(template_json, id_part)
    return bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])


def _all_rules(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        rule
        for resource in template_json["Resources"].values()
        if resource["Type"] == "AWS::S3::Bucket"
        for rule in resource["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
    ]


def test_the_scan_finds_the_prefixes_the_code_writes() -> None:
    """
    Given the source of the core and the stack
    When I collect their key-prefix constants
    Then the batch outputs, the capture, training, candidate and anchor prefixes are among them
    """
    prefixes = set(_prefix_constants().values())
    assert {"batch/incoming/", "batch/scored/", "batch/rejected/", "batch/manifests/"} <= prefixes
    assert {"batch/staging/", "capture/rows/", "capture/reports/", "training/"} <= prefixes
    assert {"candidates/", "anchors/", "models/"} <= prefixes


def test_every_prefix_the_code_writes_has_its_own_rule(template_json: dict[str, Any]) -> None:
    """
    Given every key-prefix constant of the core and the stack
    When I look for the lifecycle rule that covers it
    Then each prefix but the governance record's has a rule of its own (the data bucket's
        catch-all does not count), so a new prefix without a rule fails here
    """
    prefixed = [rule["Prefix"] for rule in _all_rules(template_json) if rule.get("Prefix")]
    missing = {
        where: prefix
        for where, prefix in _prefix_constants().items()
        if prefix not in KEPT_FOREVER and not any(prefix.startswith(p) for p in prefixed)
    }
    assert missing == {}


def test_no_rule_touches_the_governance_record(template_json: dict[str, Any]) -> None:
    """
    Given the model store and the audit anchor bucket
    When I read their lifecycle rules
    Then no rule covers models/ (no catch-all, no prefix of it), and the anchor bucket, under
        Object Lock, has no lifecycle rule at all
    """
    model_rules = _rules(template_json, "StorageModelBucket")
    assert model_rules
    for rule in model_rules:
        assert rule.get("Prefix"), "a rule without a prefix would expire models/"
        assert not MODELS_PREFIX.startswith(rule["Prefix"])
    assert _rules(template_json, "GovernanceAnchorBucket") == []
    anchor = _bucket(template_json, "GovernanceAnchorBucket")
    assert anchor["Properties"]["ObjectLockEnabled"] is True


@pytest.mark.parametrize(
    ("bucket", "table"),
    [
        ("StorageDataBucket", DATA_RETENTION),
        ("StorageModelBucket", MODEL_RETENTION),
        ("StorageAccessLogsBucket", (ACCESS_LOG_RETENTION,)),
    ],
)
def test_each_rule_expires_every_version_after_its_config_field(
    template_json: dict[str, Any], env: str, bucket: str, table: tuple[Retention, ...]
) -> None:
    """
    Given a bucket's lifecycle rules and the environment's config
    When I read each rule
    Then current and noncurrent versions expire after the rule's config fields, and unfinished
        multipart uploads are aborted
    """
    config = ENVIRONMENTS[env]
    rules = {rule["Id"]: rule for rule in _rules(template_json, bucket)}
    for retention in table:
        rule = rules.pop(retention.rule_id)
        assert rule["Status"] == "Enabled"
        assert rule.get("Prefix", "") == retention.prefix
        assert rule["ExpirationInDays"] == getattr(config, retention.days)
        assert rule["NoncurrentVersionExpiration"] == {
            "NoncurrentDays": getattr(config, retention.noncurrent)
        }
        assert rule["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": config.incomplete_upload_days
        }
    if bucket == "StorageDataBucket":
        fallback = rules.pop(DATA_FALLBACK_ID)
        assert "Prefix" not in fallback
        longest = max(getattr(config, r.days) for r in DATA_RETENTION)
        assert fallback["ExpirationInDays"] == longest
        assert "AbortIncompleteMultipartUpload" in fallback
    assert rules == {}


def test_every_table_but_the_governance_record_expires_its_items(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Given every DynamoDB table of the stack
    When I read its TTL
    Then the registry and the audit table have none, every other table has one, on the
        attribute the core writes, and the batch functions get its period from config
    """
    tables = {
        k: r for k, r in template_json["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"
    }
    governance = [k for k in tables if k.startswith(GOVERNANCE_TABLES)]
    assert len(governance) == len(GOVERNANCE_TABLES)
    for logical_id, table in tables.items():
        ttl = table["Properties"].get("TimeToLiveSpecification")
        if logical_id in governance:
            assert ttl is None, logical_id
        else:
            assert ttl == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}, logical_id
    seconds = ENVIRONMENTS[env].batch_idempotency_retention_days * 24 * 3600
    batch = [
        r["Properties"]["Environment"]["Variables"]
        for k, r in template_json["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and k.startswith("Batch")
    ]
    assert batch
    assert {v["IDEMPOTENCY_SECONDS"] for v in batch} == {str(seconds)}


def _dev_with(**changes: Any) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(ENVIRONMENTS["dev"].model_dump() | changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"batch_scored_retention_days": 3, "batch_manifest_retention_days": 5},
            "at least batch_manifest_retention_days",
        ),
        (
            {"batch_rejected_retention_days": 3, "batch_manifest_retention_days": 5},
            "at least batch_manifest_retention_days",
        ),
        ({"capture_retention_days": 1, "drift_window_hours": 48}, "cover drift_window_hours"),
        (
            {"candidate_retention_days": 1, "approval_timeout_hours": 72},
            "cover approval_timeout_hours",
        ),
        ({"batch_idempotency_retention_days": 7}, "greater than or equal to 14"),
    ],
)
def test_a_copy_never_expires_before_what_depends_on_it(
    changes: dict[str, Any], message: str
) -> None:
    """
    Given retention periods where a copy would expire before a copy or a process needing it
    When the config is validated
    Then it is refused with the reason
    """
    with pytest.raises(ValueError, match=message):
        _dev_with(**changes)


def test_every_retention_names_a_described_day_field() -> None:
    """
    Given the retention tables
    When I look up each field they name
    Then it is an integer field of EnvironmentConfig with a description
    """
    fields = EnvironmentConfig.model_fields
    named = {
        name
        for r in (*DATA_RETENTION, *MODEL_RETENTION, ACCESS_LOG_RETENTION)
        for name in (r.days, r.noncurrent)
    } | {"incomplete_upload_days", "batch_idempotency_retention_days"}
    for name in named:
        assert fields[name].annotation is int, name
        assert fields[name].description, name
