"""EMF lines printed by functions become CloudWatch metrics, kept raw for percentiles."""

from __future__ import annotations

import contextlib
import io
import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from ferry_local.emf import Datapoint, MetricSink, MetricStore, dims, parse_line, parse_logs


def powertools_output() -> str:
    """What the scoring handler prints: Powertools Metrics and a single_metric, plus a log."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        m = Metrics(namespace="Ferry", service="ferry-scoring")
        m.add_dimension("model", "credit-risk")
        m.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=3.5)
        m.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=7.0)
        m.add_metric(name="InstancesScored", unit=MetricUnit.Count, value=2)
        m.add_metadata(key="version", value=1)
        m.flush_metrics()
        print(json.dumps({"level": "INFO", "message": "scored"}))
        with single_metric(name="Errors", unit=MetricUnit.Count, value=1, namespace="Ferry") as s:
            s.add_dimension("code", "validation_failed")
    return out.getvalue()


def test_powertools_emf_yields_one_datapoint_per_value_and_dimension_set() -> None:
    points, problems = parse_logs(powertools_output())
    assert problems == []
    latency = [p for p in points if p.name == "Latency"]
    assert [p.value for p in latency] == [3.5, 7.0]
    assert latency[0].dimensions == (("model", "credit-risk"), ("service", "ferry-scoring"))
    assert latency[0].unit == "Milliseconds" and latency[0].namespace == "Ferry"
    assert abs(latency[0].timestamp - time.time()) < 60
    errors = [p for p in points if p.name == "Errors"]
    assert len(errors) == 1 and dict(errors[0].dimensions)["code"] == "validation_failed"
    assert {p.name for p in points} == {"Latency", "InstancesScored", "Errors"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"_aws": {"CloudWatchMetrics": []}}', "Timestamp"),
        ('{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Metrics": []}]}}', "Namespace"),
        (
            '{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", '
            '"Dimensions": [["model"]], "Metrics": [{"Name": "M"}]}]}, "M": 1}',
            "dimension 'model'",
        ),
        (
            '{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", '
            '"Metrics": [{"Name": "M"}]}]}, "M": "fast"}',
            "metric 'M'",
        ),
        ('{"_aws": oops', "not valid JSON"),
    ],
)
def test_invalid_emf_yields_no_metric_and_says_why(line: str, problem: str) -> None:
    points, reason = parse_line(line)
    assert points == []
    assert reason is not None and problem in reason


def test_ordinary_log_lines_are_not_metrics_nor_problems() -> None:
    text = 'START RequestId: 1\n{"level": "INFO", "message": "hi"}\nplain text\n'
    assert parse_logs(text) == ([], [])


def test_an_empty_dimension_set_is_the_dimensionless_series() -> None:
    line = json.dumps(
        {
            "_aws": {
                "Timestamp": 1_000,
                "CloudWatchMetrics": [
                    {"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "M"}]}
                ],
            },
            "M": [1, 2],
        }
    )
    points, _ = parse_line(line)
    assert [(p.dimensions, p.value, p.timestamp) for p in points] == [
        ((), 1.0, 1.0),
        ((), 2.0, 1.0),
    ]


def test_store_returns_values_of_exactly_one_series_in_a_half_open_window() -> None:
    store = MetricStore()
    key = dims({"model": "a"})
    store.add(
        [
            Datapoint("N", "M", key, 1.0, 100.0),
            Datapoint("N", "M", key, 2.0, 110.0),
            Datapoint("N", "M", key, 3.0, 120.0),
            Datapoint("N", "M", dims({"model": "a", "service": "s"}), 9.0, 110.0),
        ]
    )
    assert store.values("N", "M", key, 100.0, 120.0) == [1.0, 2.0]
    assert store.values("N", "M", dims({"model": "b"}), 0, 1e9) == []
    store.prune(now=115.0 + store._retention)
    assert store.values("N", "M", key, 0, 1e9) == [3.0]


def test_sink_forwards_metrics_to_cloudwatch_on_flush() -> None:
    sink = MetricSink()
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        sink("ferry-scoring", powertools_output())
        sink("ferry-scoring", '{"_aws": {"Timestamp": "x"}}')
        assert sink.problems and sink.problems[0][0] == "ferry-scoring"
        assert sink.flush(cw) == 4
        assert sink.flush(cw) == 0  # nothing sent twice
        now = datetime.now(UTC)
        stats = cw.get_metric_statistics(
            Namespace="Ferry",
            MetricName="Latency",
            Dimensions=[
                {"Name": "model", "Value": "credit-risk"},
                {"Name": "service", "Value": "ferry-scoring"},
            ],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=1),
            Period=3600,
            Statistics=["Sum", "SampleCount", "Maximum"],
        )["Datapoints"]
        assert len(stats) == 1
        assert stats[0]["Sum"] == 10.5 and stats[0]["SampleCount"] == 2
        assert stats[0]["Maximum"] == 7.0 and stats[0]["Unit"] == "Milliseconds"
        names = {m["MetricName"] for m in cw.list_metrics(Namespace="Ferry")["Metrics"]}
        assert names == {"Latency", "InstancesScored", "Errors"}


def test_lambda_report_lines_become_the_aws_lambda_metrics() -> None:
    from ferry_local.emf import lambda_report_points

    logs = (
        "START RequestId: a Version: $LATEST\n"
        "REPORT RequestId: a\tDuration: 12.50 ms\tMemory Size: 1024 MB\n"
        "REPORT RequestId: b\tDuration: 3.00 ms\tMemory Size: 1024 MB\tStatus: error\n"
    )
    points = lambda_report_points("fn", logs, at=100.0)
    by_name: dict[str, list[float]] = {}
    for p in points:
        assert p.namespace == "AWS/Lambda" and p.dimensions == (("FunctionName", "fn"),)
        by_name.setdefault(p.name, []).append(p.value)
    assert by_name == {"Invocations": [1.0, 1.0], "Errors": [0.0, 1.0], "Duration": [12.5, 3.0]}
