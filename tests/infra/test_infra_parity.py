"""Dev and prod stay identical: every template difference is explained by a config field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from infra.config import ENVIRONMENTS, EnvironmentConfig
from infra.retention import ACCESS_LOG_RETENTION, DATA_RETENTION, MODEL_RETENTION

if TYPE_CHECKING:
    from conftest import Synthesis


def _lifecycle_explanations() -> dict[str, tuple[str, ...]]:
    """The lifecycle paths each retention field sets, found by rule position: a rule's
    current and noncurrent days, and every rule's multipart abort. The data bucket's last rule
    (the catch-all) takes the longest of the data bucket's periods."""
    buckets = {
        "StorageDataBucket": (*DATA_RETENTION, None),
        "StorageModelBucket": MODEL_RETENTION,
        "StorageAccessLogsBucket": (ACCESS_LOG_RETENTION,),
    }
    out: dict[str, list[str]] = {}

    def explain(fields: list[str], path: str) -> None:
        for field in fields:
            out.setdefault(field, []).append(path)

    for bucket, rules in buckets.items():
        for index, rule in enumerate(rules):
            path = rf"^Resources/{bucket}\w+/Properties/LifecycleConfiguration/Rules/{index}/"
            covered = [rule] if rule else list(DATA_RETENTION)
            explain([r.days for r in covered], f"{path}ExpirationInDays$")
            explain([r.noncurrent for r in covered], f"{path}NoncurrentVersionExpiration/")
            explain(["incomplete_upload_days"], f"{path}AbortIncompleteMultipartUpload/")
    return {field: tuple(paths) for field, paths in out.items()}


# Which template paths each config field may change. A difference matching no pattern, or only
# patterns of fields that are equal in dev and prod, fails the parity test.
EXPLAINED_BY: dict[str, tuple[str, ...]] = {
    "name": (
        r"/Tags/\d+/Value$",  # Environment tag (list-style tags)
        r"/Tags/Environment$",  # Environment tag (map-style tags, API Gateway)
        r"/Environment/Variables/FERRY_ENV$",
        r"^Resources/ApiHttpApi\w+/Properties/Name$",  # API named after the stack
        # Model alarms are named Ferry-{env}-model-{model}-{kind}: the drift rule's pattern,
        # the governance role's grant and the dashboard's link name that prefix.
        r"^Resources/MonitoringDriftAlarmRule\w+/Properties/EventPattern/detail/alarmName/0/",
        r"^Resources/GovernanceRoleDefaultPolicy\w+/Properties/PolicyDocument/Statement/\d+/"
        r"Resource/Fn::Join/1/\d+$",
        r"^Resources/MonitoringDashboard\w+/Properties/DashboardBody",
    ),
    "removal_policy": (
        r"^Resources/\w+/(DeletionPolicy|UpdateReplacePolicy)$",
        r"^Resources/Tables\w+/Properties/DeletionProtectionEnabled$",
        r"^Resources/BatchIdempotencyTable\w+/Properties/DeletionProtectionEnabled$",
    ),
    "log_retention_days": (r"^Resources/\w+/Properties/RetentionInDays$",),
    # Retention (infra/retention.py): each field explains the days of its own rules only.
    **_lifecycle_explanations(),
    "batch_idempotency_retention_days": (r"/Environment/Variables/IDEMPOTENCY_SECONDS$",),
    "registry_cache_seconds": (r"/Environment/Variables/REGISTRY_CACHE_SECONDS$",),
    "function_architectures": (
        r"^Resources/\w+/Properties/Architectures/0$",
        r"^Resources/\w+/Properties/Code/ImageUri",  # the image built for that architecture
    ),
    "scoring_memory_mb": (r"^Resources/ScoringFunction\w+/Properties/MemorySize$",),
    "scoring_timeout_seconds": (r"^Resources/ScoringFunction\w+/Properties/Timeout$",),
    "scoring_reserved_concurrency": (
        r"^Resources/ScoringFunction\w+/Properties/ReservedConcurrentExecutions$",
    ),
    "scoring_provisioned_concurrency": (
        r"^Resources/ScoringFunctionAlias\w+/Properties/ProvisionedConcurrencyConfig$",
    ),
    "audit_anchor_retention_days": (
        r"^Resources/GovernanceAnchorBucket\w+/Properties/ObjectLockConfiguration/Rule/"
        r"DefaultRetention/Days$",
    ),
    "approval_required": (r"/Environment/Variables/APPROVAL_REQUIRED$",),
    "api_throttle_rate_limit": (r"/DefaultRouteSettings/ThrottlingRateLimit$",),
    "api_throttle_burst_limit": (r"/DefaultRouteSettings/ThrottlingBurstLimit$",),
    "api_auth": (
        r"^Resources/ApiHttpApi\w+/Properties/(AuthorizationType|AuthorizerId)$",
        r"^Resources/ApiHttpApiJwtAuthorizer\w+$",
    ),
    "jwt_issuer": (r"^Resources/ApiHttpApiJwtAuthorizer\w+/Properties/JwtConfiguration",),
    "jwt_audience": (r"^Resources/ApiHttpApiJwtAuthorizer\w+/Properties/JwtConfiguration",),
    # Monitoring (infra/monitoring.py). alarm_email adds or removes a resource, so it must be
    # equal in dev and prod (test_same_resources...). A model's alarm thresholds reach the
    # governance function's MODEL_ALARMS, from which it puts that model's alarms.
    "capture_sample_rate": (r"/Environment/Variables/CAPTURE_SAMPLE_RATE$",),
    "capture_max_records": (r"/Environment/Variables/CAPTURE_MAX_RECORDS$",),
    "capture_max_age_seconds": (r"/Environment/Variables/CAPTURE_MAX_AGE_SECONDS$",),
    "drift_psi_warn": (
        r"/Environment/Variables/DRIFT_PSI_WARN$",
        r"^Resources/MonitoringDashboard\w+/Properties/DashboardBody",
    ),
    "drift_psi_alarm": (
        r"/Environment/Variables/DRIFT_PSI_ALARM$",
        r"/Environment/Variables/MODEL_ALARMS$",
        r"^Resources/MonitoringDashboard\w+/Properties/DashboardBody",
    ),
    "drift_window_hours": (r"/Environment/Variables/DRIFT_WINDOW_HOURS$",),
    "drift_min_samples": (r"/Environment/Variables/DRIFT_MIN_SAMPLES$",),
    "drift_schedule_minutes": (
        r"^Resources/MonitoringSchedule\w+/Properties/ScheduleExpression$",
        r"/Environment/Variables/MODEL_ALARMS$",
        r"^Resources/MonitoringDashboard\w+/Properties/DashboardBody",
    ),
    "error_rate_4xx_alarm": (r"/Environment/Variables/MODEL_ALARMS$",),
    "error_rate_5xx_alarm": (r"/Environment/Variables/MODEL_ALARMS$",),
    # Retrain & promote (infra/retraining.py): function settings and the run timeout.
    "training_memory_mb": (r"^Resources/RetrainTraining\w+/Properties/MemorySize$",),
    "training_timeout_minutes": (
        r"^Resources/RetrainTraining\w+/Properties/Timeout$",
        r"^Resources/RetrainStateMachine\w+/Properties/DefinitionString",
    ),
    "validation_memory_mb": (r"^Resources/RetrainValidation\w+/Properties/MemorySize$",),
    "approval_timeout_hours": (
        r"/Environment/Variables/APPROVAL_TIMEOUT_SECONDS$",
        r"^Resources/RetrainStateMachine\w+/Properties/DefinitionString",
    ),
    "canary_percent": (r"/Environment/Variables/CANARY_PERCENT$",),
    "canary_minutes": (
        r"/Environment/Variables/CANARY_SECONDS$",
        r"^Resources/RetrainStateMachine\w+/Properties/DefinitionString",
    ),
    "canary_min_requests": (r"/Environment/Variables/CANARY_POLICY$",),
    "canary_max_error_rate_delta": (r"/Environment/Variables/CANARY_POLICY$",),
    "canary_max_latency_ratio": (r"/Environment/Variables/CANARY_POLICY$",),
    "retrain_schedule": (
        r"^Resources/RetrainScheduleRule\w+/Properties/ScheduleExpression$",
        r"^Resources/RetrainScheduleStateMachine\w+/Properties/DefinitionString",
    ),
    "gate_parity_tolerance": (r"/Environment/Variables/GATE_PARITY_TOLERANCE$",),
    "gate_metric_tolerance": (r"/Environment/Variables/GATE_METRIC_TOLERANCE$",),
    "gate_segment_floor": (r"/Environment/Variables/GATE_SEGMENT_FLOOR$",),
    "gate_segment_min_rows": (r"/Environment/Variables/GATE_SEGMENT_MIN_ROWS$",),
    "gate_latency_p99_ms": (r"/Environment/Variables/GATE_LATENCY_P99_MS$",),
    "p99_latency_budget_ms": (
        r"/Environment/Variables/MODEL_ALARMS$",
        r"^Resources/MonitoringDashboard\w+/Properties/DashboardBody",
    ),
}


def _normalize(template: dict[str, Any], config: EnvironmentConfig) -> dict[str, Any]:
    """Drop CDK bookkeeping, mask the target account/region, give Lambda versions a stable id.

    Account and region appear inside ARNs and URLs; masking them lets the diff still check
    everything around them. A function's current version is named after a hash of the
    function's configuration, so any config-driven function setting (memory, env vars, ...)
    renames it; that rename is explained by the fields that show up in the function itself.
    """
    resources = template["Resources"]
    renames = {
        logical_id: f"{logical_id[:-32]}NORMALIZED"
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Lambda::Version"
    }
    text = json.dumps(template)
    for old, new in renames.items():
        text = text.replace(old, new)
    for value, mask in ((config.region, "<region>"), (config.account, "<account>")):
        if value:
            text = text.replace(value, mask)
    normalized = json.loads(text)
    for resource in normalized["Resources"].values():
        resource.pop("Metadata", None)
    normalized["Resources"].pop("CDKMetadata", None)
    normalized.get("Conditions", {}).pop("CDKMetadataAvailable", None)
    return normalized


def _diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Paths (slash-separated) where two JSON documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            child = f"{path}/{key}" if path else key
            if key not in a or key not in b:
                yield child
            else:
                yield from _diff(a[key], b[key], child)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}/{index}")
    elif a != b:
        yield path


def _differing_fields(dev: EnvironmentConfig, prod: EnvironmentConfig) -> set[str]:
    return {
        field
        for field in EnvironmentConfig.model_fields
        if getattr(dev, field) != getattr(prod, field)
    }


def test_dev_and_prod_templates_differ_only_in_config_fields(synthesis: Synthesis) -> None:
    """
    Given the synthesized dev and prod templates and their configs
    When I diff the normalized templates path by path
    Then every differing path is explained by a config field whose dev and prod values differ
    """
    dev_config, prod_config = ENVIRONMENTS["dev"], ENVIRONMENTS["prod"]
    differing = _differing_fields(dev_config, prod_config)
    dev = _normalize(synthesis.templates["dev"], dev_config)
    prod = _normalize(synthesis.templates["prod"], prod_config)

    paths = list(_diff(dev, prod))
    unexplained = [
        path
        for path in paths
        if not any(
            re.search(pattern, path)
            for field in differing
            for pattern in EXPLAINED_BY.get(field, ())
        )
    ]
    assert unexplained == []
    assert paths, "dev and prod configs differ, so their templates must too"


def test_same_resources_in_every_environment(synthesis: Synthesis) -> None:
    """
    Given the normalized dev and prod templates
    When I compare their logical ids and types
    Then both declare the same resources (construct ids carry no stage)
    """
    dev, prod = (
        _normalize(synthesis.templates[env], ENVIRONMENTS[env])["Resources"]
        for env in ("dev", "prod")
    )
    assert {k: v["Type"] for k, v in dev.items()} == {k: v["Type"] for k, v in prod.items()}


def test_explanations_name_real_config_fields() -> None:
    """
    Given the table of explained differences
    When I compare its keys to EnvironmentConfig
    Then each key is a field, so a renamed field cannot silently widen what may differ
    """
    assert set(EXPLAINED_BY) <= set(EnvironmentConfig.model_fields)
