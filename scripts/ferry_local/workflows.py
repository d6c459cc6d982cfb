"""State machines, EventBridge rules, alarms and subscriptions of the stack, created in moto.

`create_workflows` reads them from the synthesized template (the same one `cdk deploy` uses)
and creates them through the ordinary AWS APIs: a state machine from its resolved
`DefinitionString` (CDK's `Fn::Join`, `DefinitionSubstitutions` applied), an EventBridge rule
with its pattern or schedule and its targets, a CloudWatch alarm with every property CDK gave
it. Nothing here is a list of Ferry's resources: whatever is added to the stack later is
picked up by its type. moto's CloudFormation cannot do this part (it skips alarms, and with
`execute_state_machine` on it hides the state machines it made).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("ferry.local.workflows")

# Resource types this module creates; resources.py creates the rest (buckets, tables, …).
WORKFLOW_TYPES = frozenset(
    {
        "AWS::Events::EventBus",
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::Rule",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::CompositeAlarm",
    }
)
# Types of WORKFLOW_TYPES that moto 5.2.5 has no API for: reported, not created.
NOT_CREATED = {"AWS::CloudWatch::CompositeAlarm": "moto 5.2.5 has no PutCompositeAlarm"}
_ALARM_PROPERTIES = (
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
)
_TARGET_PROPERTIES = (
    "Id",
    "Arn",
    "RoleArn",
    "Input",
    "InputPath",
    "InputTransformer",
    "SqsParameters",
    "DeadLetterConfig",
    "RetryPolicy",
)
LOCAL_ROLE = "arn:aws:iam::123456789012:role/ferry-local"


class ResolverLike(Protocol):
    """What this module needs of `template.Resolver`."""

    def resolve(self, value: Any) -> Any: ...
    def physical_id(self, logical_id: str) -> str: ...
    def arn(self, logical_id: str) -> str: ...


@dataclass
class Workflows:
    """What `create_workflows` made, by logical id, and what it could not make locally."""

    buses: dict[str, str] = field(default_factory=dict)  # → bus name
    state_machines: dict[str, str] = field(default_factory=dict)  # → ARN
    rules: dict[str, str] = field(default_factory=dict)  # → rule ARN
    alarms: dict[str, str] = field(default_factory=dict)  # → alarm name
    skipped: dict[str, str] = field(default_factory=dict)  # → why


def create_workflows(
    template: Mapping[str, Any], resolver: ResolverLike, clients: Any
) -> Workflows:
    """Create every workflow, rule and alarm of `template` in the endpoint `clients` talk to.

    `clients[service]` is a boto3 client (a dict or resources.EndpointClients).
    """
    made = Workflows()
    resources: Mapping[str, Any] = template.get("Resources", {})
    creators: list[tuple[str, Callable[..., None]]] = [
        ("AWS::Events::EventBus", _event_bus),
        ("AWS::StepFunctions::StateMachine", _state_machine),
        ("AWS::CloudWatch::Alarm", _alarm),
        ("AWS::Events::Rule", _rule),  # last: its targets may be the resources above
    ]
    for rtype, create in creators:
        for logical_id, resource in resources.items():
            if resource.get("Type") == rtype:
                props = resolver.resolve(resource.get("Properties", {}))
                try:
                    create(logical_id, props, resolver, clients, made)
                except Exception as exc:
                    raise RuntimeError(f"cannot create {rtype} {logical_id}: {exc}") from exc
    for logical_id, resource in resources.items():
        if resource.get("Type") in NOT_CREATED:
            made.skipped[logical_id] = NOT_CREATED[resource["Type"]]
            log.warning("%s not created locally: %s", logical_id, made.skipped[logical_id])
    return made


def _client(clients: Any, service: str) -> Any:
    return clients[service]


def _name(logical_id: str, props: Mapping[str, Any], key: str, resolver: ResolverLike) -> str:
    return str(props.get(key) or resolver.physical_id(logical_id))


def _tags(props: Mapping[str, Any], key_name: str = "key", value_name: str = "value") -> list:
    return [{key_name: t["Key"], value_name: t["Value"]} for t in props.get("Tags", [])]


def _event_bus(
    lid: str, props: dict, resolver: ResolverLike, clients: Any, made: Workflows
) -> None:
    name = _name(lid, props, "Name", resolver)
    _client(clients, "events").create_event_bus(Name=name)
    made.buses[lid] = name


def definition_of(props: Mapping[str, Any]) -> str:
    """The state machine's ASL JSON, as Step Functions receives it from CloudFormation."""
    if "DefinitionString" in props:
        text = props["DefinitionString"]
    elif "Definition" in props:
        text = json.dumps(props["Definition"])
    else:
        raise ValueError("needs DefinitionString or Definition (S3 definitions are not local)")
    if not isinstance(text, str):
        raise ValueError("DefinitionString did not resolve to a string")
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + key + "}", str(value))
    json.loads(text)  # fail here, with the resource's name, rather than at the first execution
    return text


def _state_machine(
    lid: str, props: dict, resolver: ResolverLike, clients: Any, made: Workflows
) -> None:
    kwargs: dict[str, Any] = {
        "name": _name(lid, props, "StateMachineName", resolver),
        "definition": definition_of(props),
        "roleArn": props.get("RoleArn") or LOCAL_ROLE,
        "type": props.get("StateMachineType", "STANDARD"),
    }
    if props.get("Tags"):
        kwargs["tags"] = _tags(props)
    arn = _client(clients, "stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
    expected = resolver.arn(lid)
    if arn != expected:
        raise RuntimeError(f"moto named it {arn}, but the template's references say {expected}")
    made.state_machines[lid] = arn


def _alarm(lid: str, props: dict, resolver: ResolverLike, clients: Any, made: Workflows) -> None:
    unsupported = {"ThresholdMetricId"} & props.keys()
    if unsupported:
        raise ValueError(f"anomaly-detection alarms are not evaluated locally: {unsupported}")
    name = _name(lid, props, "AlarmName", resolver)
    kwargs: dict[str, Any] = {k: props[k] for k in _ALARM_PROPERTIES if k in props}
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    kwargs["Threshold"] = float(kwargs.get("Threshold", 0))
    for query in kwargs.get("Metrics", []):
        if "Period" in query:
            query["Period"] = int(query["Period"])
        if "MetricStat" in query:
            query["MetricStat"]["Period"] = int(query["MetricStat"]["Period"])
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props, "Key", "Value")
    cloudwatch = _client(clients, "cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName=name, **kwargs)
    # A new alarm is INSUFFICIENT_DATA until its first evaluation (moto would say OK).
    cloudwatch.set_alarm_state(
        AlarmName=name,
        StateValue="INSUFFICIENT_DATA",
        StateReason="Unchecked: Initial alarm creation",
    )
    made.alarms[lid] = name


def alarm_definitions(cloudwatch: Any) -> list[dict[str, Any]]:
    """Every metric alarm as the `PutMetricAlarm` arguments that recreate it: the platform's
    snapshot keeps those the template does not define (a model's, put at registration)."""
    pages = cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"])
    return [
        {"AlarmName": a["AlarmName"]}
        | {k: a[k] for k in _ALARM_PROPERTIES if k in a and a[k] not in ([], None)}
        for page in pages
        for a in page["MetricAlarms"]
    ]


def _rule(lid: str, props: dict, resolver: ResolverLike, clients: Any, made: Workflows) -> None:
    events = _client(clients, "events")
    name = _name(lid, props, "Name", resolver)
    bus = str(props.get("EventBusName") or "default").rsplit("/", 1)[-1]
    kwargs: dict[str, Any] = {
        "Name": name,
        "EventBusName": bus,
        "State": props.get("State", "ENABLED"),
    }
    for key in ("Description", "ScheduleExpression", "RoleArn"):
        if props.get(key):
            kwargs[key] = props[key]
    if "EventPattern" in props:
        pattern = props["EventPattern"]
        kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = [
        {k: _target_value(k, t[k]) for k in _TARGET_PROPERTIES if k in t}
        for t in props.get("Targets", [])
    ]
    if targets:
        resp = events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        if resp.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused targets: {resp['FailedEntries']}")
    made.rules[lid] = arn


def _target_value(key: str, value: Any) -> Any:
    """CloudFormation allows objects where the API wants JSON text (InputPathsMap stays a map)."""
    if key == "Input" and not isinstance(value, str):
        return json.dumps(value)
    return value


def wait_for_executions(
    sfn: Any, state_machine_arn: str, count: int = 1, timeout: float = 120.0, poll: float = 0.2
) -> list[dict[str, Any]]:
    """The state machine's executions once at least `count` exist and none is RUNNING, newest
    first (`describe_execution` of each); raises TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        listed = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
        described = [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]
        if len(described) >= count and all(d["status"] != "RUNNING" for d in described):
            return sorted(described, key=lambda d: d["startDate"], reverse=True)
        if time.monotonic() > deadline:
            states = [d["status"] for d in described]
            raise TimeoutError(f"{state_machine_arn}: wanted {count} finished, have {states}")
        time.sleep(poll)
