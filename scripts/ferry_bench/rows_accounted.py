"""Property 2: no row lost, none counted twice — through the real queue and the real handler.

Batch files in the three formats, each carrying every kind of malformed row the platform must
reject (missing fields, wrong types, out of range, unknown categories, NaN/inf, extra fields
and cells, blank and whitespace lines, ragged CSV rows, invalid UTF-8, non-object JSON, a
truncated last line, …), plus whole files that must fail with a reason. They are uploaded to
the data bucket under moto; the S3 events S3 put on the batch queue are replayed (each 1 to 5
times), mixed with poison messages, shuffled and sent back to the queue; the local platform's
SQS event-source poller (`ferry_local.pollers.SqsPoller`) feeds them to the real batch
handler in batches of 1 to 10, deleting what succeeded, so failed messages come back and the
queue's redrive policy moves them to the DLQ, as in AWS. Files above the fan-out threshold
start an execution of the synthesized fan-out state machine, which moto's Step Functions
interpreter runs (Split, the Distributed Map over parts.json, Merge; its Retry and Catch) with
the real step handlers: the fan-out figures come from those executions on the local emulator,
not from AWS. A second wave of late replays follows after the idempotency records are deleted
(as if they had expired).

Then everything is read back from S3, and judged against what was written into the files
(not against what the platform says): every data row of every file appears exactly once, by
row number, in the scored or the rejected output, on the side its defect calls for; each
manifest agrees with the outputs; each file ran once (one result version, one audit entry, no
run started after success); poison never produced an output, never failed a good message,
and either reached the DLQ or was consumed and counted in the `BatchFailures` alarm metric.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ferry_bench.batch_harness import (
    BatchPlatform,
    Invoker,
    batch_platform,
    clear_idempotency,
    drain,
    finish_fanouts,
    read_object,
    scored_rows,
    send,
    upload_events,
    version_index,
)
from ferry_bench.defect_files import INCOMING, MODEL, FileSpec, failing_files, make_file
from ferry_bench.properties import Mode, PropertyResult, prop

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


@dataclass
class RowTally:
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
    tally: RowTally,
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
    p: BatchPlatform, specs: list[FileSpec], tally: RowTally, bad: list[str]
) -> dict[str, int]:
    """Every output accounted for by a file; one audit entry per run; nothing left behind."""
    from ferry_core.audit.anchors import AnchorStore
    from ferry_core.audit.chain import AuditLog

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
        fanouts = finish_fanouts(p)
        expired = clear_idempotency(p)
        late = [events[k] for k in events if rng.random() < plan.late_share]
        rng.shuffle(late)
        send(p, late)
        polls += drain(p, invoker, rng, max_polls=20 * len(late) + 10)
        more = finish_fanouts(p)
        if more.executions:
            bad.append(f"late replays started {more.executions} new fan-out execution(s)")
        if set(fanouts.statuses) - {"SUCCEEDED"}:
            bad.append(f"fan-out executions did not all succeed: {dict(fanouts.statuses)}")
        tally = RowTally()
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
                "fan-out executions": fanouts.executions + more.executions,
                "fan-out engine": "Ferry-local's state machine on moto's interpreter (local)",
                "fan-out Map Run items (parts)": fanouts.items + more.items,
                "part invocations": p.steps.invocations["part_handler"],
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
