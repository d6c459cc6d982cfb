"""Property 2: no row lost, none counted twice — through the real queue and the real handler.

Batch files in the three formats, each carrying every kind of malformed row the platform must
reject (missing fields, wrong types, out of range, unknown categories, NaN/inf, extra fields
and cells, blank and whitespace lines, ragged CSV rows, invalid UTF-8, non-object JSON, a
truncated last line, …), plus whole files that must fail with a reason. They are uploaded to
the data bucket under moto; the S3 events S3 put on the batch queue are replayed (each 1 to 5
times), mixed with poison messages, shuffled and sent back to the queue; the local platform's
SQS event-source poller (`ferry_cli.local.pollers.SqsPoller`) feeds them to the real batch
handler in batches of 1 to 10, deleting what succeeded, so failed messages come back and the
queue's redrive policy moves them to the DLQ, as in AWS. Files above the fan-out threshold
start the Distributed Map execution; its split / part / merge steps run as the Map runs them
(parts sometimes twice: a Map item retry). A second wave of late replays follows after the
idempotency records are deleted (as if they had expired).

Then everything is read back from S3, and judged against what was written into the files
(not against what the platform says): every data row of every file appears exactly once, by
row number, in the scored or the rejected output, on the side its defect calls for; each
manifest agrees with the outputs; each file ran once (one result version, one audit entry, no
run started after success); poison never produced an output, never failed a good message,
and either reached the DLQ or was consumed and counted in the `BatchFailures` alarm metric.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from ferry_bench.properties import Mode, PropertyResult, prop

MODEL = "credit-risk"
INCOMING = f"batch/incoming/{MODEL}/"
QUEUE_ATTRS = ["All"]
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ferry-local-batch"
PART_BYTES = 9_973  # a prime: part boundaries fall anywhere inside a line


@cache
def built_model() -> Any:
    """The small credit-risk model the tests use (built once per process, about 3 s)."""
    from ferry_core.builder import AGE_BANDS, CREDIT_RISK_SCHEMA, build, fit_credit_risk

    pipe, train, valid = fit_credit_risk(rows=1600, n_estimators=15, seed=11)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


# ---- the platform: moto, Ferry's resources, the model in production, the batch handler ------


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
    """moto with Ferry's resources, credit-risk v1 in production, the batch function's env set.

    Small chunks (and so small CSV blocks) and a low fan-out threshold put chunk, block and
    part boundaries all over the files. The queue's visibility timeout is 0, so a failed
    message is visible again at once (the timeout "elapses" between polls). `before_clients`
    runs before any client is made (fault hooks on the boto3 session go there).
    """
    import boto3

    from ferry_cli.functions import load_handler
    from ferry_cli.local_aws import clients, local_aws
    from ferry_core.card import Lineage
    from ferry_core.registration import register_built
    from ferry_core.registry import RegistryWriter

    built = built_model()
    with local_aws(cache_dir=str(workdir / "scoring-cache")) as res:
        if before_clients is not None:
            before_clients()
        c = clients()
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        writer = RegistryWriter(c["dynamodb"], res.registry_table)
        card = register_built(built, MODEL, c["s3"], res.model_bucket, writer, Lineage())
        writer.set_stage(MODEL, "production", card.version, None, actor="reliability")
        machine = sfn.create_state_machine(
            name="ferry-local-batch-fanout",
            definition=json.dumps({"StartAt": "Map", "States": {"Map": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/ferry-local",
        )["stateMachineArn"]
        env = {
            **res.batch_environment(str(workdir / "batch-cache")),
            "BATCH_CHUNK_ROWS": str(chunk_rows),
            "BATCH_FANOUT_THRESHOLD_BYTES": str(fanout_bytes),
            "BATCH_PART_BYTES": str(part_bytes),
            "BATCH_STATE_MACHINE_ARN": machine,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        url = c["sqs"].get_queue_url(QueueName=res.batch_queue)["QueueUrl"]
        c["sqs"].set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
        arn = c["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        dlq = c["sqs"].get_queue_url(QueueName=res.batch_dlq)["QueueUrl"]
        handler = load_handler("batch")
        handler.runtime.cache_clear()
        quiet = logging.getLogger(handler.logger.name)
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # the handler's JSON logs would bury the report
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
            )
        finally:
            handler.runtime.cache_clear()
            quiet.setLevel(level)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# ---- the files: what was written into them is the ground truth ------------------------------


@dataclass
class FileSpec:
    """One uploaded file and what must become of it.

    `expect[row]` is "scored" or "rejected" for every data row (1-based, as the outputs number
    them); `fails` is a substring of the failed manifest's reason when the whole file must fail.
    """

    key: str
    body: bytes
    fmt: str
    expect: dict[int, str] = field(default_factory=dict)
    fails: str | None = None
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return len(self.expect)


def _names() -> list[str]:
    from ferry_core.builder import CREDIT_RISK_SCHEMA

    return [f.name for f in CREDIT_RISK_SCHEMA.features]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _csv_line(rec: dict[str, Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([_cell(rec.get(n)) for n in _names()])
    return buf.getvalue().encode()


def _with(rec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**rec, **changes}


def _csv_defects(good: dict[str, Any]) -> dict[str, bytes]:
    """CSV lines the batch applications generator does not make, each one malformed."""
    line = _csv_line(good)
    cells = line.split(b",")
    return {
        "extra_cells": line + b",surplus,cells",
        "ragged_short": b",".join(cells[:3]),
        "nan_text": _csv_line(_with(good, loan_amount="NaN")),
        "inf_text": _csv_line(_with(good, annual_income="-Infinity")),
        "overflow": _csv_line(_with(good, loan_amount="1e999")),
        "huge_integer": _csv_line(_with(good, age="1" + "0" * 400)),
        "whitespace_line": b"   ",
        "empty_cells": b"," * (len(cells) - 1),
        "long_text": _csv_line(_with(good, employment="x" * 5000)),
        "bad_boolean": _csv_line(_with(good, prior_default="maybe")),
        "negative": _csv_line(_with(good, open_accounts=-1)),
    }


def _jsonl_defects(good: dict[str, Any]) -> dict[str, bytes]:
    text = json.dumps(good)
    return {
        "nan_token": json.dumps(_with(good, loan_amount=float("nan"))).encode(),
        "infinity_token": json.dumps(_with(good, annual_income=float("inf"))).encode(),
        "invalid_utf8": text.encode().replace(b'"employment": "', b'"employment": "\xff', 1),
        "blank_line": b"",
        "whitespace_line": b"  \t ",
        "json_array": b"[1, 2, 3]",
        "json_number": b"42",
        "json_string": b'"an application"',
        "json_null": b"null",
        "empty_object": b"{}",
        "deeply_nested": b"[" * 5000 + b"]" * 5000,
        "bool_for_integer": json.dumps(_with(good, age=True)).encode(),
        "string_for_number": json.dumps(_with(good, loan_amount="12000")).encode(),
        "extra_field": json.dumps(_with(good, nickname="ace")).encode(),
        "overflow": text.replace('"age": ', '"age": 1' + "0" * 400 + ', "_": ', 1).encode(),
    }


def _parquet_defects(good: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "nan_value": _with(good, loan_amount=float("nan")),
        "neg_inf": _with(good, credit_history_years=float("-inf")),
        "null_required": _with(good, age=None),
        "out_of_range": _with(good, loan_term_months=1000.0),
        "unknown_category": _with(good, purpose="yacht"),
        "not_whole": _with(good, open_accounts=2.5),
    }


def _spread(
    base: list[tuple[bytes | dict[str, Any], str | None]], extra: list[Any], rng: random.Random
) -> list[Any]:
    out = list(base)
    for item in extra:
        out.insert(rng.randrange(len(out) + 1), item)
    return out


def make_file(fmt: str, n: int, seed: int, name: str, variant: str = "") -> FileSpec:
    """A file of about `n` generated applications with every defect of its format mixed in.

    `variant` (CSV): "crlf" line endings, "bom" (a UTF-8 byte order mark), "truncated" (the
    last line cut mid-row, no newline); (JSON Lines): "truncated".
    """
    from ferry_cli.batch_files import applications, encode

    rng = random.Random(seed)
    rows = applications(n, fmt, share=0.04, seed=seed)
    good = next(r.record for r in rows if r.kind is None and r.record)
    kinds: Counter[str] = Counter(r.kind or "valid" for r in rows)
    key = f"{INCOMING}{name}.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ferry_core.builder import CREDIT_RISK_SCHEMA

        items: list[Any] = [(r.record, "rejected" if r.kind else "scored") for r in rows]
        extras = [(rec, "rejected") for rec in _parquet_defects(good).values()]
        kinds.update(_parquet_defects(good).keys())
        items = _spread(items, extras, rng)
        types = {"integer": pa.float64(), "number": pa.float64(), "boolean": pa.bool_()}
        schema = pa.schema(
            [(f.name, types.get(f.type, pa.string())) for f in CREDIT_RISK_SCHEMA.features]
        )
        table = pa.Table.from_pylist([rec for rec, _ in items], schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=max(1, len(items) // 5))
        expect = {i + 1: side for i, (_, side) in enumerate(items)}
        return FileSpec(key, sink.getvalue(), fmt, expect, kinds=kinds)
    body = encode(rows, fmt)
    lines = body.split(b"\n")[:-1]  # every line ends with a newline
    header: list[bytes] = []
    if fmt == "csv":
        header, lines = lines[:1], lines[1:]
    assert len(lines) == n, (len(lines), n)
    base = [(line, "rejected" if r.kind else "scored") for line, r in zip(lines, rows, strict=True)]
    defects = _csv_defects(good) if fmt == "csv" else _jsonl_defects(good)
    kinds.update(defects.keys())
    items = _spread(base, [(d, "rejected") for d in defects.values()], rng)
    ending = b"\r\n" if variant == "crlf" else b"\n"
    text = ending.join([*header, *(line for line, _ in items)]) + ending
    if variant == "bom":
        text = b"\xef\xbb\xbf" + text
    expect = {i + 1: side for i, (_, side) in enumerate(items)}
    if variant == "truncated":  # the upload was cut off: the last line stops mid-row
        cut = (
            b",".join(_csv_line(good).split(b",")[:4])
            if fmt == "csv"
            else json.dumps(good).encode()[:25]
        )
        text += cut
        expect[len(expect) + 1] = "rejected"
        kinds["truncated_last_line"] += 1
    return FileSpec(key, text, fmt, expect, kinds=kinds)


def failing_files(seed: int) -> list[FileSpec]:
    """Whole files that cannot be scored as uploaded: each must end in a failed manifest."""
    from ferry_cli.batch_files import applications, encode

    csv_body = encode(applications(120, "csv", seed=seed), "csv")
    lines = csv_body.split(b"\n")
    bad_utf8 = b"\n".join([*lines[:60], lines[60].replace(b",", b",\xff\xfe", 1), *lines[61:]])
    parquet = make_file("parquet", 200, seed, "x").body
    wide = b"\n".join([lines[0] + b",nickname", *(ln + b",ace" for ln in lines[1:-1])]) + b"\n"
    return [
        FileSpec(f"{INCOMING}fail/invalid-utf8.csv", bad_utf8, "csv", fails="utf"),
        FileSpec(f"{INCOMING}fail/unknown-column.csv", wide, "csv", fails="unknown column"),
        FileSpec(
            f"{INCOMING}fail/cut.parquet", parquet[: len(parquet) // 2], "parquet", fails="parquet"
        ),
        FileSpec(f"{INCOMING}fail/empty.csv", b"", "csv", fails="empty"),
        FileSpec(f"{INCOMING}fail/header-only.csv", lines[0] + b"\n", "csv", fails="no data rows"),
        FileSpec(f"{INCOMING}fail/blank.jsonl", b"", "jsonl", fails="no data rows"),
        FileSpec("batch/incoming/no-such-model/a.csv", csv_body, "csv", fails="no model named"),
        FileSpec(f"{INCOMING}fail/notes.txt", b"hello", "txt", fails="file type"),
    ]


# ---- poison: messages that are not uploads to score -------------------------------------------


def _s3_event(bucket: str, key: str, etag: str = "0" * 32, name: str = "ObjectCreated:Put") -> str:
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": name,
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key), "size": 10, "eTag": etag},
        },
    }
    return json.dumps({"Records": [record]})


def poison_messages(bucket: str, rng: random.Random) -> dict[str, tuple[str, str]]:
    """name → (body, fate): "consumed" (unreadable or not an upload: counted and dropped, by
    design), "ignored" (an event for something that is not a current upload), or "dlq"."""
    tag = rng.randrange(10**9)
    return {
        "not_json": ("this is not json {", "unreadable"),
        "binary_junk": ("\x00\x01\x02 \ufffd", "unreadable"),
        "json_list": ("[1, 2, 3]", "unreadable"),
        "records_not_a_list": ('{"Records": 5}', "unreadable"),
        "record_without_s3": ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "unreadable"),
        "missing_object": (_s3_event(bucket, f"{INCOMING}never-uploaded-{tag}.csv"), "ignored"),
        "wrong_prefix": (_s3_event(bucket, f"batch/scored/{MODEL}/x-{tag}.csv"), "ignored"),
        "not_a_create": (
            _s3_event(bucket, f"{INCOMING}gone-{tag}.csv", name="ObjectRemoved:Delete"),
            "ignored",
        ),
        "folder_marker": (_s3_event(bucket, f"{INCOMING}folder-{tag}/"), "ignored"),
        "invalid_bucket_name": (_s3_event("Not_A_Bucket!", f"{INCOMING}a-{tag}.csv"), "dlq"),
    }


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
        from ferry_cli.events import LambdaContext

        self.invocations += 1
        bodies = {r["messageId"]: r["body"] for r in event["Records"]}
        self.delivered.update(bodies.values())
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
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
    from ferry_cli.local.pollers import SqsPoller

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


def run_fanouts(
    p: BatchPlatform, rng: random.Random, seen: set[str], catch: bool = False
) -> tuple[int, int]:
    """Run every new fan-out execution as its Distributed Map would: split, each part (some
    twice: an item retry), merge. Returns (executions run, part invocations).

    With `catch`, a failing step goes to the Fail step with the state's object, as the state
    machine's Catch does (the execution input before Split, Split's pinned object after it);
    a Fail step that fails too fails the execution (the pipeline alarm's business).
    """
    from ferry_cli.events import LambdaContext

    ctx = LambdaContext(timeout_seconds=900)
    runs = parts = 0
    with contextlib.redirect_stdout(io.StringIO()):  # the steps' EMF metrics
        for arn in _new_executions(p, seen):
            state = json.loads(p.sfn.describe_execution(executionArn=arn)["input"])
            runs += 1
            try:
                plan = p.handler.split_handler(state, ctx)
                if plan.get("status") != "ready":
                    continue
                state = plan
                body = p.s3.get_object(Bucket=p.bucket, Key=plan["parts_key"])["Body"].read()
                for item in json.loads(body):
                    for _ in range(rng.choice((1, 1, 1, 2))):
                        parts += 1
                        p.handler.part_handler(
                            {
                                "object": plan["object"],
                                "part": item,
                                "model_version": plan["model_version"],
                            },
                            ctx,
                        )
                p.handler.merge_handler({"object": plan["object"]}, ctx)
            except Exception as exc:
                if not catch:
                    raise
                error = {"Error": type(exc).__name__, "Cause": str(exc)}
                with contextlib.suppress(Exception):
                    p.handler.fail_handler({"object": state["object"], "error": error}, ctx)
    return runs, parts


def _new_executions(p: BatchPlatform, seen: set[str]) -> list[str]:
    new = []
    for page in p.sfn.get_paginator("list_executions").paginate(stateMachineArn=p.state_machine):
        for ex in page["executions"]:
            if ex["executionArn"] not in seen:
                seen.add(ex["executionArn"])
                new.append(ex["executionArn"])
    return new


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


@dataclass
class Tally:
    """What the read-back found, summed over files."""

    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    lost: int = 0
    double: int = 0
    misrouted: int = 0
    phantom: int = 0
    results_written: int = 0
    runs: int = 0
    failed_as_expected: int = 0


def verify_file(
    p: BatchPlatform,
    spec: FileSpec,
    tally: Tally,
    bad: list[str],
    index: dict[str, list[str]] | None = None,
    reruns: bool = False,
) -> str | None:
    """Judge one file's outputs against its spec; returns its run id (None if it failed).

    Each result is written once; with `reruns` (a run that died after writing its results and
    was retried) several versions are allowed, but every one must be byte-identical.
    """
    from ferry_core.batch.keys import BatchFileError, failure_manifest_key, parse_key

    try:
        bk = parse_key(spec.key)
        mkey, outs = bk.manifest, (bk.scored, bk.rejected)
    except BatchFileError:
        mkey, outs = failure_manifest_key(spec.key), ()
    index = version_index(p) if index is None else index

    def versions(key: str) -> list[str]:
        return index.get(key, [])

    history = [json.loads(read_object(p, mkey, v) or b"{}") for v in versions(mkey)]
    if not history:
        bad.append(f"{spec.key}: no manifest at all")
        return None
    manifest = history[-1]
    statuses = [m.get("status") for m in history]
    tally.runs += sum(1 for s in statuses if s in ("succeeded", "failed"))
    if spec.fails is not None:
        if (
            manifest.get("status") != "failed"
            or spec.fails not in str(manifest.get("reason")).lower()
        ):
            bad.append(
                f"{spec.key}: expected a failed manifest ({spec.fails!r}), got "
                f"{manifest.get('status')}: {manifest.get('reason')}"
            )
        for key in outs:
            if versions(key) and read_object(p, key) is not None:
                bad.append(f"{spec.key}: a failed file left {key}")
        tally.failed_as_expected += manifest.get("status") == "failed"
        return None
    if manifest.get("status") != "succeeded":
        bad.append(f"{spec.key}: manifest {manifest.get('status')}: {manifest.get('reason')}")
        tally.lost += spec.rows
        return None
    done = statuses.index("succeeded")
    if any(s != "succeeded" for s in statuses[done:]):
        bad.append(f"{spec.key}: a run started after the file had succeeded ({statuses})")
    scored_v, rejected_v = versions(bk.scored), versions(bk.rejected)
    tally.results_written += len(scored_v) + len(rejected_v)
    if reruns:
        for key, vids in ((bk.scored, scored_v), (bk.rejected, rejected_v)):
            if len({read_object(p, key, v) for v in vids}) > 1:
                bad.append(f"{spec.key}: the versions of {key} differ (a partial result)")
    elif len(scored_v) != 1 or len(rejected_v) != 1:
        bad.append(f"{spec.key}: results written {len(scored_v)}+{len(rejected_v)} times, not once")
    scored = scored_rows(spec.fmt, read_object(p, bk.scored) or b"")
    rejected = [
        json.loads(x)["row"] for x in (read_object(p, bk.rejected) or b"").splitlines() if x
    ]
    seen = Counter(scored) + Counter(rejected)
    lost = [r for r in spec.expect if r not in seen]
    double = sum(c - 1 for c in seen.values() if c > 1)
    phantom = [r for r in seen if r not in spec.expect]
    side = {**dict.fromkeys(rejected, "rejected"), **dict.fromkeys(scored, "scored")}
    wrong = [r for r, s in spec.expect.items() if r in side and side[r] != s]
    tally.rows_in += spec.rows
    tally.scored += len(scored)
    tally.rejected += len(rejected)
    tally.lost += len(lost)
    tally.double += double
    tally.phantom += len(phantom)
    tally.misrouted += len(wrong)
    if lost:
        bad.append(f"{spec.key}: {len(lost)} row(s) lost, e.g. row {lost[0]}")
    if double:
        bad.append(f"{spec.key}: {double} row(s) counted twice")
    if phantom:
        bad.append(f"{spec.key}: {len(phantom)} row number(s) that are not in the file")
    if wrong:
        r = wrong[0]
        bad.append(f"{spec.key}: row {r} should be {spec.expect[r]} but is {side[r]}")
    figures = (manifest.get("rows_in"), manifest.get("rows_scored"), manifest.get("rows_rejected"))
    if figures != (spec.rows, len(scored), len(rejected)):
        bad.append(
            f"{spec.key}: manifest says in/scored/rejected {figures}, the outputs and the "
            f"file say {(spec.rows, len(scored), len(rejected))}"
        )
    if manifest.get("input", {}).get("sha256") is None:
        bad.append(f"{spec.key}: succeeded manifest without the input's sha256")
    return manifest.get("run_id")


def verify_platform(
    p: BatchPlatform, specs: list[FileSpec], tally: Tally, bad: list[str]
) -> dict[str, int]:
    """Every output accounted for by a file; one audit entry per run; nothing left behind."""
    from ferry_core.audit import AnchorStore, AuditLog

    index = version_index(p)
    run_ids = [rid for spec in specs if (rid := verify_file(p, spec, tally, bad, index))]
    expected_keys: set[str] = set()
    from ferry_core.batch.keys import BatchFileError, failure_manifest_key, parse_key

    for spec in specs:
        try:
            bk = parse_key(spec.key)
            expected_keys |= {bk.manifest, bk.scored, bk.rejected}
        except BatchFileError:
            expected_keys.add(failure_manifest_key(spec.key))
    for prefix in ("batch/scored/", "batch/rejected/", "batch/manifests/", "batch/staging/"):
        for page in p.s3.get_paginator("list_objects_v2").paginate(Bucket=p.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"] not in expected_keys:
                    bad.append(f"an output no file accounts for: {obj['Key']}")
    uploads = p.s3.list_multipart_uploads(Bucket=p.bucket).get("Uploads", [])
    if uploads:
        bad.append(f"{len(uploads)} multipart upload(s) left open, e.g. {uploads[0]['Key']}")
    log = AuditLog(p.ddb, p.res.audit_table, AnchorStore(p.s3, p.res.anchor_bucket))
    audited = Counter(e.details.get("run_id") for e in log.entries(MODEL) if e.event == "batch_run")
    for rid in run_ids:
        if audited[rid] != 1:
            bad.append(f"run {rid} has {audited[rid]} audit entries, not 1")
    extra = set(audited) - set(run_ids)
    if extra:
        bad.append(f"{len(extra)} audited batch run(s) that no succeeded file accounts for")
    report = log.verify(MODEL)
    if not report.ok:
        bad.append(f"audit verify failed: {report.first_problem}")
    return {"audit_entries": report.entries, "audit_verify_ok": int(report.ok)}


# ---- the property ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowsPlan:
    """How big a run is: files per format, rows per file, fan-out and replay settings."""

    files_per_format: int
    rows: tuple[int, int]
    late_share: float = 0.5
    seed: int = 2


def plan_for(mode: Mode) -> RowsPlan:
    """Fast: 3 files a format of 200-900 rows; long: 16 of 200-4,000."""
    return RowsPlan(files_per_format=mode.size(3, 16), rows=(200, mode.size(900, 4000)))


def build_specs(plan: RowsPlan) -> list[FileSpec]:
    """Every format and variant, sizes drawn from the plan, plus the whole-file failures."""
    rng = random.Random(plan.seed)
    specs: list[FileSpec] = []
    variants = {
        "csv": ["", "crlf", "bom", "truncated"],
        "jsonl": ["", "truncated"],
        "parquet": [""],
    }
    for fmt, kinds in variants.items():
        for i in range(plan.files_per_format):
            variant = kinds[i % len(kinds)]
            n = rng.randint(*plan.rows)
            name = f"{fmt}/{variant or 'plain'}-{i:03d} file+{i}"  # a space and a plus in the key
            specs.append(make_file(fmt, n, plan.seed * 1000 + len(specs), name, variant))
    return specs + failing_files(plan.seed)


def run_rows(plan: RowsPlan, result: PropertyResult, workdir: Path) -> None:
    """The whole property at one size; fills `result`."""
    rng = random.Random(plan.seed)
    specs = build_specs(plan)
    bad = result.violations
    with batch_platform(workdir) as p:
        events = upload_events(p, specs)
        missing = [s.key for s in specs if s.key not in events]
        if missing:
            bad.append(f"{len(missing)} upload(s) without an S3 event, e.g. {missing[0]}")
        poison = poison_messages(p.bucket, rng)
        copies = {key: rng.randint(1, 5) for key in events}
        wave = [events[k] for k, c in copies.items() for _ in range(c)]
        wave += [body for body, _ in poison.values()]
        rng.shuffle(wave)
        send(p, wave)
        invoker = Invoker(p.handler)
        polls = drain(p, invoker, rng, max_polls=20 * len(wave))
        seen: set[str] = set()
        executions, parts = run_fanouts(p, rng, seen)
        expired = clear_idempotency(p)
        late = [events[k] for k in events if rng.random() < plan.late_share]
        rng.shuffle(late)
        send(p, late)
        polls += drain(p, invoker, rng, max_polls=20 * len(late) + 10)
        more, more_parts = run_fanouts(p, rng, seen)
        if more:
            bad.append(f"late replays started {more} new fan-out execution(s)")
        tally = Tally()
        audit = verify_platform(p, specs, tally, bad)
        dlq = Counter(_dlq_bodies(p))
        judge_poison(poison, invoker, dlq, events, bad)
        good_failed = sum(invoker.failed[b] for b in events.values())
        if good_failed:
            bad.append(f"{good_failed} delivery(ies) of good upload events reported failed")
        unreadable = sum(
            invoker.delivered[b] for b, fate in poison.values() if fate == "unreadable"
        )
        if invoker.consumed_metric != unreadable:
            bad.append(
                f"{unreadable} unreadable message deliveries but BatchFailures counted "
                f"{invoker.consumed_metric}"
            )
        file_deliveries = sum(invoker.delivered[events[s.key]] for s in specs if s.key in events)
        result.figures.update(
            {
                "files": len(specs),
                "files failing whole (with reason)": tally.failed_as_expected,
                "events in": len(events),
                "messages sent": len(wave) + len(late),
                "deliveries": sum(invoker.delivered.values()),
                "invocations": invoker.invocations,
                "late replays (after idempotency expiry)": len(late),
                "idempotency records expired": expired,
                "fan-out executions": executions + more,
                "part invocations": parts + more_parts,
                "runs": tally.runs,
                "results written": tally.results_written,
                "duplicates suppressed": file_deliveries - tally.runs,
                "rows in": tally.rows_in,
                "scored": tally.scored,
                "rejected": tally.rejected,
                "lost": tally.lost,
                "double-counted": tally.double,
                "misrouted": tally.misrouted,
                "phantom rows": tally.phantom,
                "poison messages": len(poison),
                "poison failed → DLQ": sum(1 for b, f in poison.values() if f == "dlq" and dlq[b]),
                "poison consumed (counted in BatchFailures)": invoker.consumed_metric,
                "good messages failed": good_failed,
                "audit entries": audit["audit_entries"],
                "audit verify": "ok" if audit["audit_verify_ok"] else "FAILED",
                "polls": polls,
                "defect kinds": len({k for s in specs for k in s.kinds} - {"valid"}),
            }
        )


def _dlq_bodies(p: BatchPlatform) -> list[str]:
    out = []
    while True:
        got = p.sqs.receive_message(QueueUrl=p.dlq_url, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            return out
        for m in messages:
            out.append(m["Body"])
            p.sqs.delete_message(QueueUrl=p.dlq_url, ReceiptHandle=m["ReceiptHandle"])


def judge_poison(
    poison: dict[str, tuple[str, str]],
    invoker: Invoker,
    dlq: Counter[str],
    events: dict[str, str],
    bad: list[str],
) -> None:
    """Each poison message met its fate; no good message went to the DLQ."""
    for name, (body, fate) in poison.items():
        if fate == "dlq":
            if dlq[body] != 1:
                bad.append(f"poison {name}: in the DLQ {dlq[body]} time(s), expected once")
            if invoker.failed[body] < 3:
                bad.append(f"poison {name}: reported failed {invoker.failed[body]} time(s), not 3")
        else:
            if dlq[body] or invoker.failed[body]:
                bad.append(f"poison {name} ({fate}) was failed or dead-lettered")
            if not invoker.delivered[body]:
                bad.append(f"poison {name} was never delivered")
    for key, body in events.items():
        if dlq[body]:
            bad.append(f"the event of {key} ended in the DLQ")


@prop(2, "No row lost, none counted twice")
def check(mode: Mode, result: PropertyResult) -> None:
    """Malformed files, replayed and shuffled S3 events and poison through queue and handler."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ferry-p2-") as tmp:
        run_rows(plan_for(mode), result, Path(tmp))
