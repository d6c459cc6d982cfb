"""Monitoring in the synthesized templates: every alarm, thresholds from config, one topic,
the drift function and its schedule, the drift → retraining rule and the dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import ENVIRONMENTS, EnvironmentConfig
from infra.monitoring import pascal


def _resources(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == kind}


def _one(template_json: dict[str, Any], kind: str, part: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, v) for k, v in _resources(template_json, kind).items() if part in k]
    return found


def _alarm(template_json: dict[str, Any], part: str) -> dict[str, Any]:
    return _one(template_json, "AWS::CloudWatch::Alarm", part)[1]["Properties"]


def _topic_ref(template_json: dict[str, Any]) -> dict[str, str]:
    return {"Ref": _one(template_json, "AWS::SNS::Topic", "MonitoringAlarmTopic")[0]}


def _dims(props: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in props["Dimensions"]}


def test_every_alarm_notifies_the_one_topic(template_json: dict[str, Any]) -> None:
    """
    Given the stack's alarms (monitoring's and batch's)
    Then there is exactly one SNS topic, KMS-encrypted with a key CloudWatch may use, and
        every alarm's only action is to notify it
    """
    (topic,) = _resources(template_json, "AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    _, key = _one(template_json, "AWS::KMS::Key", "MonitoringTopicKey")
    principals = [s["Principal"] for s in key["Properties"]["KeyPolicy"]["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    alarms = _resources(template_json, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 11
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [_topic_ref(template_json)], logical_id


@pytest.mark.parametrize("model", ENVIRONMENTS["dev"].monitored_models)
def test_per_model_alarms_carry_the_config_thresholds(
    template_json: dict[str, Any], env: str, model: str
) -> None:
    """
    Given an environment's config
    When I read each monitored model's alarms
    Then p99 latency, 4xx/5xx rates, drift and batch failures watch that model's metrics
        with the thresholds and schedule of the config
    """
    c: EnvironmentConfig = ENVIRONMENTS[env]
    mid = pascal(model)
    latency = _alarm(template_json, f"{mid}LatencyP99")
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p99")
    assert latency["Threshold"] == c.p99_latency_budget_ms
    assert _dims(latency) == {"model": model, "service": "ferry-scoring"}
    assert (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (5, 3)

    for code, threshold in (("4xx", c.error_rate_4xx_alarm), ("5xx", c.error_rate_5xx_alarm)):
        rate = _alarm(template_json, f"{mid}Errors{code}Rate")
        assert rate["Threshold"] == threshold
        (expr,) = [m for m in rate["Metrics"] if "Expression" in m]
        assert expr["Expression"].startswith(f"FILL(e{code[0]}, 0) / (FILL(ok, 0)")
        watched = {
            m["MetricStat"]["Metric"]["MetricName"]
            for m in rate["Metrics"]
            if "MetricStat" in m and _dims(m["MetricStat"]["Metric"])["model"] == model
        }
        assert watched == {"Latency", "Errors4xx", "Errors5xx"}

    drift = _alarm(template_json, f"{mid}Drift")
    assert (drift["MetricName"], drift["Statistic"]) == ("DriftMaxPSI", "Maximum")
    assert drift["Threshold"] == c.drift_psi_alarm
    assert drift["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert drift["Period"] == c.drift_schedule_minutes * 60
    assert drift["TreatMissingData"] == "notBreaching"
    assert _dims(drift) == {"model": model, "service": "ferry-drift"}

    batch = _alarm(template_json, f"{mid}BatchFailures")
    assert (batch["MetricName"], batch["Threshold"]) == ("BatchFailures", 0)
    assert _dims(batch) == {"model": model, "service": "ferry-batch"}


def test_fleet_alarms_cover_queues_pipelines_and_the_drift_function(
    template_json: dict[str, Any],
) -> None:
    """
    Then the batch DLQ, the monitoring DLQ, batch file failures, the batch fan-out state
        machine's failures and the drift function's own failures are alarmed on
    """
    sm_id, _ = _one(template_json, "AWS::StepFunctions::StateMachine", "BatchFanOut")
    pipeline = _alarm(template_json, "BatchFanOutPipelineFailures")
    names = {
        m["MetricStat"]["Metric"]["MetricName"] for m in pipeline["Metrics"] if "MetricStat" in m
    }
    assert names == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert all(
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] == {"Ref": sm_id}
        for m in pipeline["Metrics"]
        if "MetricStat" in m
    )
    for part in ("BatchDeadLetterAlarm", "MonitoringDeadLetterQueueNotEmpty"):
        assert _alarm(template_json, part)["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert _alarm(template_json, "BatchFailureAlarm")["Threshold"] == 0
    assert _alarm(template_json, "DriftFunctionErrors")["MetricName"] == "Errors"
    assert _alarm(template_json, "MonitoringDriftFailures")["MetricName"] == "DriftFailures"


def test_drift_alarm_feeds_the_retraining_rule(template_json: dict[str, Any]) -> None:
    """
    Then an EventBridge rule matches the drift alarms (and only them) entering ALARM; its
        target (the retraining workflow) is added with `add_retrain_target`
    """
    _, rule = _one(template_json, "AWS::Events::Rule", "DriftAlarmRule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    drift_ids = {
        k
        for k in _resources(template_json, "AWS::CloudWatch::Alarm")
        if k.startswith("Monitoring") and "Drift" in k and "DriftF" not in k
    }
    assert {r["Fn::GetAtt"][0] for r in pattern["resources"]} == drift_ids
    assert len(drift_ids) == len(ENVIRONMENTS["dev"].monitored_models)


def test_drift_function_runs_on_the_configured_schedule(
    template_json: dict[str, Any], template: Template, env: str
) -> None:
    """
    Then the drift function (an image) gets the config's thresholds, window and minimum
        sample size, runs at drift_schedule_minutes, and failed deliveries go to a DLQ
    """
    c = ENVIRONMENTS[env]
    fn_id, fn = _one(template_json, "AWS::Lambda::Function", "MonitoringDriftFunction")
    variables = fn["Properties"]["Environment"]["Variables"]
    assert fn["Properties"]["PackageType"] == "Image"
    assert {k: variables[k] for k in variables if k.startswith("DRIFT_")} == {
        "DRIFT_PSI_WARN": str(c.drift_psi_warn),
        "DRIFT_PSI_ALARM": str(c.drift_psi_alarm),
        "DRIFT_WINDOW_HOURS": str(c.drift_window_hours),
        "DRIFT_MIN_SAMPLES": str(c.drift_min_samples),
    }
    _, rule = _one(template_json, "AWS::Events::Rule", "MonitoringSchedule")
    minutes = c.drift_schedule_minutes
    want = (
        f"rate({minutes // 60} hour{'s' if minutes > 60 else ''})"
        if minutes % 60 == 0
        else (f"rate({minutes} minutes)")
    )
    assert rule["Properties"]["ScheduleExpression"] == want
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "events.amazonaws.com", "FunctionName": {"Fn::GetAtt": [fn_id, "Arn"]}},
    )


def test_drift_role_reads_capture_and_writes_only_reports(template_json: dict[str, Any]) -> None:
    """
    Then the drift role reads capture/rows/, writes capture/reports/, lists only the capture
        prefix and reads (never writes) the registry
    """
    role_id, _ = _one(template_json, "AWS::IAM::Role", "MonitoringDriftRole")
    statements = [
        s
        for p in _resources(template_json, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["ReadCapture"]["Resource"]["Fn::Join"][1][1] == "/capture/rows/*"
    assert by_sid["WriteReports"]["Resource"]["Fn::Join"][1][1] == "/capture/reports/*"
    assert by_sid["ListCapture"]["Condition"] == {"StringLike": {"s3:prefix": ["capture/rows/*"]}}
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not {
        a
        for a in actions
        if a.startswith("dynamodb:") and a not in ("dynamodb:GetItem", "dynamodb:Query")
    }


def test_dashboard_shows_latency_traffic_errors_drift_and_batch(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Then one dashboard per environment has widgets for latency percentiles, traffic, errors,
        drift per feature (with the config's PSI lines) and batch volumes, and the alarms
    """
    (dashboard,) = _resources(template_json, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in (
        "Scoring latency (ms): p50 / p90 / p99",
        "Traffic",
        "Errors: 4xx and 5xx",
        "Drift: PSI per feature",
        "Drift: KS statistic",
        "Batch volumes",
        "DriftPSI",
        "RowsScored",
        '\\"alarms\\"',
    ):
        assert needle in body, needle
    c = ENVIRONMENTS[env]
    assert f'\\"value\\":{c.drift_psi_alarm}' in body
    assert f'\\"value\\":{c.p99_latency_budget_ms}' in body


def test_config_refuses_inconsistent_monitoring_settings() -> None:
    base = ENVIRONMENTS["dev"].model_dump()
    with pytest.raises(ValueError, match="drift_psi_warn"):
        EnvironmentConfig(**{**base, "drift_psi_warn": 0.3, "drift_psi_alarm": 0.2})
    with pytest.raises(ValueError, match="monitored_models"):
        EnvironmentConfig(**{**base, "monitored_models": ("Credit Risk",)})
    with pytest.raises(ValueError):
        EnvironmentConfig(**{**base, "capture_sample_rate": 1.5})
