"""The batch path on moto, driven as the local platform drives it: the harness of the rows and
transient-faults properties.

`batch_platform` creates Ferry's resources on moto, puts the model in production and loads the
real batch handler; `Invoker` and `drain` feed queue messages to it as the SQS event-source
mapping would (failed messages come back, the redrive policy moves them to the DLQ). A big
file's fan-out is the synthesized `Ferry-local` state machine, run by moto's Step Functions
interpreter with the platform's `moto_hooks` installed (its Distributed Map, Retry and Catch
are the definition's): its task states invoke the step functions, which `Steps` runs with the
real handlers; `finish_fanouts` waits for the executions. The readers fetch outputs back.

Every handler runs in this process (not in a worker process per function, as on the platform),
so the fault hooks on this process's boto3 session reach the fan-out's steps too.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from ferry_bench.defect_files import MODEL, FileSpec

QUEUE_ATTRS = ["All"]
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ferry-local-batch"
PART_BYTES = 9_973  # a prime: part boundaries fall anywhere inside a line
FANOUT_MACHINE = "BatchFanOut"  # the logical id (prefix) of the fan-out state machine
# In-process handlers share sys.stdout (redirected per invocation): one invocation at a time.
_ONE_INVOCATION = threading.Lock()


@cache
def built_model() -> Any:
    """The small credit-risk model the tests use (built once per process, about 3 s)."""
    from ferry_core.onboarding.builder import AGE_BANDS, CREDIT_RISK_SCHEMA, build, fit_credit_risk

    pipe, train, valid = fit_credit_risk(rows=1600, n_estimators=15, seed=11)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


# ---- the platform: moto, Ferry's resources, the model in production, the batch handler ------


@dataclass
class FanoutRuns:
    """The fan-out executions that finished since the last look, and their Map Runs' items."""

    statuses: Counter[str]
    items: int = 0
    failed_items: int = 0

    @property
    def executions(self) -> int:
        return sum(self.statuses.values())


@dataclass
class BatchPlatform:
    """Ferry's batch path in moto, with the real handler loaded and configured as the stack does."""

    res: Any
    s3: Any
    ddb: Any
    sqs: Any
    sfn: Any
    handler: ModuleType
    queue_url: str
    queue_arn: str
    dlq_url: str
    state_machine: str
    steps: Steps
    seen: set[str] = field(default_factory=set)  # fan-out executions already tallied
    fanouts: FanoutRuns = field(default_factory=lambda: FanoutRuns(Counter()))  # all of them

    @property
    def bucket(self) -> str:
        return self.res.data_bucket


@contextlib.contextmanager
def batch_platform(
    workdir: Path,
    *,
    chunk_rows: int = 97,
    fanout_bytes: int = 40_000,
    part_bytes: int = PART_BYTES,
    before_clients: Callable[[], None] | None = None,
) -> Iterator[BatchPlatform]:
    """moto with Ferry's resources and its fan-out state machine, credit-risk v1 in production,
    the batch function's env set, and step invocations routed to `Steps`.

    Small chunks (and so small CSV blocks) and a low fan-out threshold put chunk, block and
    part boundaries all over the files. The queue's visibility timeout is 0, so a failed
    message is visible again at once (the timeout "elapses" between polls). `before_clients`
    runs before any client is made (fault hooks on the boto3 session go there).
    """
    import boto3

    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_local import moto_hooks
    from ferry_local.handlers import load_handler
    from ferry_local.moto_stack import clients, create_state_machine, local_aws

    built = built_model()
    steps = Steps()
    # The hooks go in first: moto keeps the state machines it made with execution off apart.
    with local_aws(workdir / "scoring-tmp") as res, moto_hooks.installed(runtime=steps):
        if before_clients is not None:
            before_clients()
        c = clients()
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        writer = RegistryWriter(c["dynamodb"], res.registry_table)
        card = register_built(built, MODEL, c["s3"], res.model_bucket, writer, Lineage())
        writer.set_stage(MODEL, "production", card.version, None, actor="reliability")
        machine = create_state_machine(FANOUT_MACHINE)
        env = {
            **res.batch_environment(workdir / "batch-tmp"),
            "BATCH_CHUNK_ROWS": str(chunk_rows),
            "BATCH_FANOUT_THRESHOLD_BYTES": str(fanout_bytes),
            "BATCH_PART_BYTES": str(part_bytes),
            "BATCH_STATE_MACHINE_ARN": machine,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        handler = load_handler("batch")  # after its environment: Powertools reads it on import
        url = c["sqs"].get_queue_url(QueueName=res.batch_queue)["QueueUrl"]
        c["sqs"].set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
        arn = c["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        dlq = c["sqs"].get_queue_url(QueueName=res.batch_dlq)["QueueUrl"]
        handler.runtime.cache_clear()
        # The handler's JSON logs, and moto's interpreter logging every failed state, would
        # bury the report.
        quiet = [logging.getLogger(n) for n in (handler.logger.name, "moto.stepfunctions")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.CRITICAL)
        try:
            yield BatchPlatform(
                res,
                c["s3"],
                c["dynamodb"],
                c["sqs"],
                sfn,
                handler,
                url,
                arn["Attributes"]["QueueArn"],
                dlq,
                machine,
                steps,
            )
        finally:
            handler.runtime.cache_clear()
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# ---- the event-source mapping: the local platform's poller, the handler invoked in process ---


class Invoker:
    """What the Lambda service does for the poller: run the function, report its answer.

    Records, per message, whether the function reported it failed, and the `BatchFailures`
    metric each invocation emitted (EMF on stdout) without a model dimension (the count of
    unreadable messages it consumed).
    """

    def __init__(self, handler: ModuleType) -> None:
        self._handler = handler
        self.invocations = 0
        self.errors = 0
        self.failed: Counter[str] = Counter()  # body → times reported failed
        self.delivered: Counter[str] = Counter()  # body → deliveries
        self.consumed_metric = 0

    def invoke(self, function_name: str, event: dict[str, Any]) -> tuple[bytes, bool, str]:
        from ferry_local.events import LambdaContext

        self.invocations += 1
        bodies = {r["messageId"]: r["body"] for r in event["Records"]}
        self.delivered.update(bodies.values())
        out = io.StringIO()
        try:
            with _ONE_INVOCATION, contextlib.redirect_stdout(out):
                result = self._handler.lambda_handler(event, LambdaContext(timeout_seconds=900))
        except Exception as exc:  # the function errored: every message returns to the queue
            self.errors += 1
            self.failed.update(bodies.values())
            return json.dumps({"errorMessage": str(exc)}).encode(), True, out.getvalue()
        for f in result.get("batchItemFailures", []):
            self.failed[bodies[f["itemIdentifier"]]] += 1
        self.consumed_metric += _unrouted_failures(out.getvalue())
        return json.dumps(result).encode(), False, out.getvalue()


def _unrouted_failures(stdout: str) -> int:
    """The `BatchFailures` values in EMF blobs with no `model` dimension."""
    total = 0
    for line in stdout.splitlines():
        if not line.startswith("{") or '"BatchFailures"' not in line:
            continue
        blob = json.loads(line)
        if "model" in blob:
            continue
        value = blob.get("BatchFailures", 0)
        total += int(sum(value) if isinstance(value, list) else value)
    return total


def drain(p: BatchPlatform, invoker: Invoker, rng: random.Random, max_polls: int) -> int:
    """Poll the queue with batch sizes 1-10 until it stays empty; returns the polls made.

    A poll that raises (an SQS fault on receive or delete) is retried, as the poller does.
    """
    from ferry_local.pollers import SqsPoller

    mapping = {
        "UUID": "reliability",
        "EventSourceArn": p.queue_arn,
        "FunctionArn": FUNCTION_ARN,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }
    # The poller calls only `runtime.invoke(name, event)`: an `Invoker` is all it needs.
    runtime: Any = invoker
    pollers = [
        SqsPoller({"sqs": p.sqs}, runtime, {**mapping, "BatchSize": b}, "us-east-1")
        for b in (1, 3, 10)
    ]
    polls = empty = 0
    while empty < 2 and polls < max_polls:
        polls += 1
        try:
            got = rng.choice(pollers).poll_once(wait_seconds=0)
        except Exception:  # the poller's own loop does the same: poll again
            got = 1
        empty = 0 if got else empty + 1
    return polls


def send(p: BatchPlatform, bodies: list[str]) -> None:
    """Put message bodies on the batch queue, as S3 (or a redrive) would, in order."""
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])]
        p.sqs.send_message_batch(QueueUrl=p.queue_url, Entries=entries)


def upload_events(p: BatchPlatform, specs: list[FileSpec]) -> dict[str, str]:
    """Upload each file and take the S3 event S3 put on the queue for it: key → event body."""
    from urllib.parse import unquote_plus

    for spec in specs:
        p.s3.put_object(Bucket=p.bucket, Key=spec.key, Body=spec.body)
    events: dict[str, str] = {}
    while True:
        got = p.sqs.receive_message(QueueUrl=p.queue_url, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            break
        for m in messages:
            p.sqs.delete_message(QueueUrl=p.queue_url, ReceiptHandle=m["ReceiptHandle"])
            body = json.loads(m["Body"])
            for r in body.get("Records", []):
                events[unquote_plus(r["s3"]["object"]["key"])] = m["Body"]
            if body.get("Event") == "s3:TestEvent":
                events["s3:TestEvent"] = m["Body"]
    return events


class Steps:
    """The Lambda service behind the fan-out's task states: moto's interpreter invokes a step
    function (`moto_hooks` routes the invocation here) and its handler runs in this process
    (the module `load_handler` imports, once its environment is set).

    Answers as Lambda does: the handler's result, or its error payload (`errorType` is the
    exception's name, which the states' Retry and Catch match). Counts invocations per handler.
    """

    def __init__(self, folder: str = "batch") -> None:
        from ferry_local.moto_stack import function_handlers

        self._folder = folder
        self._entry_points = {
            name: entry.rpartition(".")[2]
            for name, (path, entry) in function_handlers().items()
            if path.name == folder
        }
        self.invocations: Counter[str] = Counter()  # handler name → invocations
        self.errors: Counter[str] = Counter()

    def invoke(self, function_name: str, event: Any) -> tuple[bytes, bool, str]:
        from ferry_local.events import LambdaContext
        from ferry_local.handlers import load_handler
        from ferry_local.lambda_worker import error_payload

        entry = self._entry_points[function_name]  # the machine invokes batch steps only
        context = LambdaContext(function_name=function_name, timeout_seconds=900)
        out = io.StringIO()
        with _ONE_INVOCATION, contextlib.redirect_stdout(out):
            self.invocations[entry] += 1
            try:
                result = getattr(load_handler(self._folder), entry)(event, context)
            except Exception as exc:
                self.errors[entry] += 1
                return error_payload(exc, context.aws_request_id).encode(), True, out.getvalue()
        return json.dumps(result).encode(), False, out.getvalue()


def finish_fanouts(p: BatchPlatform, timeout: float = 600.0) -> FanoutRuns:
    """Wait until no fan-out execution is running; tally those that finished since the last
    call (also added to `p.fanouts`)."""
    from ferry_local.workflows import wait_for_executions

    done = wait_for_executions(p.sfn, p.state_machine, count=0, timeout=timeout)
    runs = FanoutRuns(Counter())
    for execution in done:
        arn = execution["executionArn"]
        if arn in p.seen:
            continue
        p.seen.add(arn)
        runs.statuses[execution["status"]] += 1
        for listed in p.sfn.list_map_runs(executionArn=arn)["mapRuns"]:
            counts = p.sfn.describe_map_run(mapRunArn=listed["mapRunArn"])["itemCounts"]
            runs.items += counts["total"]
            runs.failed_items += counts["failed"]
    p.fanouts.statuses.update(runs.statuses)
    p.fanouts.items += runs.items
    p.fanouts.failed_items += runs.failed_items
    return runs


def clear_idempotency(p: BatchPlatform) -> int:
    """Delete every idempotency record (as if their 7 days had passed); returns how many."""
    table = p.res.idempotency_table
    n = 0
    for page in p.ddb.get_paginator("scan").paginate(TableName=table):
        for item in page.get("Items", []):
            if item["id"]["S"].startswith("batch-audit#"):
                continue  # the once-per-run audit markers never expire
            p.ddb.delete_item(TableName=table, Key={"id": item["id"]})
            n += 1
    return n


# ---- reading the outputs back -----------------------------------------------------------------


def read_object(p: BatchPlatform, key: str, version: str | None = None) -> bytes | None:
    """An object's bytes (one version of it), or None when there is no such key."""
    kwargs = {"Bucket": p.bucket, "Key": key} | ({"VersionId": version} if version else {})
    try:
        return p.s3.get_object(**kwargs)["Body"].read()
    except p.s3.exceptions.NoSuchKey:
        return None


def version_index(p: BatchPlatform, *prefixes: str) -> dict[str, list[str]]:
    """Every key under the prefixes → its version ids, oldest first (one listing each)."""
    out: dict[str, list[str]] = {}
    paginator = p.s3.get_paginator("list_object_versions")
    for prefix in prefixes or ("batch/",):
        for page in paginator.paginate(Bucket=p.bucket, Prefix=prefix):
            for v in page.get("Versions", []):
                out.setdefault(v["Key"], []).append(v["VersionId"])
    return {k: vs[::-1] for k, vs in out.items()}  # S3 lists a key's versions newest first


def scored_rows(fmt: str, body: bytes) -> list[int]:
    """The `row` numbers of a scored output file, read with an independent reader."""
    if fmt == "jsonl":
        return [json.loads(line)["row"] for line in body.splitlines() if line.strip()]
    if fmt == "csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        if not body.strip():
            return []
        table = pacsv.read_csv(
            io.BytesIO(body),
            convert_options=pacsv.ConvertOptions(column_types={"row": pa.int64()}),
        )
        return table.column("row").to_pylist()
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(body), columns=["row"]).column("row").to_pylist()
