"""The batch function under moto: S3 upload → SQS → handler, exactly once, retries complete."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.csv as pacsv
import pytest

from ferry_bench.batch_harness import FANOUT_MACHINE, Steps
from ferry_core.audit.chain import AuditLog
from ferry_core.batch import formats
from ferry_core.batch.accounting import TTL_ATTRIBUTE
from ferry_core.batch.sample_files import applications, encode
from ferry_local import moto_hooks
from ferry_local.events import LambdaContext, sqs_event
from ferry_local.handlers import load_handler
from ferry_local.moto_stack import create_state_machine
from ferry_local.workflows import wait_for_executions

MANIFEST = "batch/manifests/credit-risk/in box/apps+1.json"
KEY = "batch/incoming/credit-risk/in box/apps+1.csv"  # S3 events carry it URL-encoded


@pytest.fixture
def handler(
    registered: Any, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    for name, value in aws.batch_environment(tmp_path / "tmp").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BATCH_CHUNK_ROWS", "100")
    module = load_handler("batch")
    module.runtime.cache_clear()
    yield module
    module.runtime.cache_clear()


def receive(boto: dict[str, Any], aws: Any) -> tuple[list[dict[str, Any]], str]:
    url = boto["sqs"].get_queue_url(QueueName=aws.batch_queue)["QueueUrl"]
    arn = boto["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    resp = boto["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    for m in resp.get("Messages", []):
        boto["sqs"].delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return resp.get("Messages", []), arn["Attributes"]["QueueArn"]


def deliver(handler: ModuleType, messages: list[dict[str, Any]], arn: str) -> list[str]:
    """Invoke the function with an SQS batch; returns the ids of messages it reports failed."""
    resp = handler.lambda_handler(sqs_event(messages, arn), LambdaContext(timeout_seconds=900))
    return [f["itemIdentifier"] for f in resp["batchItemFailures"]]


def get(boto: dict[str, Any], aws: Any, key: str) -> bytes:
    return boto["s3"].get_object(Bucket=aws.data_bucket, Key=key)["Body"].read()


def batch_runs(boto: dict[str, Any], aws: Any) -> list[Any]:
    entries = AuditLog(boto["dynamodb"], aws.audit_table).entries("credit-risk")
    return [e for e in entries if e.event == "batch_run"]


def upload(boto: dict[str, Any], aws: Any, body: bytes, key: str = KEY) -> tuple[list[dict], str]:
    boto["s3"].put_object(Bucket=aws.data_bucket, Key=key, Body=body)
    messages, arn = receive(boto, aws)
    return messages, arn


def test_an_upload_through_the_queue_is_scored_once_whatever_the_redeliveries(
    handler: ModuleType, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given a CSV with malformed rows uploaded under a key with a space and a plus (URL-encoded in
        the event), and moto's s3:TestEvent on the queue first
    When the function receives the messages, then the same S3 event twice more
    Then one run happened: one result, one manifest write, one audit entry with the version
    """
    rows = applications(400, "csv")
    messages, arn = upload(boto, aws, encode(rows, "csv"))
    bodies = [json.loads(m["Body"]) for m in messages]
    assert any(b.get("Event") == "s3:TestEvent" for b in bodies)
    assert any("in+box" in json.dumps(b) for b in bodies)  # the key arrives URL-encoded

    assert deliver(handler, messages, arn) == []
    event = [m for m in messages if "Records" in m["Body"]]
    assert deliver(handler, event, arn) == []
    assert deliver(handler, event, arn) == []

    manifest = json.loads(get(boto, aws, MANIFEST))
    assert manifest["status"] == "succeeded"
    assert manifest["rows_in"] == 400 == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == sum(1 for r in rows if r.expect)
    versions = boto["s3"].list_object_versions(Bucket=aws.data_bucket, Prefix="batch/scored/")
    assert len(versions["Versions"]) == 1
    manifests = boto["s3"].list_object_versions(Bucket=aws.data_bucket, Prefix=MANIFEST)
    assert len(manifests["Versions"]) == 2  # in_progress, then succeeded; nothing after
    (entry,) = batch_runs(boto, aws)
    assert (entry.version, entry.details["rows_in"]) == (1, 400)
    assert entry.details["run_id"] == manifest["run_id"]


def test_a_crash_mid_file_leaves_no_success_and_the_retry_completes(
    handler: ModuleType, aws: Any, boto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given a writer that fails once in the middle of a file
    When the message is delivered, fails, and is delivered again
    Then the first delivery is reported failed (back to the queue) leaving an in_progress
        manifest and no scored file; the retry writes the complete, correct result once
    """
    rows = applications(500, "csv")
    messages, arn = upload(boto, aws, encode(rows, "csv"))
    real = formats.ScoredWriter.write
    calls = {"n": 0}

    def flaky(self: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("injected: the network went away mid-file")
        real(self, *args, **kwargs)

    monkeypatch.setattr(formats.ScoredWriter, "write", flaky)
    event = [m for m in messages if "Records" in m["Body"]]
    assert deliver(handler, event, arn) == [event[0]["MessageId"]]
    assert json.loads(get(boto, aws, MANIFEST))["status"] == "in_progress"
    with pytest.raises(boto["s3"].exceptions.NoSuchKey):
        get(boto, aws, "batch/scored/credit-risk/in box/apps+1.csv")
    assert batch_runs(boto, aws) == []

    assert deliver(handler, event, arn) == []
    manifest = json.loads(get(boto, aws, MANIFEST))
    assert manifest["status"] == "succeeded"
    scored = pacsv.read_csv(
        io.BytesIO(get(boto, aws, "batch/scored/credit-risk/in box/apps+1.csv"))
    )
    assert scored["row"].to_pylist() == [i + 1 for i, r in enumerate(rows) if not r.expect]
    assert len(batch_runs(boto, aws)) == 1


def test_unscorable_files_and_unreadable_messages_are_consumed_not_retried(
    handler: ModuleType, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given an upload for an unknown model and a message that is not an S3 event
    When they are delivered
    Then neither goes back to the queue: the upload gets a failed manifest with its reason
    """
    messages, arn = upload(boto, aws, b"age\n1\n", key="batch/incoming/nobody/a.csv")
    junk = {"MessageId": "junk", "Body": "this is not json"}
    assert deliver(handler, [*messages, junk], arn) == []
    manifest = json.loads(get(boto, aws, "batch/manifests/nobody/a.json"))
    assert manifest["status"] == "failed" and "no model named" in manifest["reason"]


def test_a_large_file_fans_out_and_the_merge_matches_a_single_run(
    handler: ModuleType, aws: Any, boto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given a file above the fan-out threshold and the synthesized fan-out state machine, run by
        moto's interpreter with its task invocations routed to the step handlers
    When the function receives it (twice)
    Then the function starts one execution (named by the run id), whose Split, Distributed
        Map (one Part per part) and Merge produce the scored file, rejects and counts of
        scoring the file in one run
    """
    steps = Steps()
    monkeypatch.setenv("BATCH_FANOUT_THRESHOLD_BYTES", "2000")
    monkeypatch.setenv("BATCH_PART_BYTES", "3000")
    # Byte-equal scores need one ONNX thread: with the stack's ONNX_THREADS=2, onnxruntime's
    # sums over differently sized parts can differ in the last digit from a single run.
    monkeypatch.setenv("ONNX_THREADS", "1")
    sfn = __import__("boto3").client("stepfunctions", region_name="us-east-1")
    body = encode(applications(300, "csv", share=0.05), "csv")
    # The hooks go in before the machine is made: moto keeps those made before them apart.
    with moto_hooks.installed(runtime=steps):
        arn = create_state_machine(FANOUT_MACHINE)
        monkeypatch.setenv("BATCH_STATE_MACHINE_ARN", arn)
        handler.runtime.cache_clear()
        messages, queue = upload(boto, aws, body)
        event = [m for m in messages if "Records" in m["Body"]]
        assert deliver(handler, event, queue) == []
        assert deliver(handler, event, queue) == []  # a redelivery starts nothing more
        (execution,) = wait_for_executions(sfn, arn, count=1)
    assert len(execution["name"]) == 32  # the run id: a second start of this run is refused
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    merged = json.loads(execution["output"])
    assert merged["status"] == "succeeded"
    assert steps.invocations["part_handler"] == len(range(0, len(body), 3000))
    assert steps.invocations["split_handler"] == steps.invocations["merge_handler"] == 1
    fanned = {k: get(boto, aws, merged["outputs"][k]) for k in ("scored", "rejected")}
    assert (
        boto["s3"].list_objects_v2(Bucket=aws.data_bucket, Prefix="batch/staging/")["KeyCount"] == 0
    )

    single = (
        handler.runtime().runner.run(
            handler.ObjectRef(aws.data_bucket, "batch/incoming/credit-risk/single.csv")
        )
        if boto["s3"].put_object(
            Bucket=aws.data_bucket, Key="batch/incoming/credit-risk/single.csv", Body=body
        )
        else None
    )
    assert single["rows_in"] == merged["rows_in"] == 300
    assert (single["rows_scored"], single["rows_rejected"]) == (
        merged["rows_scored"],
        merged["rows_rejected"],
    )
    assert get(boto, aws, single["outputs"]["scored"]) == fanned["scored"]
    assert get(boto, aws, single["outputs"]["rejected"]) == fanned["rejected"]


def test_an_audited_run_is_published_as_batch_run_recorded(
    handler: ModuleType, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given a rule sending every `ferry.registry` event to a queue
    When a file is scored through the queue
    Then one `Batch Run Recorded` event carries the run's audit entry, valid against its schema
    """
    import boto3
    import jsonschema

    from ferry_core.registry.event_schemas import event_schema
    from ferry_core.registry.events import EVENT_TYPES

    sqs, events = (boto3.client(s, region_name="us-east-1") for s in ("sqs", "events"))
    url = sqs.create_queue(QueueName="registry-events")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    events.put_rule(Name="registry", EventPattern=json.dumps({"source": ["ferry.registry"]}))
    events.put_targets(Rule="registry", Targets=[{"Id": "q", "Arn": queue["QueueArn"]}])
    messages, arn = upload(boto, aws, encode(applications(50, "csv"), "csv"))
    assert deliver(handler, messages, arn) == []
    (entry,) = batch_runs(boto, aws)
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    jsonschema.Draft4Validator(event_schema(EVENT_TYPES["batch_run"])).validate(event)
    assert event["detail-type"] == "Batch Run Recorded"
    assert (event["detail"]["hash"], event["detail"]["details"]["rows_in"]) == (entry.hash, 50)


def test_every_idempotency_record_expires_after_the_configured_period(
    handler: ModuleType, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given the batch function with the environment the stack gives it
    When it scores an upload
    Then every item it wrote to the idempotency table (the upload's record and the run's audit
        marker) carries the table's TTL attribute, IDEMPOTENCY_SECONDS from now
    """
    keep = int(os.environ["IDEMPOTENCY_SECONDS"])  # as the template sets it
    before = time.time()
    messages, arn = upload(boto, aws, encode(applications(50, "csv"), "csv"))
    assert deliver(handler, messages, arn) == []
    after = time.time()

    items = boto["dynamodb"].scan(TableName=aws.idempotency_table)["Items"]
    assert {i["id"]["S"].startswith("batch-audit#") for i in items} == {True, False}
    for item in items:
        expires = int(item[TTL_ATTRIBUTE]["N"])
        assert int(before) + keep <= expires <= int(after) + keep + 1, item["id"]
