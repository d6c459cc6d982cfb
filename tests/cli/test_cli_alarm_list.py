"""`ferry alarms`: only the stack's alarms, how each is read, and the one-line failures."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from ferry_cli.alarm_list import select, stack_alarms
from ferry_cli.main import app

STACK = "Ferry-local"


def put_alarms(cloudwatch: Any) -> None:
    """A model's latency alarm, a model's metric-math alarm, a platform alarm and another
    stack's alarm (which must not be listed)."""
    common = {"Threshold": 0.0, "ComparisonOperator": "GreaterThanThreshold"}
    dims = [{"Name": "model", "Value": "m"}, {"Name": "service", "Value": "scoring"}]
    cloudwatch.put_metric_alarm(
        AlarmName=f"{STACK}-Latency",
        Namespace="Ferry",
        MetricName="Latency",
        Dimensions=dims,
        ExtendedStatistic="p99",
        Period=60,
        EvaluationPeriods=5,
        DatapointsToAlarm=3,
        **{**common, "Threshold": 300.0},
    )
    stat = {"Namespace": "Ferry", "Dimensions": dims}
    sums = {"Stat": "Sum", "Period": 60}
    cloudwatch.put_metric_alarm(
        AlarmName=f"{STACK}-Rate",
        Metrics=[
            {"Id": "e", "Expression": "FILL(b, 0) / FILL(a, 0)", "Period": 60},
            *(
                {
                    "Id": i,
                    "ReturnData": False,
                    "MetricStat": {"Metric": {**stat, "MetricName": n}, **sums},
                }
                for i, n in (("a", "Requests"), ("b", "Errors4xx"))
            ),
        ],
        EvaluationPeriods=1,
        **common,
    )
    for name in (f"{STACK}-Queue", "Ferry-localother-X", "Ferry-dev-Queue"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=[{"Name": "QueueName", "Value": "dlq"}],
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            **common,
        )
    cloudwatch.set_alarm_state(AlarmName=f"{STACK}-Rate", StateValue="ALARM", StateReason="high")
    cloudwatch.set_alarm_state(
        AlarmName=f"{STACK}-Queue", StateValue="INSUFFICIENT_DATA", StateReason="unknown"
    )


def test_only_the_stacks_alarms_alarm_first_each_read_as_it_is_defined() -> None:
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        put_alarms(cloudwatch)
        found = select(stack_alarms(cloudwatch, STACK))
    assert [a.name for a in found] == [f"{STACK}-Rate", f"{STACK}-Queue", f"{STACK}-Latency"]
    rate, queue, latency = found
    assert rate.expression == "FILL(b, 0) / FILL(a, 0)" and rate.period == 60
    assert [m.id for m in rate.metrics] == ["a", "b"] and rate.models == ["m"]
    assert rate.state_reason == "high" and rate.transitioned_at
    assert queue.models == [] and queue.statistic == "Maximum"
    assert latency.statistic == "p99" and latency.condition() == "> 300, 3 of 5"
    assert latency.aggregation() == "p99 / 60s"
    assert json.loads(json.dumps(latency.as_dict()))["metrics"][0]["dimensions"]["model"] == "m"
    assert [a.name for a in select(found, state="ALARM")] == [f"{STACK}-Rate"]
    assert [a.name for a in select(found, model="m")] == [f"{STACK}-Rate", f"{STACK}-Latency"]


def ferry_alarms(*args: str) -> Any:
    return CliRunner().invoke(app, ["alarms", "--env", "local", *args])


def test_no_local_platform_is_a_one_line_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "local.json"))
    result = ferry_alarms()
    assert result.exit_code == 1
    assert result.output.startswith("ferry alarms: the local platform is not running")
    assert result.output.count("\n") == 1


def test_an_endpoint_that_does_not_answer_is_a_one_line_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    doc = {
        "aws_endpoint_url": f"http://127.0.0.1:{port}",
        "region": "us-east-1",
        "stack": STACK,
        "outputs": {},
        "identities": {
            "admin": {
                "access_key_id": "ASIAEXAMPLE",
                "secret_access_key": "secret",
                "session_token": "token",
                "role_arn": "arn:aws:iam::123456789012:role/admin",
                "arn": "arn:aws:sts::123456789012:assumed-role/admin/admin",
            }
        },
    }
    (tmp_path / "local.json").write_text(json.dumps(doc))
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "local.json"))
    result = ferry_alarms()
    assert result.exit_code == 1
    assert result.output.startswith("ferry alarms: AWS call failed: Could not connect")
    assert result.output.count("\n") == 1


def test_an_unknown_state_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    result = ferry_alarms("--state", "FIRING")
    assert result.exit_code == 1
    assert "--state must be one of ALARM, INSUFFICIENT_DATA, OK" in result.output
