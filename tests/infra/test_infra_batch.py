"""Batch scoring infrastructure: S3 → SQS (DLQ) → function, fan-out state machine, alarms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Template

from infra.batch import MAX_RECEIVES, PART_RETRIES, STEPS, VISIBILITY_FACTOR
from infra.config import ENVIRONMENTS
from infra.stack import stack_name

if TYPE_CHECKING:
    from conftest import Synthesis


def _one(template: Template, kind: str, id_part: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, v) for k, v in template.find_resources(kind).items() if id_part in k]
    return found


def _batch_functions(template: Template) -> dict[str, dict[str, Any]]:
    return {
        k: v
        for k, v in template.find_resources("AWS::Lambda::Function").items()
        if k.startswith("Batch")
    }


def test_queue_retries_then_dead_letters_and_outlives_a_run(template: Template, env: str) -> None:
    """
    Given the batch queue
    When I read its settings
    Then it is encrypted and TLS-only, redrives to the DLQ after MAX_RECEIVES receives, and its
        visibility timeout is six function timeouts
    """
    config = ENVIRONMENTS[env]
    dlq_id, _ = _one(template, "AWS::SQS::Queue", "BatchDeadLetterQueue")
    _, queue = _one(template, "AWS::SQS::Queue", "BatchQueue")
    props = queue["Properties"]
    assert props["VisibilityTimeout"] == VISIBILITY_FACTOR * config.batch_timeout_seconds
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": MAX_RECEIVES,
    }
    assert props["SqsManagedSseEnabled"] is True


def test_uploads_under_incoming_notify_the_queue_without_a_custom_resource(
    template_json: dict[str, Any],
) -> None:
    """
    Given the data bucket
    When I read its notification configuration
    Then ObjectCreated under batch/incoming/ goes to the batch queue, set on the bucket itself
        (no CDK notifications custom resource), after the queue policy that allows it
    """
    resources = template_json["Resources"]
    (bucket_id,) = [k for k in resources if k.startswith("StorageDataBucket")
                    and resources[k]["Type"] == "AWS::S3::Bucket"]  # fmt: skip
    bucket = resources[bucket_id]
    queue_id = next(k for k in resources if k.startswith("BatchQueue") and "Policy" not in k)
    (config,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config == {
        "Event": "s3:ObjectCreated:*",
        "Queue": {"Fn::GetAtt": [queue_id, "Arn"]},
        "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "batch/incoming/"}]}},
    }
    (policy_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::SQS::QueuePolicy"
                    and {"Ref": queue_id} in r["Properties"]["Queues"]]  # fmt: skip
    assert policy_id in bucket["DependsOn"]
    statements = resources[policy_id]["Properties"]["PolicyDocument"]["Statement"]
    assert {"Service": "s3.amazonaws.com"} in [s.get("Principal") for s in statements]
    assert not [r for r in resources.values() if r["Type"] == "Custom::S3BucketNotifications"]


def test_consumer_reports_item_failures_one_file_at_a_time(template: Template, env: str) -> None:
    """
    Given the SQS event source mapping
    When I read it
    Then it delivers one message per invocation, reports item failures, and caps concurrency
    """
    (esm,) = template.find_resources("AWS::Lambda::EventSourceMapping").values()
    props = esm["Properties"]
    assert props["BatchSize"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": ENVIRONMENTS[env].batch_max_concurrency}


def test_one_image_five_entry_points_sized_from_config(
    template: Template, env: str, synthesis: Synthesis
) -> None:
    """
    Given the batch functions
    When I read them and the staged image
    Then the consumer and the four fan-out steps share one image (different CMDs), take memory,
        timeout and batch settings from the config, and the image holds only what it copies
    """
    config = ENVIRONMENTS[env]
    functions = _batch_functions(template)
    assert len(functions) == 1 + len(STEPS)
    images = {json.dumps(f["Properties"]["Code"]["ImageUri"]) for f in functions.values()}
    assert len(images) == 1
    cmds = sorted(
        (f["Properties"].get("ImageConfig") or {}).get("Command", ["default"])[0]
        for f in functions.values()
    )
    assert cmds == sorted(["default", *STEPS.values()])
    for f in functions.values():
        props = f["Properties"]
        assert (props["MemorySize"], props["Timeout"]) == (
            config.batch_memory_mb,
            config.batch_timeout_seconds,
        )
        variables = props["Environment"]["Variables"]
        assert variables["BATCH_CHUNK_ROWS"] == str(config.batch_chunk_rows)
        assert variables["BATCH_FANOUT_THRESHOLD_BYTES"] == str(config.batch_fanout_threshold_bytes)
    _, consumer = _one(template, "AWS::Lambda::Function", "BatchFunction")
    assert "BATCH_STATE_MACHINE_ARN" in consumer["Properties"]["Environment"]["Variables"]

    manifest = json.loads(
        (synthesis.outdir / f"{stack_name(ENVIRONMENTS['dev'])}.assets.json").read_text()
    )
    (image,) = [i for i in manifest["dockerImages"].values()
                if i["source"]["dockerFile"] == "functions/batch/Dockerfile"]  # fmt: skip
    context = synthesis.outdir / image["source"]["directory"]
    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    allowed = ("functions/batch/", "layers/core/", "requirements/batch.txt")
    assert "requirements/batch.txt" in files
    assert [f for f in files if not f.startswith(allowed)] == []
    assert "pyarrow==26.0.1" in Path("requirements/batch.txt").read_text()
    assert "pyarrow" not in Path("requirements/runtime.txt").read_text()


def test_fan_out_is_split_distributed_map_merge_with_a_failure_path(template: Template) -> None:
    """
    Given the fan-out state machine (tests/e2e/test_local_workflows_fanout.py runs it)
    When I read its definition
    Then Split feeds a Distributed Map whose ItemReader is the parts.json the split wrote, each
        item runs the Part function (retried on a failed task), then Merge; every step's
        failure goes to Fail
    """
    _, machine = _one(template, "AWS::StepFunctions::StateMachine", "BatchFanOut")
    body = machine["Properties"]["DefinitionString"]
    text = json.dumps(body)
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    for fragment in (
        '\\"Type\\":\\"Map\\"',
        '\\"ProcessorConfig\\":{\\"Mode\\":\\"DISTRIBUTED\\"',
        '\\"Resource\\":\\"arn:',
        "s3:getObject",
        '\\"Key.$\\":\\"$.parts_key\\"',
        '\\"part.$\\":\\"$$.Map.Item.Value\\"',
        '\\"StartAt\\":\\"Split\\"',
        '\\"Next\\":\\"Merge\\"',
        '\\"ErrorEquals\\":[\\"States.ALL\\"]',
        '\\"Next\\":\\"Fail\\"',
        f'{{\\"ErrorEquals\\":[\\"States.TaskFailed\\"],\\"IntervalSeconds\\":2,'
        f'\\"MaxAttempts\\":{PART_RETRIES},\\"BackoffRate\\":2}}',
    ):
        assert fragment in text, fragment


def test_idempotency_table_and_alarms(template: Template) -> None:
    """
    Given the idempotency table and the alarms
    When I read them
    Then records are keyed on id and expire by TTL, and there is a DLQ-depth alarm and a
        BatchFailures alarm
    """
    _, table = _one(template, "AWS::DynamoDB::Table", "BatchIdempotency")
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expiration",
        "Enabled": True,
    }
    alarms = {k: v for k, v in template.find_resources("AWS::CloudWatch::Alarm").items()
              if k.startswith("Batch")}  # fmt: skip
    assert len(alarms) == 2
    assert "BatchFailures" in json.dumps(alarms)
    assert "ApproximateNumberOfMessagesVisible" in json.dumps(alarms)


def test_batch_roles_cannot_touch_uploads_or_models(template: Template) -> None:
    """
    Given the batch roles
    When I collect what they may write
    Then they write only batch/ output prefixes: never an upload under incoming/, never a model
    """
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in template.find_resources("AWS::IAM::Policy").items()
        if k.startswith("Batch") and "RoleDefaultPolicy" in k and "FanOut" not in k
    ]
    assert len(policies) == 1 + len(STEPS)  # the queue consumer and each fan-out step
    for statements in policies:
        for s in statements:
            actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            assert not [a for a in actions if a.endswith("*")]
            if {"s3:PutObject", "s3:DeleteObject"} & set(actions):
                text = json.dumps(s["Resource"])
                assert "incoming" not in text and "models/" not in text


def test_batch_roles_publish_only_ferry_registry_events(template: Template) -> None:
    """
    Given the batch roles (they append `batch_run` entries to the audit trail)
    When I read what they may put on EventBridge
    Then each may put `ferry.registry` events on the default bus, and nothing else
    """
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in template.find_resources("AWS::IAM::Policy").items()
        if k.startswith("Batch") and "RoleDefaultPolicy" in k and "FanOut" not in k
    ]
    for statements in policies:
        (put,) = [s for s in statements if "events:PutEvents" in json.dumps(s["Action"])]
        assert put["Action"] == "events:PutEvents"
        assert put["Condition"] == {"StringEquals": {"events:source": "ferry.registry"}}
        assert "event-bus/default" in json.dumps(put["Resource"])
