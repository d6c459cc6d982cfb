"""Property 3: transient AWS faults are survived; persistent ones reach a failure path, intact.

Faults are injected under the platform's own clients with botocore `before-send` hooks on the
boto3 session (every client the batch handler, the governance core and the local platform's
SQS poller create inherits them): a matching call is answered with the error AWS would send
(S3 `SlowDown` 503 / `InternalError` 500, DynamoDB `ThrottlingException` /
`ProvisionedThroughputExceededException` / `InternalServerError`, SQS and Step Functions
throttling, EventBridge `InternalException`) instead of reaching moto. A fault fails `times`
matching calls (None: all of them), optionally after letting `skip` through (the Nth
UploadPart of a file, the manifest write after the first), optionally after letting moto apply
the call (the request landed, its answer was lost). A GetObject body can also be cut mid-stream
(a connection reset while the file is read), which botocore does not retry.

botocore's retry backoff is recorded, not slept (the figures say how long AWS clients would
have waited); everything else — the retry decisions, the retry quota, the redrive policy — is
the real code. The clients use botocore's default retry mode (standard: 3 attempts, 4 for
DynamoDB), which the figures report as read from a live client.

Judged afterwards, with faults off, by reading S3, DynamoDB and the queues: transient → the
same outputs a fault-free run writes, row for row; persistent → the message in the DLQ (then
redriven and completed) or a failed manifest with the reason, a refused promotion with nothing
written, or an event kept with its warning; never a visible partial output, a success manifest
beside a wrong result, a pointer without its audit entry or an audit chain that fails verify.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.rows_accounted import (
    INCOMING,
    BatchPlatform,
    FileSpec,
    Invoker,
    Tally,
    batch_platform,
    built_model,
    drain,
    make_file,
    read_object,
    run_fanouts,
    scored_rows,
    send,
    upload_events,
    verify_file,
    version_index,
)
from ferry_cli.local_aws import LocalResources

SERVICES = ("s3", "dynamodb", "sqs", "sfn", "eventbridge")
JSON_TYPES = {"eventbridge": "application/x-amz-json-1.1"}


# ---- the injector ------------------------------------------------------------------------------


@dataclass
class Fault:
    """Answer matching calls with an AWS error: `times` of them (None: every one), after `skip`.

    `match` is a substring of the request URL or body (a key, a table name). `applied` lets moto
    apply the call first: the request landed, only its answer was lost.
    """

    service: str
    operation: str
    code: str
    status: int
    times: int | None = None
    skip: int = 0
    match: str = ""
    applied: bool = False
    seen: int = 0
    injected: int = 0

    @property
    def persistent(self) -> bool:
        return self.times is None


@dataclass
class Cut:
    """Cut the body of matching GetObject answers after `after` bytes, `times` times."""

    match: str
    after: int = 4096
    times: int | None = 1
    injected: int = 0


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class _CutBody:
    """A response body whose connection drops after `after` bytes."""

    def __init__(self, body: Any, after: int) -> None:
        self._body = body
        self._left = after

    def read(self, amt: int | None = None) -> bytes:
        from botocore.exceptions import ResponseStreamingError

        if self._left <= 0:
            raise ResponseStreamingError(error="injected: connection reset while reading")
        want = self._left if amt is None or amt < 0 else min(amt, self._left)
        data = self._body.read(want)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._body.close()


def error_response(request: Any, service: str, code: str, status: int) -> Any:
    """The answer AWS sends for `code` in `service`'s protocol (rest-xml for S3, else JSON)."""
    from botocore.awsrequest import AWSResponse

    message = f"injected by Ferry's reliability suite: {code}"
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>FERRYFAULT</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml", "x-amz-request-id": "FERRYFAULT"}
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        ctype = JSON_TYPES.get(service, "application/x-amz-json-1.0")
        headers = {"Content-Type": ctype, "x-amzn-RequestId": "FERRYFAULT"}
    return AWSResponse(request.url, status, headers, _Raw(body))


class FaultInjector:
    """Hooks on a boto3 session; faults are armed with `active(...)` and counted per service."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._cuts: list[Cut] = []
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.retries = 0
        self.backoff_seconds = 0.0

    def install(self, events: Any) -> None:
        """Hook a session's (or one client's) event system; faults stay off until `active`."""
        for svc in SERVICES:  # more specific than moto's "before-send": called first
            events.register(f"before-send.{svc}", self._before_send, unique_id=f"ferry-{svc}")
        events.register("after-call.s3.GetObject", self._after_get, unique_id="ferry-cut")

    @contextlib.contextmanager
    def active(self, faults: list[Fault], cuts: list[Cut] | None = None) -> Iterator[None]:
        """Arm `faults` (and body cuts) for the block only: set-up and judging run clean."""
        with self._lock:
            self._faults, self._cuts = list(faults), list(cuts or [])
        try:
            yield
        finally:
            with self._lock:
                self._faults, self._cuts = [], []

    def _pick(self, service: str, op: str, request: Any) -> Fault | None:
        text = None
        for f in self._faults:
            if f.service != service or f.operation != op:
                continue
            if f.match:
                if text is None:
                    body = request.body if isinstance(request.body, bytes) else b""
                    text = request.url + body[:4096].decode("utf-8", "replace")
                if f.match not in text and f.match.replace(" ", "%20") not in text:
                    continue
            f.seen += 1
            if f.seen <= f.skip or (f.times is not None and f.injected >= f.times):
                continue
            f.injected += 1
            self.injected[service] += 1
            return f
        return None

    def _before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        """Answer with the fault's error, and keep moto from applying the call.

        botocore emits `before-send` to every handler and uses the first answer: moto's own
        handler (registered for all services, so called after this one) would still apply
        the request. Pointing the request at an address moto does not serve stops it; the
        next attempt (the same request object) gets its address back here first.
        """
        original = getattr(request, "_ferry_url", None)
        if original is not None:
            request.url = original
            del request._ferry_url
        _, service, op = event_name.split(".")[:3]
        with self._lock:
            fault = self._pick(service, op, request)
        if fault is None:
            return None
        if fault.applied:
            from moto.core.models import botocore_stubber

            botocore_stubber(request=request, event_name=event_name)  # moto applies it; lost
        request._ferry_url = request.url
        request.url = "https://ferry-fault.invalid/"
        return error_response(request, service, fault.code, fault.status)

    def _after_get(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            for cut in self._cuts:
                if cut.match in getattr(http_response, "url", "") and "Body" in parsed:
                    if cut.times is not None and cut.injected >= cut.times:
                        continue
                    cut.injected += 1
                    self.injected["s3"] += 1
                    parsed["Body"] = _CutBody(parsed["Body"], cut.after)
                    return

    @contextlib.contextmanager
    def compressed_backoff(self) -> Iterator[None]:
        """botocore's retry sleeps (in `botocore.endpoint`) recorded instead of slept."""
        import botocore.endpoint as endpoint

        real = endpoint.time
        injector = self

        class _Clock:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            @staticmethod
            def sleep(seconds: float) -> None:
                injector.retries += 1
                injector.backoff_seconds += seconds

        endpoint.time = _Clock()  # type: ignore[assignment]
        try:
            yield
        finally:
            endpoint.time = real


def _s3(op: str, code: str = "SlowDown", status: int = 503, **kw: Any) -> Fault:
    return Fault("s3", op, code, status, **kw)


def _ddb(op: str, code: str = "ThrottlingException", status: int = 400, **kw: Any) -> Fault:
    return Fault("dynamodb", op, code, status, **kw)


# ---- batch cases -------------------------------------------------------------------------------

_RES = LocalResources()  # the names batch_platform creates (local_aws's defaults)
RES_TABLES = {
    "idempotency": _RES.idempotency_table,
    "registry": _RES.registry_table,
    "audit": _RES.audit_table,
}


@dataclass
class BatchCase:
    """One file through the queue under `faults`, and what must become of it.

    expect: "survived" (botocore's retries absorbed every fault: no failed delivery),
    "redelivered" (a delivery failed, the queue's retry completed it), "dlq" (every retry
    failed: dead-lettered, then redriven with faults off and completed), "failed_manifest".
    """

    name: str
    faults: list[Fault]
    expect: str
    rows: int = 240
    fmt: str = "csv"
    fanout: bool = False
    big: bool = False
    cold: bool = False
    cuts: list[Cut] = field(default_factory=list)
    reason: str = ""


def batch_cases() -> list[BatchCase]:
    """Every service the batch path calls, transient and persistent, at the start, mid-file and
    at the end of a run (the exact counts of Nth calls depend on chunking: they are chosen so
    the fault lands after work has been written)."""
    ddb_tx = RES_TABLES["audit"]
    cases = [
        BatchCase(
            "s3 GetObject input throttled ×2",
            [_s3("GetObject", match=INCOMING, times=2)],
            "survived",
        ),
        BatchCase("s3 HeadObject 503 ×2", [_s3("HeadObject", times=2)], "survived"),
        BatchCase(
            "s3 PutObject manifest 500 ×2",
            [_s3("PutObject", "InternalError", 500, match="batch/manifests/", times=2)],
            "survived",
        ),
        BatchCase(
            "s3 PutObject results SlowDown ×2 (after the manifest)",
            [
                _s3("PutObject", match="batch/scored/", times=2),
                _s3("PutObject", match="batch/rejected/", times=1),
            ],
            "survived",
        ),
        BatchCase(
            "dynamodb idempotency PutItem throttled ×2",
            [_ddb("PutItem", match=RES_TABLES["idempotency"], times=2)],
            "survived",
        ),
        BatchCase(
            "dynamodb registry GetItem throughput exceeded ×3",
            [
                _ddb(
                    "GetItem",
                    "ProvisionedThroughputExceededException",
                    match=RES_TABLES["registry"],
                    times=3,
                )
            ],
            "survived",
        ),
        BatchCase(
            "dynamodb audit TransactWriteItems throttled ×3",
            [_ddb("TransactWriteItems", match=ddb_tx, times=3)],
            "survived",
        ),
        BatchCase(
            "dynamodb audit Query 500 ×2",
            [_ddb("Query", "InternalServerError", 500, match=ddb_tx, times=2)],
            "survived",
        ),
        BatchCase(
            "sqs ReceiveMessage throttled ×2, DeleteMessage 500 ×2",
            [
                Fault("sqs", "ReceiveMessage", "ThrottlingException", 400, times=2),
                Fault("sqs", "DeleteMessage", "InternalError", 500, times=2),
            ],
            "survived",
        ),
        BatchCase(
            "sfn StartExecution throttled ×2 (fan-out)",
            [Fault("sfn", "StartExecution", "ThrottlingException", 400, times=2)],
            "survived",
            rows=900,
            fanout=True,
        ),
        BatchCase(
            "s3 mid-fan-out: part GetObject, staging PutObject throttled",
            [
                _s3("GetObject", match=INCOMING, skip=3, times=2),
                _s3("PutObject", match="batch/staging/", skip=4, times=2),
            ],
            "survived",
            rows=900,
            fanout=True,
        ),
        BatchCase(
            "sfn StartExecution answer lost (applied)",
            [Fault("sfn", "StartExecution", "InternalServerError", 500, times=1, applied=True)],
            "survived",
            rows=900,
            fanout=True,
        ),
        BatchCase(
            "s3 PutObject manifest answer lost (applied)",
            [
                _s3(
                    "PutObject",
                    "InternalError",
                    500,
                    match="batch/manifests/",
                    skip=1,
                    times=1,
                    applied=True,
                )
            ],
            "survived",
        ),
        # beyond botocore's budget: the queue's retry finishes the job
        BatchCase(
            "s3 GetObject input cut mid-stream",
            [],
            "redelivered",
            cuts=[Cut(match="batch/incoming/", after=6000)],
        ),
        BatchCase(
            "s3 GetObject input SlowDown ×4 (beyond 3 attempts)",
            [_s3("GetObject", match=INCOMING, times=4)],
            "redelivered",
        ),
        BatchCase(
            "dynamodb registry GetItem throttled ×6 (beyond 4 attempts)",
            [_ddb("GetItem", match=RES_TABLES["registry"], times=6)],
            "redelivered",
        ),
        BatchCase(
            "sqs DeleteMessage fails after the run (redelivered, deduplicated)",
            [Fault("sqs", "DeleteMessage", "InternalError", 500, times=3)],
            "redelivered",
        ),
        # persistent
        BatchCase("s3 GetObject input persistent", [_s3("GetObject", match=INCOMING)], "dlq"),
        BatchCase(
            "s3 PutObject final manifest persistent (results already written)",
            [_s3("PutObject", "InternalError", 500, match="batch/manifests/", skip=1)],
            "dlq",
        ),
        BatchCase(
            "dynamodb idempotency PutItem persistent",
            [_ddb("PutItem", match=RES_TABLES["idempotency"])],
            "dlq",
        ),
        BatchCase(
            "dynamodb registry GetItem persistent",
            [_ddb("GetItem", "InternalServerError", 500, match=RES_TABLES["registry"])],
            "dlq",
        ),
        BatchCase(
            "dynamodb audit TransactWriteItems persistent",
            [_ddb("TransactWriteItems", match=ddb_tx)],
            "dlq",
        ),
        BatchCase(
            "s3 model artifact GetObject persistent (cold cache)",
            [_s3("GetObject", "InternalError", 500, match="model.onnx")],
            "dlq",
            cold=True,
        ),
        BatchCase(
            "sfn StartExecution persistent (fan-out)",
            [Fault("sfn", "StartExecution", "ThrottlingException", 400)],
            "dlq",
            rows=900,
            fanout=True,
        ),
        BatchCase(
            "s3 staging PutObject persistent mid-fan-out",
            [_s3("PutObject", match="batch/staging/", skip=3)],
            "failed_manifest",
            rows=900,
            fanout=True,
            reason="fan-out failed",
        ),
    ]
    big = [
        BatchCase(
            "s3 UploadPart 500 ×2 then CompleteMultipartUpload 503 (mid-file)",
            [
                _s3("UploadPart", "InternalError", 500, times=2),
                _s3("CompleteMultipartUpload", "ServiceUnavailable", 503, times=1),
            ],
            "survived",
            big=True,
        ),
        BatchCase(
            "s3 second UploadPart persistent (mid-file)",
            [_s3("UploadPart", "InternalError", 500, skip=1)],
            "dlq",
            big=True,
        ),
    ]
    return cases + big


def _big_spec(name: str, rows: int) -> FileSpec:
    """A valid CSV whose scored output is over one 8 MiB multipart part."""
    from ferry_cli.batch_files import csv_bytes

    body = csv_bytes(rows, seed=23)
    return FileSpec(
        f"{INCOMING}{name}.csv", body, "csv", dict.fromkeys(range(1, rows + 1), "scored")
    )


def _set_runtime(p: BatchPlatform, case: BatchCase) -> None:
    """The runtime a case needs: fan-out or not, big chunks for the big file, a cold cache."""
    os.environ["BATCH_FANOUT_THRESHOLD_BYTES"] = "40000" if case.fanout else str(1 << 30)
    os.environ["BATCH_CHUNK_ROWS"] = "16384" if case.big else "97"
    if case.cold:
        shutil.rmtree(os.environ["MODEL_CACHE_DIR"], ignore_errors=True)
    p.handler.runtime.cache_clear()


def _queue_bodies(p: BatchPlatform, url: str) -> list[str]:
    out = []
    while True:
        got = p.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        if not got.get("Messages"):
            return out
        for m in got["Messages"]:
            out.append(m["Body"])
            p.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@dataclass
class Outcomes:
    """Counts over all cases."""

    survived: int = 0
    redelivered: int = 0
    dlq: int = 0
    redriven: int = 0
    failed_manifest: int = 0
    refused: int = 0
    warned: int = 0
    lost: int = 0
    half_written: int = 0
    rows: int = 0


def _visible_outputs_complete(p: BatchPlatform, spec: FileSpec, bad: list[str], name: str) -> int:
    """A result visible without a success manifest must still be whole (0 or 1 problems)."""
    from ferry_core.batch.keys import parse_key

    bk = parse_key(spec.key)
    want_scored = sorted(r for r, s in spec.expect.items() if s == "scored")
    want_rejected = sorted(r for r, s in spec.expect.items() if s == "rejected")
    scored, rejected = read_object(p, bk.scored), read_object(p, bk.rejected)
    if scored is not None and sorted(scored_rows(spec.fmt, scored)) != want_scored:
        bad.append(f"{name}: a partial scored file is visible")
        return 1
    if rejected is not None:
        rows = sorted(json.loads(x)["row"] for x in rejected.splitlines() if x)
        if rows != want_rejected:
            bad.append(f"{name}: a partial rejected file is visible")
            return 1
    return 0


def run_batch_case(
    p: BatchPlatform,
    inj: FaultInjector,
    case: BatchCase,
    index: int,
    out: Outcomes,
    bad: list[str],
) -> None:
    """One file through the queue under the case's faults, judged with faults off."""
    from ferry_core.batch.keys import parse_key

    rng = random.Random(index)
    name = f"faults/{index:02d} {case.name.split(' ')[0]}"
    spec = (
        _big_spec(name, 84_000)
        if case.big
        else make_file(case.fmt, case.rows, 500 + index, name, "")
    )
    _set_runtime(p, case)
    events = upload_events(p, [spec])
    body = events[spec.key]
    invoker = Invoker(p.handler)
    seen: set[str] = set()
    with inj.active(case.faults, case.cuts):
        send(p, [body])
        drain(p, invoker, rng, max_polls=40)
        run_fanouts(p, rng, seen, catch=True)
    dead = _queue_bodies(p, p.dlq_url)
    failed = invoker.failed[body]
    label = f"[{case.name}]"
    _fired(case.faults, case.cuts, label, bad)
    if case.expect in ("survived", "redelivered"):
        if dead:
            bad.append(f"{label} the message was dead-lettered")
        if case.expect == "survived" and failed:
            bad.append(
                f"{label} {failed} failed delivery(ies): botocore's retries should absorb it"
            )
        if case.expect == "redelivered" and not (failed or invoker.delivered[body] > 1):
            bad.append(f"{label} expected a failed first delivery (the fault is past the budget)")
    elif case.expect == "dlq":
        if dead != [body]:
            bad.append(f"{label} expected the message in the DLQ, found {len(dead)} message(s)")
        manifest = json.loads(read_object(p, parse_key(spec.key).manifest) or b"{}")
        if manifest.get("status") == "succeeded":
            bad.append(f"{label} a succeeded manifest although every delivery failed")
        out.half_written += _visible_outputs_complete(p, spec, bad, label)
        out.dlq += 1
        send(p, dead)  # the operator's redrive, faults fixed
        drain(p, invoker, rng, max_polls=40)
        run_fanouts(p, rng, seen, catch=True)
        if _queue_bodies(p, p.dlq_url):
            bad.append(f"{label} the redriven message failed again")
    if case.expect == "failed_manifest":
        manifest = json.loads(read_object(p, parse_key(spec.key).manifest) or b"{}")
        if manifest.get("status") != "failed" or case.reason not in str(manifest.get("reason")):
            bad.append(
                f"{label} expected a failed manifest ({case.reason!r}), got "
                f"{manifest.get('status')}: {manifest.get('reason')}"
            )
        out.half_written += _visible_outputs_complete(p, spec, bad, label)
        staging = p.s3.list_objects_v2(Bucket=p.bucket, Prefix="batch/staging/")["KeyCount"]
        if staging:
            bad.append(f"{label} {staging} staging object(s) left after the failure")
        out.failed_manifest += 1
        return
    tally = Tally()
    problems: list[str] = []
    bk = parse_key(spec.key)
    index = version_index(p, bk.scored, bk.rejected, bk.manifest)
    rid = verify_file(p, spec, tally, problems, index, reruns=True)
    bad += [f"{label} {x}" for x in problems]
    out.lost += tally.lost
    out.rows += tally.rows_in
    out.half_written += sum("manifest says" in x or "partial" in x for x in problems)
    _check_audit(p, rid, label, bad)
    uploads = p.s3.list_multipart_uploads(Bucket=p.bucket).get("Uploads", [])
    if uploads:
        bad.append(f"{label} {len(uploads)} multipart upload(s) left open")
        for u in uploads:  # so the next case starts clean
            p.s3.abort_multipart_upload(Bucket=p.bucket, Key=u["Key"], UploadId=u["UploadId"])
    if case.expect == "survived":
        out.survived += 1
    elif case.expect == "redelivered":
        out.redelivered += 1
    else:
        out.redriven += 1


def _fired(faults: list[Fault], cuts: list[Cut], label: str, bad: list[str]) -> None:
    """A fault that never fired means the case tested nothing: say so."""
    for f in faults:
        if not f.injected:
            bad.append(f"{label} the {f.service} {f.operation} fault never fired")
    for c in cuts:
        if not c.injected:
            bad.append(f"{label} the GetObject body cut never fired")


def _check_audit(p: BatchPlatform, rid: str | None, label: str, bad: list[str]) -> None:
    from ferry_core.audit import AuditLog

    if rid is None:
        return
    entries = AuditLog(p.ddb, p.res.audit_table).entries("credit-risk")
    n = sum(1 for e in entries if e.event == "batch_run" and e.details.get("run_id") == rid)
    if n != 1:
        bad.append(f"{label} the run has {n} audit entries, not 1")


# ---- governance cases -------------------------------------------------------------------------


@dataclass
class GovCase:
    """One governance event under `faults`: "moved" (as if no fault), "refused" (nothing written),
    "warned" (the event stands, its anchor or publication failed and the outcome says so)."""

    name: str
    faults: list[Fault]
    expect: str
    action: str = "promote"
    warning: str = ""


def gov_cases() -> list[GovCase]:
    """Every call a governance event makes (the transaction, the anchor, the publication, the
    reads before them), transient and persistent, on promote, rollback and archive."""
    reg, audit = RES_TABLES["registry"], RES_TABLES["audit"]
    anchors = _RES.anchor_bucket
    return [
        GovCase("TransactWriteItems throttled ×3", [_ddb("TransactWriteItems", times=3)], "moved"),
        GovCase(
            "TransactWriteItems throughput exceeded ×2 (rollback)",
            [_ddb("TransactWriteItems", "ProvisionedThroughputExceededException", times=2)],
            "moved",
            action="rollback",
        ),
        GovCase(
            "TransactWriteItems 500 ×3 (archive)",
            [_ddb("TransactWriteItems", "InternalServerError", 500, times=3)],
            "moved",
            action="archive",
        ),
        GovCase(
            "anchor PutObject SlowDown ×2", [_s3("PutObject", match=anchors, times=2)], "moved"
        ),
        GovCase(
            "artifact GetObject 500 ×2",
            [_s3("GetObject", "InternalError", 500, match="model.onnx", times=2)],
            "moved",
        ),
        GovCase("registry GetItem throttled ×3", [_ddb("GetItem", match=reg, times=3)], "moved"),
        GovCase(
            "audit head Query 500 ×2",
            [_ddb("Query", "InternalServerError", 500, match=audit, times=2)],
            "moved",
        ),
        GovCase(
            "EventBridge PutEvents throttled ×2",
            [Fault("eventbridge", "PutEvents", "ThrottlingException", 400, times=2)],
            "moved",
        ),
        GovCase("TransactWriteItems persistent", [_ddb("TransactWriteItems")], "refused"),
        GovCase(
            "TransactWriteItems persistent (rollback)",
            [_ddb("TransactWriteItems", "InternalServerError", 500)],
            "refused",
            action="rollback",
        ),
        GovCase(
            "artifact GetObject persistent",
            [_s3("GetObject", "InternalError", 500, match="model.onnx")],
            "refused",
        ),
        GovCase(
            "registry GetItem persistent",
            [_ddb("GetItem", "InternalServerError", 500, match=reg)],
            "refused",
        ),
        GovCase("audit head Query persistent", [_ddb("Query", match=audit)], "refused"),
        GovCase(
            "anchor PutObject persistent",
            [_s3("PutObject", match=anchors)],
            "warned",
            warning="anchor could not be written",
        ),
        GovCase(
            "anchor PutObject answer lost (applied)",
            [_s3("PutObject", "InternalError", 500, match=anchors, times=1, applied=True)],
            "moved",
        ),
        GovCase(
            "EventBridge PutEvents persistent",
            [Fault("eventbridge", "PutEvents", "InternalException", 500)],
            "warned",
            warning="EventBridge publish failed",
        ),
    ]


@dataclass
class GovBench:
    """One model whose history grows case by case; the governance clients, made once."""

    res: Any
    clients: dict[str, Any]
    workdir: Path
    model: str = "gov-faults"
    cases: int = 0

    def governance(self, cache: str) -> Any:
        """A governance with an empty artifact cache (so the integrity check reads S3)."""
        from ferry_core.governance import connect

        return connect(
            dynamodb=self.clients["dynamodb"],
            s3=self.clients["s3"],
            events=self.clients["events"],
            registry_table=self.res.registry_table,
            audit_table=self.res.audit_table,
            anchor_bucket=self.res.anchor_bucket,
            cache_dir=str(self.workdir / cache),
            env="local",
        )


def _state(gov: Any, model: str) -> tuple[Any, int, int, dict[int, str]]:
    pointer = gov.reader.fresh_pointer(model, "production")
    statuses = {int(r["version"]): r.get("status") for r in gov.reader.version_records(model)}
    return (
        pointer.version if pointer else None,
        len(gov.reader.history(model, "production")),
        len(gov.audit.entries(model)),
        statuses,
    )


def run_gov_case(
    bench: GovBench, inj: FaultInjector, case: GovCase, out: Outcomes, bad: list[str]
) -> None:
    """Set up (faults off): a new version, promoted first for a rollback; then the event under
    the faults; then judge what was written."""
    from ferry_core.card import Lineage
    from ferry_core.registration import register

    bench.cases += 1
    model, label = bench.model, f"[governance: {case.name}]"
    setup = bench.governance("gov-setup")
    card, _ = register(
        built_model(),
        model,
        bench.clients["s3"],
        bench.res.model_bucket,
        setup,
        Lineage(),
        "reliability",
    )
    new = card.version
    if setup.reader.fresh_pointer(model, "production") is None:
        setup.promote(model, new, actor="reliability")
        card, _ = register(
            built_model(),
            model,
            bench.clients["s3"],
            bench.res.model_bucket,
            setup,
            Lineage(),
            "reliability",
        )
        new = card.version
    if case.action == "rollback":
        setup.promote(model, new, actor="reliability")
        target = setup.rollback_target(model)
        target = target.version if target else None
    else:
        target = new
    gov = bench.governance(f"gov-cold-{bench.cases}")
    before = _state(gov, model)
    outcome, error = None, None
    with inj.active(case.faults):
        try:
            if case.action == "promote":
                outcome = gov.promote(model, new, actor="faulty", reason=case.name)
            elif case.action == "rollback":
                outcome = gov.rollback(model, actor="faulty", reason=case.name)
            else:
                outcome = gov.archive(model, new, actor="faulty", reason=case.name)
        except Exception as exc:  # refused or failed: judged by what was written
            error = exc
    _fired(case.faults, [], label, bad)
    after = _state(gov, model)
    if case.action == "archive":
        moved = after[3].get(new) == "archived"
    else:
        moved = after[0] == target and before[0] != target
    wrote, hist = after[2] - before[2], after[1] - before[1]
    if moved != (wrote == 1) or (case.action != "archive" and hist != wrote) or wrote > 1:
        bad.append(
            f"{label} half-written: pointer {before[0]}→{after[0]}, {hist} history and "
            f"{wrote} audit entries"
        )
        out.half_written += 1
    report = gov.audit.verify(model)
    if case.expect == "refused":
        if error is None or moved or wrote:
            bad.append(
                f"{label} expected a refusal with nothing written; error={error!r}, "
                f"moved={moved}, audit +{wrote}"
            )
        if not report.ok:
            bad.append(f"{label} audit verify: {report.first_problem}")
        out.refused += 1
        return
    if error is not None or not moved or wrote != 1:
        bad.append(
            f"{label} expected the {case.action} to land once; error={error!r}, "
            f"moved={moved}, audit +{wrote}"
        )
        return
    warnings = " ".join(outcome.warnings) if outcome else ""
    if case.expect == "moved":
        if warnings:
            bad.append(f"{label} a warning although the {case.action} landed: {warnings}")
        if not report.ok:
            bad.append(f"{label} audit verify: {report.first_problem}")
        if outcome is not None and outcome.event_id is None:
            bad.append(f"{label} the event was not published")
        out.survived += 1
        return
    if case.warning not in warnings:
        bad.append(f"{label} expected a warning {case.warning!r}, got {warnings!r}")
    if "anchor" in case.warning:
        problems = [p["problem"] for p in report.problems]
        if problems != ["unanchored"]:
            bad.append(f"{label} verify should name the unanchored entry, said {problems}")
        setup.approve(model, 1, actor="reliability", reason="the next event re-anchors")
        report = gov.audit.verify(model)
    if not report.ok:
        bad.append(f"{label} audit verify after the next event: {report.first_problem}")
    out.warned += 1


# ---- the property ------------------------------------------------------------------------------


def run_faults(mode: Mode, result: PropertyResult, workdir: Path, select: str = "") -> None:
    """Every case once (fast), or in `mode.size` rounds with fresh files (long); `select`
    keeps only the cases whose name contains it."""
    import boto3

    inj = FaultInjector()
    out = Outcomes()
    bad = result.violations
    rounds = mode.size(1, 3)
    runs = 0
    with (
        inj.compressed_backoff(),
        batch_platform(
            workdir, before_clients=lambda: inj.install(boto3._get_default_session().events)
        ) as p,
    ):
        config = boto3.client("s3").meta.config.retries
        names = ("s3", "dynamodb", "events")
        bench = GovBench(p.res, {n: boto3.client(n) for n in names}, workdir)
        for r in range(rounds):  # fresh cases each round: a fault counts what it injected
            cases = [c for c in batch_cases() if select in c.name]
            governance_cases = [c for c in gov_cases() if select in c.name]
            for i, case in enumerate(cases):
                if case.big and r > 0:
                    continue  # one multipart round is enough; the rest is the same code
                runs += 1
                run_batch_case(p, inj, case, r * 100 + i, out, bad)
            for gcase in governance_cases:
                runs += 1
                run_gov_case(bench, inj, gcase, out, bad)
    result.figures.update(
        {
            "client retry mode": f"{config.get('mode', 'legacy')} (botocore default)",
            "cases": runs,
            **{f"faults injected: {svc}": inj.injected[svc] for svc in SERVICES},
            "retries by botocore": inj.retries,
            "backoff seconds (recorded, not slept)": round(inj.backoff_seconds, 1),
            "transient survived (botocore retries)": out.survived,
            "beyond retry budget, survived by redelivery": out.redelivered,
            "persistent → DLQ": out.dlq,
            "DLQ redriven and completed": out.redriven,
            "persistent → failed manifest with reason": out.failed_manifest,
            "persistent → promotion refused, nothing written": out.refused,
            "persistent → event kept, warning reported": out.warned,
            "rows verified": out.rows,
            "lost": out.lost,
            "half-written": out.half_written,
        }
    )


@prop(3, "Transient AWS faults are survived")
def check(mode: Mode, result: PropertyResult) -> None:
    """Throttling and 5xx under S3, DynamoDB, SQS, Step Functions and EventBridge calls."""
    with tempfile.TemporaryDirectory(prefix="ferry-p3-") as tmp:
        run_faults(mode, result, Path(tmp))
