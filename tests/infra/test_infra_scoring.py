"""The scoring function: image, settings from config, and a read-only role (but for capture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Template

from infra.config import ENVIRONMENTS
from infra.stack import stack_name

if TYPE_CHECKING:
    from conftest import Synthesis

EXPECTED_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "kms:Decrypt",
    # Data capture: new objects under the data bucket's capture/rows/ only.
    "s3:PutObject",
    "kms:GenerateDataKey",
}
FORBIDDEN_ACTIONS = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
}


def _logical_id(template: Template, resource_type: str, id_part: str) -> str:
    (logical_id,) = [i for i in template.find_resources(resource_type) if id_part in i]
    return logical_id


def _function(template: Template) -> dict[str, Any]:
    """The scoring function (the stack has other functions: governance, ...)."""
    logical_id = _logical_id(template, "AWS::Lambda::Function", "ScoringFunction")
    return template.find_resources("AWS::Lambda::Function")[logical_id]


def _role_statements(template: Template) -> list[dict[str, Any]]:
    """Every statement granted to the scoring role, inline or through attached policies."""
    role_id = _logical_id(template, "AWS::IAM::Role", "ScoringRole")
    role = template.find_resources("AWS::IAM::Role")[role_id]
    assert "ManagedPolicyArns" not in role["Properties"]
    statements = [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_function_is_an_x86_image_with_tracing_and_config_sizes(
    template: Template, env: str
) -> None:
    """
    Given an environment's config
    When I read the scoring function
    Then it is an x86_64 container image with active tracing, and memory, timeout and reserved
        concurrency come from the config
    """
    config = ENVIRONMENTS[env]
    props = _function(template)["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["x86_64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["MemorySize"] == config.scoring_memory_mb
    assert props["Timeout"] == config.scoring_timeout_seconds
    assert props.get("ReservedConcurrentExecutions") == config.scoring_reserved_concurrency


def test_function_environment_is_the_documented_contract(template: Template, env: str) -> None:
    """
    Given the scoring function
    When I read its environment variables
    Then they are exactly the documented set, pointing at this stack's buckets and tables
    """
    config = ENVIRONMENTS[env]
    variables = _function(template)["Properties"]["Environment"]["Variables"]
    assert variables == {
        "FERRY_ENV": config.name,
        "MODEL_BUCKET": {"Ref": _logical_id(template, "AWS::S3::Bucket", "StorageModelBucket")},
        "DATA_BUCKET": {"Ref": _logical_id(template, "AWS::S3::Bucket", "StorageDataBucket")},
        "REGISTRY_TABLE": {"Ref": _logical_id(template, "AWS::DynamoDB::Table", "Registry")},
        "REGISTRY_CACHE_SECONDS": str(config.registry_cache_seconds),
        "REGISTRY_REFRESH_SECONDS": "1.0",
        "MODEL_CACHE_DIR": "/tmp/ferry-models",
        "POWERTOOLS_SERVICE_NAME": "ferry-scoring",
        "POWERTOOLS_METRICS_NAMESPACE": "Ferry",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "CAPTURE_SAMPLE_RATE": str(config.capture_sample_rate),
        "CAPTURE_MAX_RECORDS": str(config.capture_max_records),
        "CAPTURE_MAX_AGE_SECONDS": str(config.capture_max_age_seconds),
    }


def test_function_logs_to_its_own_group_with_configured_retention(
    template: Template, env: str
) -> None:
    """
    Given the scoring function
    When I follow its logging configuration
    Then it writes to a dedicated log group kept for log_retention_days
    """
    group_id = _logical_id(template, "AWS::Logs::LogGroup", "ScoringLogGroup")
    group = template.find_resources("AWS::Logs::LogGroup")[group_id]
    assert _function(template)["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": group_id}}
    assert group["Properties"]["RetentionInDays"] == ENVIRONMENTS[env].log_retention_days


def test_live_alias_carries_provisioned_concurrency_from_config(
    template: Template, env: str
) -> None:
    """
    Given an environment's provisioned concurrency (0 in dev)
    When I read the `live` alias
    Then it has that many warm instances, and none configured when the setting is 0
    """
    (alias,) = template.find_resources("AWS::Lambda::Alias").values()
    wanted = ENVIRONMENTS[env].scoring_provisioned_concurrency
    assert alias["Properties"]["Name"] == "live"
    config = alias["Properties"].get("ProvisionedConcurrencyConfig")
    assert config == ({"ProvisionedConcurrentExecutions": wanted} if wanted else None)


def test_role_grants_exactly_the_read_only_actions(template: Template) -> None:
    """
    Given the scoring role
    When I collect every action it is allowed
    Then they are exactly the read-only set plus the capture write: no registry writes, no
        deletes, no wildcards, no managed policies
    """
    statements = _role_statements(template)
    assert all(statement["Effect"] == "Allow" for statement in statements)
    actions = {action for statement in statements for action in _actions(statement)}
    assert actions == EXPECTED_ACTIONS
    assert not actions & FORBIDDEN_ACTIONS
    assert not [action for action in actions if "*" in action]


def test_role_resources_are_scoped(template: Template) -> None:
    """
    Given the scoring role's statements
    When I read their resources
    Then S3 reads are limited to the model bucket's models/ prefix, KMS to the model key, the
        only write is PutObject under the data bucket's capture/rows/ (with its key), and
        only the X-Ray statement (no resource-level permissions exist) uses Resource *
    """
    bucket_id = _logical_id(template, "AWS::S3::Bucket", "StorageModelBucket")
    model_key = {"Fn::GetAtt": [_logical_id(template, "AWS::KMS::Key", "ModelKey"), "Arn"]}
    registry = {"Fn::GetAtt": [_logical_id(template, "AWS::DynamoDB::Table", "Registry"), "Arn"]}
    capture = {s.get("Sid"): s for s in _role_statements(template)}
    data_id = _logical_id(template, "AWS::S3::Bucket", "StorageDataBucket")
    assert capture["WriteCapture"]["Action"] == "s3:PutObject"
    assert capture["WriteCapture"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [data_id, "Arn"]}, "/capture/rows/*"]]
    }
    data_key = {"Fn::GetAtt": [_logical_id(template, "AWS::KMS::Key", "DataKey"), "Arn"]}
    assert capture["EncryptCapture"]["Resource"] == data_key
    by_first_action = {
        _actions(s)[0].split(":")[0]: s
        for s in _role_statements(template)
        if s.get("Sid") not in ("WriteCapture", "EncryptCapture")
    }

    assert by_first_action["s3"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/models/*"]]
    }
    assert by_first_action["kms"]["Resource"] == model_key
    assert by_first_action["dynamodb"]["Resource"] == registry
    wildcard = [s for s in _role_statements(template) if s["Resource"] == "*"]
    assert {a for s in wildcard for a in _actions(s)} == {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


def test_image_context_holds_only_what_the_image_copies(synthesis: Synthesis) -> None:
    """
    Given the staged Docker asset of the scoring image (build context = repository root)
    When I list its files
    Then only functions/scoring, layers/core and requirements/runtime.txt are there: no .venv,
        node_modules, cdk.out, tests or caches
    """
    manifest_path = synthesis.outdir / f"{stack_name(ENVIRONMENTS['dev'])}.assets.json"
    manifest = json.loads(manifest_path.read_text())
    (image,) = [
        i
        for i in manifest["dockerImages"].values()
        if i["source"]["dockerFile"] == "functions/scoring/Dockerfile"
    ]
    context = synthesis.outdir / image["source"]["directory"]
    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}

    assert "functions/scoring/Dockerfile" in files
    assert "requirements/runtime.txt" in files
    allowed = ("functions/scoring/", "layers/core/", "requirements/runtime.txt")
    assert [f for f in files if not f.startswith(allowed)] == []
    assert [f for f in files if "__pycache__" in Path(f).parts or f.endswith(".pyc")] == []
