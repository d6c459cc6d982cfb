"""SQS event source mappings, run as the Lambda service runs them: by polling.

moto delivers a message to a mapped function only at the moment it is sent, once, and never
again: a failed invocation leaves the message in the queue with nothing to retry it, so
redelivery and the dead-letter queue never happen. The platform therefore creates the
mappings disabled in moto and runs one poller per mapping here: receive (long poll), invoke
the function through the in-process runtime, delete what succeeded — with
ReportBatchItemFailures, all but the reported failures; on a function error, nothing, so the
messages come back after their visibility timeout and the queue's redrive policy moves a
poison message to its dead-letter queue, as in AWS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from ferry_local.lambda_runtime import LAMBDA_SERVICE, FunctionRuntime


def _function_name(arn_or_name: str) -> str:
    return arn_or_name.split(":function:", 1)[-1].split(":", 1)[0]


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event the Lambda service builds from received SQS messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class SqsPoller(threading.Thread):
    """One mapping: poll its queue and invoke its function until stopped."""

    def __init__(
        self, clients: Any, runtime: FunctionRuntime, mapping: dict[str, Any], region: str
    ) -> None:
        super().__init__(daemon=True, name=f"sqs-poller-{mapping['UUID'][:8]}")
        self._clients = clients
        self._runtime = runtime
        self._queue_arn = mapping["EventSourceArn"]
        account, name = self._queue_arn.split(":")[4:6]
        self._queue_url = clients["sqs"].get_queue_url(
            QueueName=name, QueueOwnerAWSAccountId=account
        )["QueueUrl"]
        self._function = _function_name(mapping["FunctionArn"])
        self._batch = max(1, min(10, int(mapping.get("BatchSize") or 10)))
        self._partial = "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or [])
        self._region = region
        self._halt = threading.Event()
        self.invocations = 0

    def stop(self) -> None:
        self._halt.set()

    def poll_once(self, wait_seconds: int = 1) -> int:
        """Receive one batch and deliver it; returns how many messages were received."""
        sqs = self._clients["sqs"]  # per poll: the role's session is renewed as it ages
        resp = sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        event = sqs_event(messages, self._queue_arn, self._region)
        payload, errored, _logs = self._runtime.invoke(self._function, event)
        self.invocations += 1
        if errored:
            return len(messages)  # all return to the queue after their visibility timeout
        failed: set[str] = set()
        if self._partial:
            try:
                body = json.loads(payload or b"null") or {}
                failed = {f["itemIdentifier"] for f in body.get("batchItemFailures", [])}
            except (ValueError, TypeError, KeyError):
                return len(messages)  # an unreadable partial response fails the whole batch
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll_once()
            except Exception:  # the endpoint is going away, or a transient error: poll again
                if self._halt.wait(0.5):
                    return


def start_pollers(
    clients: Any,
    runtime: FunctionRuntime,
    region: str,
    role_clients: Callable[[str, str], Any] | None = None,
) -> list[SqsPoller]:
    """A poller for every SQS event source mapping moto holds. With `role_clients`, each
    polls as Lambda does: with its function's execution role, which must allow
    sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on the queue."""
    pollers = []
    for page in clients["lambda"].get_paginator("list_event_source_mappings").paginate():
        for mapping in page.get("EventSourceMappings", []):
            if str(mapping.get("EventSourceArn", "")).startswith("arn:aws:sqs:"):
                polling = clients
                if role_clients is not None:
                    function = clients["lambda"].get_function(FunctionName=mapping["FunctionArn"])
                    role = function["Configuration"]["Role"]
                    polling = role_clients(role, LAMBDA_SERVICE)
                poller = SqsPoller(polling, runtime, mapping, region)
                poller.start()
                pollers.append(poller)
    return pollers
