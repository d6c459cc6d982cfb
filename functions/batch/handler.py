"""Batch scoring: SQS-wrapped S3 events in, one exactly-once run per uploaded object version.

`lambda_handler` takes the SQS batch (ReportBatchItemFailures: only failed messages return to
the queue); each S3 record goes through a Powertools idempotent function keyed on bucket, key
and version id (ETag when the event has none), which scores the file, or starts the fan-out
state machine when the file is too large for one invocation. `split_handler`,
`part_handler`, `merge_handler` and `fail_handler` are that state machine's steps (same image,
different CMD). Everything else is `ferry_core.batch`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from ferry_core.batch.accounting import metric_points, summary
from ferry_core.batch.keys import ObjectRef, is_incoming
from ferry_core.batch.run import BatchRunner
from ferry_core.batch.settings import BatchEnvironment

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))
# Every failed message is listed in batchItemFailures, even when all of them failed.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
warnings.filterwarnings("ignore", message="No application metrics to publish")


@dataclass(frozen=True)
class Runtime:
    runner: BatchRunner
    idempotency: IdempotencyConfig
    run_once: Any


@cache
def runtime() -> Runtime:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = BatchEnvironment.from_env()
    ddb = boto3.client("dynamodb")
    sfn = boto3.client("stepfunctions") if s.state_machine_arn else None
    runner = BatchRunner.from_settings(
        s, s3=boto3.client("s3"), dynamodb=ddb, sfn=sfn, events=boto3.client("events")
    )
    config = IdempotencyConfig(
        event_key_jmespath="identity", expires_after_seconds=s.idempotency_seconds
    )
    persistence = DynamoDBPersistenceLayer(table_name=s.idempotency_table, boto3_client=ddb)
    run_once = idempotent_function(
        data_keyword_argument="upload", persistence_store=persistence, config=config
    )(_process)
    return Runtime(runner, config, run_once)


def _process(upload: dict[str, Any]) -> dict[str, Any]:
    """One object version, exactly once: score it here, or hand it to the fan-out."""
    runner = runtime().runner
    obj = ObjectRef(**{k: upload[k] for k in ("bucket", "key", "version_id", "etag", "size")})
    if runner.needs_fanout(obj):
        started = runner.fan_out(obj)
        logger.info("fanned out", size=obj.size, **started)
        return started
    return _finished(runner.run(obj))


def _finished(manifest: dict[str, Any]) -> dict[str, Any]:
    """Publish a finished run's per-model EMF metrics, log it, and return its summary."""
    points = metric_points(manifest)
    model = (manifest.get("model") or {}).get("name") or "-"
    if manifest.get("status") == "failed" and points:
        logger.warning("batch file failed", reason=manifest.get("reason"), model=model)
    elif points:
        logger.info("batch file scored", **summary(manifest))
    for name, unit, value in points:
        with single_metric(
            name=name, unit=MetricUnit[unit], value=value, namespace=metrics.namespace
        ) as m:
            m.add_dimension("model", model)
    return summary(manifest)


def uploads(body: str) -> list[dict[str, Any]]:
    """The uploads an SQS message announces: S3 records, keys URL-decoded; a test event is none.

    moto's records lack `sequencer` and `versionId` and real S3's carry them: only the fields
    every sender fills are required.
    """
    message = json.loads(body)
    if message.get("Event") == "s3:TestEvent":
        return []
    out = []
    for record in message.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record["s3"]
        obj = ObjectRef(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(s3["object"]["key"]),
            version_id=s3["object"].get("versionId") or None,
            etag=(s3["object"].get("eTag") or "").strip('"') or None,
            size=s3["object"].get("size"),
        )
        if is_incoming(obj.key):
            out.append({"identity": obj.identity, **obj.as_dict()})
    return out


def record_handler(record: SQSRecord) -> None:
    """Raising returns the message to the queue (then the DLQ); a domain failure does not."""
    try:
        found = uploads(record.body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Not an S3 event at all: no retry can fix it, so it is consumed, counted and logged.
        logger.error("unreadable batch message", error=str(exc), body=record.body[:500])
        metrics.add_metric(name="BatchFailures", unit=MetricUnit.Count, value=1)
        return
    for upload in found:
        runtime().run_once(upload=upload)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime().idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


# ---- the fan-out state machine's steps ------------------------------------------------------


def _object(event: dict[str, Any]) -> ObjectRef:
    return ObjectRef(**event["object"])


@logger.inject_lambda_context
@metrics.log_metrics
def split_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Plan the parts; `status` other than `ready` ends the run (its manifest is written)."""
    result = runtime().runner.split(_object(event))
    if result["status"] == "failed":
        _finished(result["manifest"])
        return {"status": "failed"}
    return result


@logger.inject_lambda_context
def part_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One Distributed Map item: score one byte range or row-group range into staging."""
    return runtime().runner.run_part(_object(event), event["part"], int(event["model_version"]))


@logger.inject_lambda_context
@metrics.log_metrics
def merge_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Write the one scored file, rejects file and manifest from the parts."""
    return _finished(runtime().runner.merge(_object(event)))


@logger.inject_lambda_context
@metrics.log_metrics
def fail_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The state machine's catch: a failed manifest saying which step failed and why."""
    error = event.get("error") or {}
    reason = f"fan-out failed: {error.get('Error', 'error')}: {str(error.get('Cause', ''))[:300]}"
    return _finished(runtime().runner.fail(_object(event), reason))
