"""Monitoring in the synthesized templates: the fleet's alarms, one topic, the model alarms the
governance function may put (settings from config, grant scoped to their names), the drift
function and its schedule, the drift → retraining rule and the dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from ferry_core.registry.events import DETAIL_TYPES, SOURCE
from infra.config import ENVIRONMENTS, EnvironmentConfig


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
    assert len(alarms) >= 6
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [_topic_ref(template_json)], logical_id


def _statements(template_json: dict[str, Any], role_part: str) -> list[dict[str, Any]]:
    role_id, _ = _one(template_json, "AWS::IAM::Role", role_part)
    return [
        s
        for p in _resources(template_json, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _targets_function(rule: dict[str, Any], fn_id: str, template: Template) -> None:
    """The rule's one target: the function, with retries, a dead-letter queue, a permission."""
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "events.amazonaws.com", "FunctionName": {"Fn::GetAtt": [fn_id, "Arn"]}},
    )


def test_no_model_is_named_in_the_template(template_json: dict[str, Any]) -> None:
    """
    Given the synthesized stack
    Then no alarm watches a `model` dimension: every model's alarms are put at registration
    """
    for logical_id, alarm in _resources(template_json, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        dimensions = list(props.get("Dimensions") or [])
        for query in props.get("Metrics") or []:
            dimensions += (query.get("MetricStat") or {}).get("Metric", {}).get("Dimensions", [])
        assert "model" not in {d["Name"] for d in dimensions}, logical_id


def test_governance_function_gets_the_model_alarm_settings_of_the_config(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Given an environment's config
    When I read the governance function's environment
    Then MODEL_ALARMS carries that config's thresholds and periods and the metrics' names,
        and ALARM_TOPIC_ARN is the stack's one alarm topic
    """
    c: EnvironmentConfig = ENVIRONMENTS[env]
    _, fn = _one(template_json, "AWS::Lambda::Function", "GovernanceFunction")
    variables = fn["Properties"]["Environment"]["Variables"]
    assert variables["ALARM_TOPIC_ARN"] == _topic_ref(template_json)
    assert json.loads(variables["MODEL_ALARMS"]) == {
        "namespace": "Ferry",
        "scoring_service": "ferry-scoring",
        "batch_service": "ferry-batch",
        "drift_service": "ferry-drift",
        "latency_p99_ms": c.p99_latency_budget_ms,
        "error_rate_4xx": c.error_rate_4xx_alarm,
        "error_rate_5xx": c.error_rate_5xx_alarm,
        "drift_psi": c.drift_psi_alarm,
        "fast_period_seconds": 60,
        "fast_evaluation_periods": 5,
        "fast_datapoints_to_alarm": 3,
        "drift_period_seconds": c.drift_schedule_minutes * 60,
    }


def test_governance_may_put_model_alarms_and_no_other(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Then the governance role's only CloudWatch alarm write is PutMetricAlarm on alarms named
        `Ferry-{env}-model-*`, and no other role may put alarms
    """
    puts = [
        s
        for s in _statements(template_json, "GovernanceRole")
        if "cloudwatch:PutMetricAlarm" in json.dumps(s["Action"])
    ]
    assert [s["Action"] for s in puts] == ["cloudwatch:PutMetricAlarm"]
    resource = json.dumps(puts[0]["Resource"])
    assert f':alarm:Ferry-{env}-model-*"' in resource and resource.count("alarm:") == 1
    for policy_id, policy in _resources(template_json, "AWS::IAM::Policy").items():
        if policy_id.startswith("GovernanceRole"):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = json.dumps(statement["Action"])
            assert "PutMetricAlarm" not in actions and "DeleteAlarms" not in actions, policy_id


def test_registration_events_reach_the_governance_function(
    template_json: dict[str, Any], template: Template
) -> None:
    """
    Then a rule sends every `Model Version Registered` registry event to the governance
        function (which puts that model's alarms again), with retries and a dead-letter queue
    """
    fn_id, _ = _one(template_json, "AWS::Lambda::Function", "GovernanceFunction")
    _, rule = _one(template_json, "AWS::Events::Rule", "ModelRegisteredRule")
    assert rule["Properties"]["EventPattern"] == {  # what the core publishes on register
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPES["register"]],
    }
    _targets_function(rule, fn_id, template)


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


def test_drift_alarm_feeds_the_retraining_rule(template_json: dict[str, Any], env: str) -> None:
    """
    Then one EventBridge rule matches any model's drift alarm (by name: the prefix of model
        alarms, ending in `-drift`) entering ALARM; its target (the retraining workflow) is
        added with `add_retrain_target`
    """
    _, rule = _one(template_json, "AWS::Events::Rule", "DriftAlarmRule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {
            "alarmName": [{"wildcard": f"Ferry-{env}-model-*-drift"}],
            "state": {"value": ["ALARM"]},
        },
    }


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
    _targets_function(rule, fn_id, template)


def test_drift_role_reads_capture_and_writes_only_reports(template_json: dict[str, Any]) -> None:
    """
    Then the drift role reads capture/rows/, writes capture/reports/, lists only the capture
        prefix and reads (never writes) the registry
    """
    statements = _statements(template_json, "MonitoringDriftRole")
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
        drift per feature (with the config's PSI lines) and batch volumes, the stack's alarms
        and a link to every model's alarms
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
        f"Ferry-{env}-model-",
    ):
        assert needle in body, needle
    c = ENVIRONMENTS[env]
    assert f'\\"value\\":{c.drift_psi_alarm}' in body
    assert f'\\"value\\":{c.p99_latency_budget_ms}' in body


def test_config_refuses_inconsistent_monitoring_settings() -> None:
    base = ENVIRONMENTS["dev"].model_dump()
    with pytest.raises(ValueError, match="drift_psi_warn"):
        EnvironmentConfig(**{**base, "drift_psi_warn": 0.3, "drift_psi_alarm": 0.2})
    with pytest.raises(ValueError, match="monitored_models"):  # every model is monitored
        EnvironmentConfig(**{**base, "monitored_models": ("credit-risk",)})
    with pytest.raises(ValueError):
        EnvironmentConfig(**{**base, "capture_sample_rate": 1.5})
