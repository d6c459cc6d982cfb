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

Files above the fan-out threshold run the synthesized fan-out state machine in moto's Step
Functions interpreter (the local emulator, not AWS): its Part's Retry and its Catch to the
failed manifest are the definition's, the step handlers run in this process under the same
fault hooks.

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

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ferry_bench.batch_harness import (
    BatchPlatform,
    FanoutRuns,
    Invoker,
    batch_platform,
    drain,
    finish_fanouts,
    read_object,
    scored_rows,
    send,
    upload_events,
    version_index,
)
from ferry_bench.defect_files import INCOMING, FileSpec, make_file
from ferry_bench.fault_injection import (
    RES_TABLES,
    SERVICES,
    Cut,
    Fault,
    FaultInjector,
    Outcomes,
    Persistence,
    check_fired,
    ddb_fault,
    s3_fault,
)
from ferry_bench.governance_faults import GovBench, gov_cases, run_gov_case
from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.rows_accounted import RowTally, verify_file

# ---- batch cases -------------------------------------------------------------------------------


@dataclass
class BatchCase:
    """One file through the queue under `faults`, and what must become of it.

    expect: "survived" (botocore's retries absorbed every fault: no failed delivery),
    "part_retried" (a fan-out part failed past botocore's retries and the state machine's
    Retry ran it again: no failed delivery either), "redelivered" (a delivery failed, the
    queue's retry completed it), "dlq" (every retry failed: dead-lettered, then redriven with
    faults off and completed), "failed_manifest" (the fan-out's Catch wrote it).
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
    return _absorbed_cases() + _failing_cases() + _big_file_cases()


def _absorbed_cases() -> list[BatchCase]:
    """Faults botocore's retries absorb, and answers lost after the call was applied."""
    ddb_tx = RES_TABLES["audit"]
    return [
        BatchCase(
            "s3 GetObject input throttled ×2",
            [s3_fault("GetObject", match=INCOMING, times=2)],
            "survived",
        ),
        BatchCase("s3 HeadObject 503 ×2", [s3_fault("HeadObject", times=2)], "survived"),
        BatchCase(
            "s3 PutObject manifest 500 ×2",
            [s3_fault("PutObject", "InternalError", 500, match="batch/manifests/", times=2)],
            "survived",
        ),
        BatchCase(
            "s3 PutObject results SlowDown ×2 (after the manifest)",
            [
                s3_fault("PutObject", match="batch/scored/", times=2),
                s3_fault("PutObject", match="batch/rejected/", times=1),
            ],
            "survived",
        ),
        BatchCase(
            "dynamodb idempotency PutItem throttled ×2",
            [ddb_fault("PutItem", match=RES_TABLES["idempotency"], times=2)],
            "survived",
        ),
        BatchCase(
            "dynamodb registry GetItem throughput exceeded ×3",
            [
                ddb_fault(
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
            [ddb_fault("TransactWriteItems", match=ddb_tx, times=3)],
            "survived",
        ),
        BatchCase(
            "dynamodb audit Query 500 ×2",
            [ddb_fault("Query", "InternalServerError", 500, match=ddb_tx, times=2)],
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
                s3_fault("GetObject", match=INCOMING, skip=3, times=2),
                s3_fault("PutObject", match="batch/staging/", skip=4, times=2),
            ],
            "survived",
            rows=900,
            fanout=True,
        ),
        BatchCase(
            "s3 staging PutObject SlowDown ×3 mid-fan-out (one part invocation's attempts)",
            [s3_fault("PutObject", match="batch/staging/", skip=4, times=3)],
            "part_retried",
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
                s3_fault(
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
    ]


def _failing_cases() -> list[BatchCase]:
    """Faults beyond the retries: redelivered by the queue, dead-lettered, or a failed manifest."""
    ddb_tx = RES_TABLES["audit"]
    return [
        BatchCase(
            "s3 GetObject input cut mid-stream",
            [],
            "redelivered",
            cuts=[Cut(match="batch/incoming/", after=6000)],
        ),
        BatchCase(
            "s3 GetObject input SlowDown ×4 (beyond 3 attempts)",
            [s3_fault("GetObject", match=INCOMING, times=4)],
            "redelivered",
        ),
        BatchCase(
            "dynamodb registry GetItem throttled ×6 (beyond 4 attempts)",
            [ddb_fault("GetItem", match=RES_TABLES["registry"], times=6)],
            "redelivered",
        ),
        BatchCase(
            "sqs DeleteMessage fails after the run (redelivered, deduplicated)",
            [Fault("sqs", "DeleteMessage", "InternalError", 500, times=3)],
            "redelivered",
        ),
        # persistent
        BatchCase("s3 GetObject input persistent", [s3_fault("GetObject", match=INCOMING)], "dlq"),
        BatchCase(
            "s3 PutObject final manifest persistent (results already written)",
            [s3_fault("PutObject", "InternalError", 500, match="batch/manifests/", skip=1)],
            "dlq",
        ),
        BatchCase(
            "dynamodb idempotency PutItem persistent",
            [ddb_fault("PutItem", match=RES_TABLES["idempotency"])],
            "dlq",
        ),
        BatchCase(
            "dynamodb registry GetItem persistent",
            [ddb_fault("GetItem", "InternalServerError", 500, match=RES_TABLES["registry"])],
            "dlq",
        ),
        BatchCase(
            "dynamodb audit TransactWriteItems persistent",
            [ddb_fault("TransactWriteItems", match=ddb_tx)],
            "dlq",
        ),
        BatchCase(
            "s3 model artifact GetObject persistent (cold cache)",
            [s3_fault("GetObject", "InternalError", 500, match="model.onnx")],
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
            [s3_fault("PutObject", match="batch/staging/", skip=3)],
            "failed_manifest",
            rows=900,
            fanout=True,
            reason="fan-out failed",
        ),
    ]


def _big_file_cases() -> list[BatchCase]:
    """Faults in the middle of a multipart upload of a big result file."""
    return [
        BatchCase(
            "s3 UploadPart 500 ×2 then CompleteMultipartUpload 503 (mid-file)",
            [
                s3_fault("UploadPart", "InternalError", 500, times=2),
                s3_fault("CompleteMultipartUpload", "ServiceUnavailable", 503, times=1),
            ],
            "survived",
            big=True,
        ),
        BatchCase(
            "s3 second UploadPart persistent (mid-file)",
            [s3_fault("UploadPart", "InternalError", 500, skip=1)],
            "dlq",
            big=True,
        ),
    ]


def _big_spec(name: str, rows: int) -> FileSpec:
    """A valid CSV whose scored output is over one 8 MiB multipart part."""
    from ferry_core.batch.sample_files import csv_bytes

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
    part_errors = p.steps.errors["part_handler"]
    with inj.active(case.faults, case.cuts):
        send(p, [body])
        drain(p, invoker, rng, max_polls=40)
        fanned = finish_fanouts(p)
    dead = _queue_bodies(p, p.dlq_url)
    failed = invoker.failed[body]
    label = f"[{case.name}]"
    check_fired(case.faults, case.cuts, label, bad)
    _check_fanout(case, fanned, p.steps.errors["part_handler"] - part_errors, label, bad)
    if case.expect in ("survived", "part_retried", "redelivered"):
        if dead:
            bad.append(f"{label} the message was dead-lettered")
        if case.expect in ("survived", "part_retried") and failed:
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
        finish_fanouts(p)
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
    tally = RowTally()
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
    elif case.expect == "part_retried":
        out.part_retried += 1
    elif case.expect == "redelivered":
        out.redelivered += 1
    else:
        out.redriven += 1


def _check_fanout(
    case: BatchCase, fanned: FanoutRuns, part_errors: int, label: str, bad: list[str]
) -> None:
    """A fan-out case's execution ended as its faults call for: a failed part retried by the
    machine and the run succeeded, or the Catch failed it; every other fan-out succeeded."""
    if not case.fanout or case.expect == "dlq":
        return  # a persistent StartExecution fault: the redrive starts the one execution
    want = "FAILED" if case.expect == "failed_manifest" else "SUCCEEDED"
    if dict(fanned.statuses) != {want: 1}:
        bad.append(f"{label} expected one {want} fan-out execution, got {dict(fanned.statuses)}")
    if case.expect == "part_retried" and not (part_errors and fanned.failed_items == 0):
        bad.append(
            f"{label} expected a failed part retried by the machine ({part_errors} part "
            f"errors, {fanned.failed_items} failed items)"
        )


def _check_audit(p: BatchPlatform, rid: str | None, label: str, bad: list[str]) -> None:
    from ferry_core.audit.chain import AuditLog

    if rid is None:
        return
    entries = AuditLog(p.ddb, p.res.audit_table).entries("credit-risk")
    n = sum(1 for e in entries if e.event == "batch_run" and e.details.get("run_id") == rid)
    if n != 1:
        bad.append(f"{label} the run has {n} audit entries, not 1")


# ---- the property ------------------------------------------------------------------------------


def run_faults(mode: Mode, result: PropertyResult, workdir: Path, select: str = "") -> None:
    """Every case once (fast), or in `mode.size` rounds with fresh files (long); `select`
    keeps only the cases whose name contains it."""
    import boto3

    inj = FaultInjector()
    out = Outcomes()
    split = Persistence()
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
                before = len(bad)
                run_batch_case(p, inj, case, r * 100 + i, out, bad)
                split.count(case.faults, case.cuts, held=len(bad) == before)
            for gcase in governance_cases:
                runs += 1
                before = len(bad)
                run_gov_case(bench, inj, gcase, out, bad)
                split.count(gcase.faults, [], held=len(bad) == before)
        fanouts = p.fanouts
        part_invocations = p.steps.invocations["part_handler"]
    result.figures.update(
        {
            "client retry mode": f"{config.get('mode', 'legacy')} (botocore default)",
            "cases": runs,
            **split.figures(),
            **{f"faults injected: {svc}": inj.injected[svc] for svc in SERVICES},
            "retries by botocore": inj.retries,
            "backoff seconds (recorded, not slept)": round(inj.backoff_seconds, 1),
            "transient survived (botocore retries)": out.survived,
            "beyond retry budget, a fan-out part retried by the machine": out.part_retried,
            "beyond retry budget, survived by redelivery": out.redelivered,
            "persistent → DLQ": out.dlq,
            "DLQ redriven and completed": out.redriven,
            "persistent → failed manifest with reason": out.failed_manifest,
            "fan-out executions (Ferry-local's machine, moto's interpreter)": fanouts.executions,
            "fan-out executions failed through the Catch": fanouts.statuses["FAILED"],
            "part invocations retried by the machine's Retry": part_invocations - fanouts.items,
            "persistent → promotion refused, nothing written": out.refused,
            "persistent → event kept, warning reported": out.warned,
            "rows verified": out.rows,
            "lost": out.lost,
            "half-written": out.half_written,
        }
    )
    machine = "moto's Step Functions interpreter runs the synthesized definition"
    queue = "moto's SQS and the local poller stand in for Lambda's event source mapping"
    result.emulator_only.update(
        {
            "fan-out executions (Ferry-local's machine, moto's interpreter)": machine,
            "fan-out executions failed through the Catch": machine,
            "part invocations retried by the machine's Retry": machine,
            "beyond retry budget, a fan-out part retried by the machine": machine,
            "beyond retry budget, survived by redelivery": queue,
            "persistent → DLQ": f"{queue}; the redrive policy is the template's",
            "DLQ redriven and completed": queue,
        }
    )


@prop(3, "Transient AWS faults are survived")
def check(mode: Mode, result: PropertyResult) -> None:
    """Throttling and 5xx under S3, DynamoDB, SQS, Step Functions and EventBridge calls."""
    with tempfile.TemporaryDirectory(prefix="ferry-p3-") as tmp:
        run_faults(mode, result, Path(tmp))
