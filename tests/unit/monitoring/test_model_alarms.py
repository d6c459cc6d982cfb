"""A model's alarms as data: the specs, their PutMetricAlarm requests, the put at registration."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ferry_core.card import Lineage
from ferry_core.monitoring.alarms import (
    KINDS,
    AlarmSettings,
    ModelAlarmFields,
    ModelAlarms,
    RegisteredEvent,
    alarm_name,
    model_alarm_specs,
)
from ferry_core.registry.events import DETAIL_TYPES, SOURCE
from ferry_core.registry.governance import GovernanceSettings, connect
from ferry_core.registry.registration import register

TOPIC = "arn:aws:sns:us-east-1:123456789012:alarms"
SETTINGS = AlarmSettings.model_validate(
    {
        "namespace": "Ferry",
        "scoring_service": "ferry-scoring",
        "batch_service": "ferry-batch",
        "drift_service": "ferry-drift",
        "latency_p99_ms": 250,
        "error_rate_4xx": 0.25,
        "error_rate_5xx": 0.01,
        "drift_psi": 0.2,
        "drift_period_seconds": 3600,
    }
)


def _dims(metric: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in metric["Dimensions"]}


def test_names_follow_the_one_prefix() -> None:
    """Every alarm of a model is `Ferry-{env}-model-{model}-{kind}`, one per kind."""
    alarms = ModelAlarms(None, SETTINGS, "dev", (TOPIC,))
    assert alarms.names("fraud") == [
        "Ferry-dev-model-fraud-latency-p99",
        "Ferry-dev-model-fraud-errors-4xx",
        "Ferry-dev-model-fraud-errors-5xx",
        "Ferry-dev-model-fraud-drift",
        "Ferry-dev-model-fraud-batch-failures",
    ]
    assert [s.kind for s in model_alarm_specs(SETTINGS, "fraud")] == list(KINDS)


def test_single_metric_specs_carry_the_settings() -> None:
    """
    Given the environment's alarm settings
    Then latency watches the model's scoring p99 (3 of 5 minutes), drift its DriftMaxPSI at
        the drift schedule's period (≥ threshold), batch failures any failed file; every
        alarm notifies the topic and treats missing data as not breaching
    """
    specs = {s.kind: s for s in model_alarm_specs(SETTINGS, "fraud")}
    latency = specs["latency-p99"].request("n", (TOPIC,))
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Period"]) == (
        "Latency",
        "p99",
        60,
    )
    assert "Statistic" not in latency and latency["Threshold"] == 250
    assert _dims(latency) == {"model": "fraud", "service": "ferry-scoring"}
    assert (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (5, 3)
    drift = specs["drift"].request("n", (TOPIC,))
    assert (drift["Namespace"], drift["MetricName"], drift["Statistic"]) == (
        "Ferry",
        "DriftMaxPSI",
        "Maximum",
    )
    assert (drift["Period"], drift["Threshold"]) == (3600, 0.2)
    assert drift["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert _dims(drift) == {"model": "fraud", "service": "ferry-drift"}
    batch = specs["batch-failures"].request("n", (TOPIC,))
    assert (batch["MetricName"], batch["Statistic"], batch["Threshold"]) == (
        "BatchFailures",
        "Sum",
        0,
    )
    assert _dims(batch) == {"model": "fraud", "service": "ferry-batch"}
    for spec in specs.values():
        request = spec.request("n", (TOPIC,))
        assert request["AlarmActions"] == [TOPIC] and request["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(("code", "threshold"), [("4xx", 0.25), ("5xx", 0.01)])
def test_error_rates_are_metric_math_over_the_models_requests(code: str, threshold: float) -> None:
    """An error rate divides the model's 4xx (or 5xx) count by all its predict requests."""
    (spec,) = [s for s in model_alarm_specs(SETTINGS, "fraud") if s.kind == f"errors-{code}"]
    request = spec.request("n", (TOPIC,))
    assert "MetricName" not in request and request["Threshold"] == threshold
    *reads, returned = request["Metrics"]
    assert (
        returned["Expression"] == f"FILL(e{code[0]}, 0) / (FILL(ok, 0) + FILL(e4, 0) + FILL(e5, 0))"
    )
    assert returned["ReturnData"] is True and not any(q["ReturnData"] for q in reads)
    assert {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in reads} == {
        "ok": "Latency",
        "e4": "Errors4xx",
        "e5": "Errors5xx",
    }
    assert all(_dims(q["MetricStat"]["Metric"])["model"] == "fraud" for q in reads)


def test_ensure_puts_the_same_alarms_every_time(aws: Any) -> None:
    """
    Given CloudWatch (moto)
    When a model's alarms are ensured twice
    Then CloudWatch holds its five alarms once each, as specified
    """
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    alarms = ModelAlarms(cloudwatch, SETTINGS, "local", (TOPIC,))
    assert alarms.ensure("fraud") == alarms.ensure("fraud") == alarms.names("fraud")
    found = cloudwatch.describe_alarms(AlarmNamePrefix="Ferry-local-model-fraud-")["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in found) == sorted(alarms.names("fraud"))
    drift = next(a for a in found if a["AlarmName"] == alarm_name("local", "fraud", "drift"))
    assert (drift["MetricName"], drift["Threshold"], drift["AlarmActions"]) == (
        "DriftMaxPSI",
        0.2,
        [TOPIC],
    )
    with pytest.raises(ValueError, match="model name"):
        alarms.ensure("Not A Model")


def _gov(aws: Any, boto: dict[str, Any], tmp_path: Any, monitors: Any) -> Any:
    """Governance of the moto stack with `monitors` (no events: not what is tested here)."""
    tables = {"registry_table": aws.registry_table, "audit_table": aws.audit_table}
    where = {"anchor_bucket": aws.anchor_bucket, "cache_dir": str(tmp_path / "cache")}
    clients = {"dynamodb": boto["dynamodb"], "s3": boto["s3"], "events": None}
    return connect(**clients, **tables, **where, env="local", monitors=monitors)


def test_registration_puts_the_models_alarms(
    aws: Any, boto: dict[str, Any], built: Any, tmp_path: Any
) -> None:
    """
    Given governance connected with the model alarms
    When a version of a model never seen before is registered
    Then that model's alarms exist right after, with no warning on the outcome
    """
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    gov = _gov(aws, boto, tmp_path, ModelAlarms(cloudwatch, SETTINGS, "local", (TOPIC,)))
    _, outcome = register(built, "fraud", boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    assert outcome.warnings == []
    found = cloudwatch.describe_alarms(AlarmNamePrefix="Ferry-local-model-fraud-")["MetricAlarms"]
    assert len(found) == len(KINDS)


class _Refused:
    def ensure(self, model: str) -> list[str]:
        raise RuntimeError("AccessDenied: cloudwatch:PutMetricAlarm")


def test_a_failed_put_is_a_warning_and_the_registration_stands(
    aws: Any, boto: dict[str, Any], built: Any, tmp_path: Any
) -> None:
    """A refused PutMetricAlarm leaves the committed registration and its audit entry, and
    says so on the outcome (as a late anchor does)."""
    gov = _gov(aws, boto, tmp_path, _Refused())
    card, outcome = register(built, "fraud", boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    assert outcome.entry is not None and outcome.entry.event == "register"
    assert gov.reader.card("fraud", card.version).version == card.version
    (warning,) = outcome.warnings
    assert "fraud's alarms were not put" in warning and "AccessDenied" in warning


def test_settings_come_from_the_functions_environment() -> None:
    """MODEL_ALARMS (JSON) and ALARM_TOPIC_ARN make the monitors; without them there are none."""
    base = {
        "FERRY_ENV": "dev",
        "MODEL_BUCKET": "m",
        "REGISTRY_TABLE": "r",
        "AUDIT_TABLE": "a",
        "AUDIT_ANCHOR_BUCKET": "b",
    }
    assert GovernanceSettings.from_env(base).model_monitors(None, "dev") is None
    env = base | {"MODEL_ALARMS": SETTINGS.model_dump_json(), "ALARM_TOPIC_ARN": TOPIC}
    settings = GovernanceSettings.from_env(env)
    assert isinstance(settings, ModelAlarmFields)
    monitors = settings.model_monitors(None, "dev")
    assert isinstance(monitors, ModelAlarms)
    assert monitors.names("x")[0] == "Ferry-dev-model-x-latency-p99"
    with pytest.raises(ValueError):
        GovernanceSettings.from_env(base | {"MODEL_ALARMS": json.dumps({"namespace": "Ferry"})})


def test_the_registration_event_names_the_model() -> None:
    """The registry's `register` event (as published) is what the function accepts."""
    event = {
        "source": SOURCE,
        "detail-type": DETAIL_TYPES["register"],
        "detail": {"model": "fraud"},
    }
    assert RegisteredEvent.model_validate(event).detail.model == "fraud"
    with pytest.raises(ValueError):
        RegisteredEvent.model_validate(event | {"detail-type": DETAIL_TYPES["promote"]})
