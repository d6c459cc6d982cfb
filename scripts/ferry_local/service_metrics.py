"""The metrics AWS services publish about themselves, sampled from the local AWS each tick.

The stack alarms on more than its functions' EMF metrics: a dead-letter queue that is not
empty (AWS/SQS ApproximateNumberOfMessagesVisible), failed executions (AWS/States
ExecutionsFailed/TimedOut/Aborted). moto publishes none of them, so `ServiceSampler` reads the
queues and executions through the ordinary APIs and adds the datapoints the services would
have published (AWS/Lambda's come from the runtime's REPORT lines, in emf.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferry_local.emf import Datapoint, MetricSink, dims

_TERMINAL = {
    "SUCCEEDED": "ExecutionsSucceeded",
    "FAILED": "ExecutionsFailed",
    "TIMED_OUT": "ExecutionsTimedOut",
    "ABORTED": "ExecutionsAborted",
}


class ServiceSampler:
    """`sample(now)` adds one queue-depth datapoint per queue and one count per execution
    that started or finished since the last sample."""

    def __init__(self, clients: Any, sink: MetricSink) -> None:
        self.clients = clients  # eventbridge.RegionalClients
        self.sink = sink
        self._executions: dict[str, str] = {}  # execution ARN → status last seen

    def sample(self, now: float) -> list[Datapoint]:
        points = self._queues(now) + self._state_machines(now)
        self.sink.add(points)
        return points

    def _queues(self, now: float) -> list[Datapoint]:
        sqs = self.clients.get("sqs")
        points: list[Datapoint] = []
        for url in sqs.list_queues().get("QueueUrls", []):
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            key = dims({"QueueName": url.rsplit("/", 1)[-1]})
            for metric, attribute in (
                ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessages"),
                ("ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesNotVisible"),
                ("ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesDelayed"),
            ):
                value = float(attrs.get(attribute, 0))
                points.append(Datapoint("AWS/SQS", metric, key, value, now, "Count"))
        return points

    def _state_machines(self, now: float) -> list[Datapoint]:
        sfn = self.clients.get("stepfunctions")
        points: list[Datapoint] = []
        for machine in sfn.list_state_machines().get("stateMachines", []):
            key = dims({"StateMachineArn": machine["stateMachineArn"]})
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=machine["stateMachineArn"]
            )
            for execution in (e for page in pages for e in page["executions"]):
                arn, status = execution["executionArn"], execution["status"]
                before = self._executions.get(arn)
                if before == status:
                    continue
                self._executions[arn] = status
                if before is None:
                    at = _epoch(execution.get("startDate"), now)
                    points.append(
                        Datapoint("AWS/States", "ExecutionsStarted", key, 1.0, at, "Count")
                    )
                if status in _TERMINAL:
                    at = _epoch(execution.get("stopDate"), now)
                    points.append(Datapoint("AWS/States", _TERMINAL[status], key, 1.0, at, "Count"))
        return points


def _epoch(value: Any, default: float) -> float:
    return value.timestamp() if isinstance(value, datetime) else default
