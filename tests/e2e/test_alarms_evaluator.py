"""The alarm evaluator: statistics, M-of-N periods, missing data, metric math, and what a state
change does (set_alarm_state, the EventBridge event, SNS alarm actions)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from ferry_local import eventbridge, moto_hooks
from ferry_local.alarms import (
    AlarmEvaluator,
    evaluate_expression,
    search_series,
    statistic,
)
from ferry_local.emf import MetricSink, dims
from ferry_local.service_metrics import ServiceSampler

REGION = "us-east-1"
T0 = 2_000_000_000.0


def emf(name: str, values: list[float], at: float, **dimensions: str) -> str:
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(at * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": "Ferry",
                        "Dimensions": [sorted(dimensions)],
                        "Metrics": [{"Name": name, "Unit": "Milliseconds"}],
                    }
                ],
            },
            name: values,
            **dimensions,
        }
    )


class Rig:
    def __init__(self, clients: dict[str, Any]) -> None:
        self.clients = clients
        self.cw = clients["cloudwatch"]
        self.now = T0
        self.sink = MetricSink()
        self.dispatcher = eventbridge.Dispatcher(eventbridge.RegionalClients(clients))
        self.evaluator = AlarmEvaluator(
            clients,
            self.sink,
            self.dispatcher,
            clock=lambda: self.now,
            sampler=ServiceSampler(eventbridge.RegionalClients(clients), self.sink),
        )

    def publish(self, name: str, values: list[float], ago: float = 1.0, **dims: str) -> None:
        self.sink("fn", emf(name, values, self.now - ago, **dims))

    def alarm(self, name: str = "a", **props: Any) -> None:
        base: dict[str, Any] = {
            "AlarmName": name,
            "Namespace": "Ferry",
            "MetricName": "Latency",
            "Dimensions": [{"Name": "model", "Value": "m"}],
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 100.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "ExtendedStatistic": "p99",
        }
        base.update(props)
        if "Statistic" in props or "Metrics" in props:
            base.pop("ExtendedStatistic")
        if "Metrics" in props:
            for key in ("Namespace", "MetricName", "Dimensions", "Period"):
                base.pop(key)
        self.cw.put_metric_alarm(**base)

    def state(self, name: str = "a") -> str:
        return self.cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]

    def evaluate(self) -> list[tuple[str, str, str]]:
        changes = self.evaluator.evaluate_once()
        self.dispatcher.drain()
        return [(c.alarm_name, c.previous, c.new) for c in changes]


@pytest.fixture
def rig() -> Iterator[Rig]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        services = ("cloudwatch", "events", "stepfunctions", "sqs", "sns")
        # the sampler stamps datapoints with the rig's clock; moto stamps executions with now
        rig = Rig({s: boto3.client(s, region_name=REGION) for s in services})
        with moto_hooks.installed(dispatcher=rig.dispatcher):
            try:
                yield rig
            finally:
                rig.dispatcher.drain()


def test_statistics_match_cloudwatch_definitions() -> None:
    values = [float(v) for v in range(1, 101)]
    assert statistic(values, "p99") == 99.0
    assert statistic(values, "p50") == 50.0
    assert statistic(values, "p100") == 100.0
    assert statistic(values, "Average") == 50.5
    assert statistic(values, "Sum") == 5050.0
    assert statistic(values, "SampleCount") == 100.0
    assert statistic([3.0], "p99.9") == 3.0
    rng = np.random.default_rng(1)
    sample = list(rng.exponential(size=1000))
    p95 = statistic(sample, "p95")
    assert p95 is not None and sum(v <= p95 for v in sample) >= 950
    assert statistic([], "Sum") is None
    with pytest.raises(ValueError, match="unsupported"):
        statistic(values, "tm99")


def test_metric_math_subset() -> None:
    assert evaluate_expression("100 * e / n", {"e": 5.0, "n": 50.0}) == 10.0
    assert evaluate_expression("e / n", {"e": 5.0, "n": 0.0}) is None
    assert evaluate_expression("FILL(e, 0) + 1", {"e": None}) == 1.0
    assert evaluate_expression("ABS(-e)", {"e": 2.0}) == 2.0
    with pytest.raises(ValueError, match="not supported"):
        evaluate_expression("ANOMALY_DETECTION_BAND(m)", {"m": 1.0})
    with pytest.raises(ValueError, match="unknown id"):
        evaluate_expression("x + 1", {})


def test_p99_breach_raises_the_alarm_and_recovery_clears_it(rig: Rig) -> None:
    rig.alarm()
    assert rig.evaluate() == []  # a new alarm without data stays INSUFFICIENT_DATA
    assert rig.state() == "INSUFFICIENT_DATA"
    rig.publish("Latency", [10.0] * 98 + [500.0, 600.0], model="m")
    assert rig.evaluate() == [("a", "INSUFFICIENT_DATA", "ALARM")]
    assert rig.state() == "ALARM"
    reason = rig.cw.describe_alarms(AlarmNames=["a"])["MetricAlarms"][0]["StateReason"]
    assert "greater than the threshold (100)" in reason
    assert rig.evaluate() == []  # no change, no event
    rig.now += 61  # the breach leaves the window
    rig.publish("Latency", [10.0] * 100, model="m")
    assert rig.evaluate() == [("a", "ALARM", "OK")]


def test_only_the_exact_dimension_set_counts(rig: Rig) -> None:
    rig.alarm()
    rig.publish("Latency", [900.0], model="m", service="scoring")
    rig.publish("Latency", [900.0], model="other")
    rig.evaluate()
    assert rig.state() == "INSUFFICIENT_DATA"


def test_m_of_n_datapoints_and_missing_data_treatment(rig: Rig) -> None:
    rig.alarm("m-of-n", EvaluationPeriods=3, DatapointsToAlarm=2, Statistic="Maximum")
    rig.alarm(
        "breaching",
        EvaluationPeriods=3,
        DatapointsToAlarm=3,
        Statistic="Maximum",
        TreatMissingData="breaching",
    )
    rig.alarm("ignore", Statistic="Maximum", TreatMissingData="ignore")
    rig.publish("Latency", [500.0], ago=30, model="m")  # newest period only
    rig.evaluate()
    assert rig.state("m-of-n") == "OK"  # 1 of 2 needed breaching
    assert rig.state("breaching") == "ALARM"  # 2 missing periods count as breaching
    assert rig.state("ignore") == "ALARM"
    rig.publish("Latency", [500.0], ago=90, model="m")  # the period before
    rig.evaluate()
    assert rig.state("m-of-n") == "ALARM"
    rig.now += 600  # everything old: no data at all
    rig.evaluate()
    assert rig.state("ignore") == "ALARM"  # ignore keeps the state
    assert rig.state("m-of-n") == "INSUFFICIENT_DATA"


def test_metric_math_error_rate_alarm(rig: Rig) -> None:
    def stat(i: str, name: str) -> dict[str, Any]:
        metric = {
            "Namespace": "Ferry",
            "MetricName": name,
            "Dimensions": [{"Name": "model", "Value": "m"}],
        }
        return {
            "Id": i,
            "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"},
            "ReturnData": False,
        }

    rig.alarm(
        Threshold=5.0,
        Metrics=[
            stat("e", "Errors"),
            stat("n", "Requests"),
            {"Id": "rate", "Expression": "100 * FILL(e, 0) / n", "ReturnData": True},
        ],
    )
    rig.publish("Requests", [1.0] * 100, model="m")
    rig.evaluate()
    assert rig.state() == "OK"  # no errors at all: FILL makes it 0 %
    rig.publish("Errors", [1.0] * 6, model="m")
    rig.evaluate()
    assert rig.state() == "ALARM"


def test_a_state_change_is_an_eventbridge_event_and_runs_the_alarm_actions(rig: Rig) -> None:
    sqs, events, sns = rig.clients["sqs"], rig.clients["events"], rig.clients["sns"]
    events_url = sqs.create_queue(QueueName="events")["QueueUrl"]
    actions_url = sqs.create_queue(QueueName="actions")["QueueUrl"]
    arn_of = {
        u: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for u in (events_url, actions_url)
    }
    topic = sns.create_topic(Name="alarms")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn_of[actions_url])
    sm = rig.clients["stepfunctions"].create_state_machine(
        name="retrain",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    pattern = {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": ["a"], "state": {"value": ["ALARM"]}},
    }
    events.put_rule(Name="on-alarm", EventPattern=json.dumps(pattern))
    events.put_targets(
        Rule="on-alarm",
        Targets=[
            {"Id": "q", "Arn": arn_of[events_url]},
            {"Id": "sm", "Arn": sm, "InputPath": "$.detail.alarmName"},
        ],
    )
    rig.alarm(AlarmActions=[topic], AlarmDescription="p99 latency over budget")

    rig.publish("Latency", [900.0], model="m")
    rig.evaluate()

    (body,) = [m["Body"] for m in sqs.receive_message(QueueUrl=events_url)["Messages"]]
    event = json.loads(body)
    assert event["source"] == "aws.cloudwatch"
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["resources"] == ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:a"]
    detail = event["detail"]
    assert detail["alarmName"] == "a"
    assert detail["state"]["value"] == "ALARM"
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert json.loads(detail["state"]["reasonData"])["recentDatapoints"] == [900.0]
    (execution,) = rig.clients["stepfunctions"].list_executions(stateMachineArn=sm)["executions"]
    described = rig.clients["stepfunctions"].describe_execution(
        executionArn=execution["executionArn"]
    )
    assert json.loads(described["input"]) == "a"
    (note,) = sqs.receive_message(QueueUrl=actions_url)["Messages"]
    message = json.loads(json.loads(note["Body"])["Message"])
    assert message["NewStateValue"] == "ALARM" and message["OldStateValue"] == "INSUFFICIENT_DATA"
    assert message["AlarmDescription"] == "p99 latency over budget"

    rig.now += 120  # back to OK: the rule wants ALARM only, the SNS action is for ALARM only
    rig.publish("Latency", [5.0], model="m")
    rig.evaluate()
    assert rig.state() == "OK"
    assert "Messages" not in sqs.receive_message(QueueUrl=events_url)
    assert "Messages" not in sqs.receive_message(QueueUrl=actions_url)


def test_an_alarm_that_cannot_be_evaluated_does_not_stop_the_others(rig: Rig) -> None:
    rig.alarm("broken", Metrics=[{"Id": "x", "Expression": "SLOPE(y)", "ReturnData": True}])
    rig.alarm("fine", Statistic="Maximum")
    rig.publish("Latency", [900.0], model="m")
    assert ("fine", "INSUFFICIENT_DATA", "ALARM") in rig.evaluate()
    broken = rig.cw.describe_alarms(AlarmNames=["broken"])["MetricAlarms"][0]
    assert broken["StateValue"] == "INSUFFICIENT_DATA"
    assert "Not evaluated locally" in broken["StateReason"] and "SLOPE" in broken["StateReason"]


def test_background_evaluator_thread_ticks(rig: Rig) -> None:
    import time

    rig.evaluator.interval = 0.05
    rig.evaluator._clock = time.time
    rig.alarm(Statistic="Maximum")
    rig.sink("fn", emf("Latency", [900.0], time.time(), model="m"))
    rig.evaluator.start()
    try:
        deadline = time.monotonic() + 10
        while rig.state() != "ALARM" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rig.evaluator.stop()
    assert rig.state() == "ALARM"


def test_search_expressions_sum_every_matching_series() -> None:
    series = [
        ("Ferry", "BatchFailures", dims({"model": "a", "service": "batch"})),
        ("Ferry", "BatchFailures", dims({"model": "b", "service": "batch"})),
        ("Ferry", "BatchFailures", dims({"service": "batch"})),  # other dimension set
        ("Ferry", "Latency", dims({"model": "a", "service": "batch"})),
    ]
    query = '{Ferry,model,service} MetricName="BatchFailures"'
    assert search_series(series, query) == series[:2]
    assert search_series(series, query + ' model="b"') == series[1:2]
    values = {"a": 2.0}

    def search(q: str, stat: str, period: float) -> list[float]:
        assert (q, stat, period) == (query, "Sum", 60.0)
        return [2.0, 3.0]

    expression = f"SUM(SEARCH('{query}', 'Sum', 60))"
    assert evaluate_expression(expression, values, search) == 5.0
    assert evaluate_expression(f"MAX(SEARCH('{query}', 'Sum', 60))", {}, search) == 3.0
    assert evaluate_expression("SUM(SEARCH('{Ferry} X', 'Sum', 60))", {}, lambda *a: []) is None
    with pytest.raises(ValueError, match="one value"):
        evaluate_expression(f"SEARCH('{query}', 'Sum', 60) + 1", {}, search)


def test_search_alarm_over_emf_series(rig: Rig) -> None:
    expression = "SUM(SEARCH('{Ferry,model} MetricName=\"Latency\"', 'Maximum', 60))"
    rig.alarm(Threshold=100.0, Metrics=[{"Id": "x", "Expression": expression, "Period": 60}])
    rig.publish("Latency", [60.0], model="a")
    rig.publish("Latency", [70.0], model="b")
    assert rig.evaluate() == [("a", "INSUFFICIENT_DATA", "ALARM")]  # 60 + 70 > 100


def test_a_message_in_a_dead_letter_queue_raises_its_depth_alarm(rig: Rig) -> None:
    sqs = rig.clients["sqs"]
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    rig.alarm(
        Namespace="AWS/SQS",
        MetricName="ApproximateNumberOfMessagesVisible",
        Dimensions=[{"Name": "QueueName", "Value": "dlq"}],
        Statistic="Maximum",
        Threshold=0.0,
        TreatMissingData="notBreaching",
    )
    assert rig.evaluate() == [("a", "INSUFFICIENT_DATA", "OK")]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    rig.now += 1
    assert rig.evaluate() == [("a", "OK", "ALARM")]


def test_failed_executions_count_as_aws_states_metrics(rig: Rig) -> None:
    import time

    sfn = rig.clients["stepfunctions"]
    fail = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Nope"}}}
    arn = sfn.create_state_machine(
        name="m", definition=json.dumps(fail), roleArn="arn:aws:iam::123456789012:role/r"
    )["stateMachineArn"]
    rig.now = time.time()
    rig.alarm(
        Namespace="AWS/States",
        MetricName="ExecutionsFailed",
        Dimensions=[{"Name": "StateMachineArn", "Value": arn}],
        Statistic="Sum",
        Threshold=0.0,
        TreatMissingData="notBreaching",
    )
    rig.evaluate()
    assert rig.state() == "OK"
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    deadline = time.monotonic() + 20
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rig.now = time.time() + 1
    rig.evaluate()
    assert rig.state() == "ALARM"
    rig.now += 1  # a failure is counted once, not on every sample
    started = rig.sink.store.values(
        "AWS/States", "ExecutionsFailed", dims({"StateMachineArn": arn}), 0, rig.now + 1
    )
    assert started == [1.0]
