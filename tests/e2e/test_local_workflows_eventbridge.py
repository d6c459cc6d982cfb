"""EventBridge on the local platform: put_events reaches Step Functions, SQS and SNS targets
with the target's input, disabled rules stay silent, schedules fire, failures dead-letter."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ferry_local import eventbridge, moto_hooks
from ferry_local.eventbridge import (
    Dispatcher,
    Scheduler,
    cron_matches,
    json_path,
    rate_seconds,
    target_input,
)

REGION = "us-east-1"
PASS_MACHINE = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
ROLE = "arn:aws:iam::123456789012:role/r"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        clients = {
            s: boto3.client(s, region_name=REGION)
            for s in ("events", "stepfunctions", "sqs", "sns", "lambda")
        }
        dispatcher = Dispatcher(eventbridge.RegionalClients(clients))
        clients["dispatcher"] = dispatcher
        with moto_hooks.installed(dispatcher=dispatcher):
            try:
                yield clients
            finally:
                dispatcher.drain()


def queue(aws: dict[str, Any], name: str) -> tuple[str, str]:
    url = aws["sqs"].create_queue(QueueName=name)["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"]


def messages(aws: dict[str, Any], url: str) -> list[str]:
    got = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [m["Body"] for m in got.get("Messages", [])]


def executions(aws: dict[str, Any], arn: str) -> list[dict[str, Any]]:
    listed = aws["stepfunctions"].list_executions(stateMachineArn=arn)["executions"]
    return [aws["stepfunctions"].describe_execution(executionArn=e["executionArn"]) for e in listed]


def put(aws: dict[str, Any], detail: dict[str, Any], source: str = "ferry.test") -> None:
    resp = aws["events"].put_events(
        Entries=[{"Source": source, "DetailType": "Thing Happened", "Detail": json.dumps(detail)}]
    )
    assert resp["FailedEntryCount"] == 0
    aws["dispatcher"].drain()


def test_the_moto_hook_point_still_has_the_shape_it_was_written_for() -> None:
    """Fails loudly when a moto upgrade moves or changes what moto_hooks wraps for rules."""
    from moto.events.models import Rule

    params = list(inspect.signature(Rule.send_to_targets).parameters)
    assert params == ["self", "original_event", "transform_input"]
    for attr in ("state", "targets", "event_pattern", "arn"):
        assert attr in inspect.getsource(Rule.__init__) + inspect.getsource(Rule)


def test_put_events_starts_a_state_machine_with_the_transformed_input(aws: dict) -> None:
    sm = aws["stepfunctions"].create_state_machine(
        name="sm", definition=PASS_MACHINE, roleArn=ROLE
    )["stateMachineArn"]
    aws["events"].put_rule(Name="r", EventPattern=json.dumps({"source": ["ferry.test"]}))
    transformer = {
        "InputPathsMap": {"model": "$.detail.model", "psi": "$.detail.psi"},
        "InputTemplate": '{"model": "<model>", "psi": <psi>, "why": "drift of <model>"}',
    }
    aws["events"].put_targets(
        Rule="r", Targets=[{"Id": "t", "Arn": sm, "InputTransformer": transformer}]
    )

    put(aws, {"model": "credit-risk", "psi": 0.31})

    (execution,) = executions(aws, sm)
    assert json.loads(execution["input"]) == {
        "model": "credit-risk",
        "psi": 0.31,
        "why": "drift of credit-risk",
    }
    assert aws["dispatcher"].deliveries[0].ok


def test_sqs_target_gets_the_constant_input_and_sns_target_the_input_path(aws: dict) -> None:
    url, arn = queue(aws, "q")
    topic = aws["sns"].create_topic(Name="t")["TopicArn"]
    sub_url, sub_arn = queue(aws, "subscriber")
    aws["sns"].subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=sub_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    aws["events"].put_rule(
        Name="r", EventPattern=json.dumps({"detail": {"n": [{"numeric": [">", 1]}]}})
    )
    aws["events"].put_targets(
        Rule="r",
        Targets=[
            {"Id": "q", "Arn": arn, "Input": '{"constant": true}'},
            {"Id": "s", "Arn": topic, "InputPath": "$.detail"},
        ],
    )

    put(aws, {"n": 1})  # does not match
    put(aws, {"n": 2})

    assert messages(aws, url) == ['{"constant": true}']
    assert [json.loads(b) for b in messages(aws, sub_url)] == [{"n": 2}]


@pytest.mark.parametrize(
    ("operator", "matched"),
    [
        # Any model's drift alarm of this environment (the stack's DriftAlarmRule).
        ({"wildcard": "Ferry-local-model-*-drift"}, {"fraud-drift", "my-drift-drift"}),
        (
            {"prefix": "Ferry-local-model-"},
            {"fraud-drift", "fraud-latency-p99", "my-drift-drift", "my-drift-errors-4xx"},
        ),
        ({"suffix": "-drift"}, {"fraud-drift", "my-drift-drift", "dev:fraud-drift"}),
        ({"anything-but": {"suffix": "-drift"}}, {"fraud-latency-p99", "my-drift-errors-4xx"}),
    ],
)
def test_string_operators_match_alarm_names_as_aws_documents(
    aws: dict, operator: dict[str, Any], matched: set[str]
) -> None:
    """
    Given a rule whose pattern filters `detail.alarmName` with one of EventBridge's string
        operators (wildcard, prefix, suffix, anything-but with a suffix)
    When alarm state changes of several alarms are put on the bus
    Then the rule's target receives exactly the ones AWS's documented semantics match: a
        wildcard `*` spans any characters (dashes too) and the whole name must match
    """
    url, arn = queue(aws, "q")
    pattern = {"source": ["ferry.test"], "detail": {"alarmName": [operator]}}
    aws["events"].put_rule(Name="r", EventPattern=json.dumps(pattern))
    aws["events"].put_targets(
        Rule="r", Targets=[{"Id": "q", "Arn": arn, "InputPath": "$.detail.alarmName"}]
    )
    names = {
        "fraud-drift": "Ferry-local-model-fraud-drift",
        "fraud-latency-p99": "Ferry-local-model-fraud-latency-p99",
        "my-drift-drift": "Ferry-local-model-my-drift-drift",
        "my-drift-errors-4xx": "Ferry-local-model-my-drift-errors-4xx",
        "dev:fraud-drift": "Ferry-dev-model-fraud-drift",
    }
    for name in names.values():
        put(aws, {"alarmName": name})
    received = {json.loads(body) for body in messages(aws, url)}
    assert received == {names[key] for key in matched}


def test_a_disabled_rule_delivers_nothing(aws: dict) -> None:
    url, arn = queue(aws, "q")
    aws["events"].put_rule(
        Name="r", EventPattern=json.dumps({"source": ["ferry.test"]}), State="DISABLED"
    )
    aws["events"].put_targets(Rule="r", Targets=[{"Id": "q", "Arn": arn}])
    put(aws, {"n": 1})
    assert messages(aws, url) == []


def test_a_failed_delivery_goes_to_the_targets_dead_letter_queue(aws: dict) -> None:
    dlq_url, dlq_arn = queue(aws, "dlq")
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:nope"
    aws["events"].put_rule(Name="r", EventPattern=json.dumps({"source": ["ferry.test"]}))
    aws["events"].put_targets(
        Rule="r",
        Targets=[{"Id": "t", "Arn": missing, "DeadLetterConfig": {"Arn": dlq_arn}}],
    )
    put(aws, {"n": 1})
    (delivery,) = aws["dispatcher"].deliveries
    assert not delivery.ok and "StateMachineDoesNotExist" in delivery.error
    (body,) = messages(aws, dlq_url)
    assert json.loads(body)["detail"] == {"n": 1}


def test_schedule_rules_fire_when_due_and_only_then(aws: dict) -> None:
    url, arn = queue(aws, "q")
    topic = aws["sns"].create_topic(Name="t")["TopicArn"]
    aws["events"].put_rule(Name="every5", ScheduleExpression="rate(5 minutes)")
    aws["events"].put_targets(
        Rule="every5", Targets=[{"Id": "q", "Arn": arn}, {"Id": "t", "Arn": topic}]
    )
    put(aws, {"n": 1})  # bus events never reach a schedule rule
    assert messages(aws, url) == [] and aws["dispatcher"].deliveries == []
    now = [1_000_000.0]
    scheduler = Scheduler(aws["dispatcher"], clock=lambda: now[0])

    assert scheduler.tick() == []  # first seen: the rate starts now
    now[0] += 299
    assert scheduler.tick() == []
    now[0] += 1
    assert len(scheduler.tick()) == 1
    aws["dispatcher"].drain()
    (body,) = messages(aws, url)
    event = json.loads(body)
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"][0].endswith(":rule/every5")


def test_rate_and_cron_expressions() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(2 hours)") == 7200
    assert rate_seconds("cron(0 12 * * ? *)") is None
    monday_noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert cron_matches("cron(0 12 ? * MON-FRI *)", monday_noon)
    assert not cron_matches("cron(0 12 ? * SAT,SUN *)", monday_noon)
    assert cron_matches("cron(*/15 * * * ? *)", monday_noon.replace(minute=45))
    assert not cron_matches("cron(*/15 * * * ? *)", monday_noon.replace(minute=44))
    assert cron_matches("cron(0 12 2 MAR ? 2026)", monday_noon)
    with pytest.raises(ValueError, match="not supported"):
        cron_matches("cron(0 12 L * ? *)", monday_noon)


def test_target_input_follows_eventbridge_rules() -> None:
    event = {"id": "1", "detail": {"a": {"b": [10, 20]}, "s": 'say "hi"'}}
    assert json_path(event, "$.detail.a.b[1]") == 20
    assert json_path(event, "$.detail.missing") is None
    assert json.loads(target_input({}, event)) == event
    assert target_input({"Input": "x"}, event) == "x"
    assert json.loads(target_input({"InputPath": "$.detail.a"}, event)) == {"b": [10, 20]}
    transformer = {"InputPathsMap": {"s": "$.detail.s"}, "InputTemplate": '{"said": "<s>"}'}
    got = target_input({"InputTransformer": transformer}, event, "arn:x:rule/r")
    assert json.loads(got) == {"said": 'say "hi"'}
    plain = {"InputTemplate": '"rule <aws.events.rule-name>"'}
    assert target_input({"InputTransformer": plain}, event, "arn:x:rule/r") == '"rule r"'
    # CDK's RuleTargetInput.fromObject leaves placeholders unquoted: values go in as JSON.
    cdk_style = {
        "InputPathsMap": {"s": "$.detail.s", "a": "$.detail.a"},
        "InputTemplate": '{"s":<s>,"a":<a>}',
    }
    got = json.loads(target_input({"InputTransformer": cdk_style}, event))
    assert got == {"s": 'say "hi"', "a": {"b": [10, 20]}}


def test_async_deliveries_are_waited_for_by_drain(aws: dict) -> None:
    url, arn = queue(aws, "q")
    for i in range(5):
        aws["dispatcher"].send("test", {"Arn": arn}, str(i))
    started = time.monotonic()
    done = aws["dispatcher"].drain()
    assert len(done) == 5 and all(d.ok for d in done)
    assert time.monotonic() - started < 10
    assert sorted(messages(aws, url)) == ["0", "1", "2", "3", "4"]
