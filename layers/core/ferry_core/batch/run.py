"""One batch run: resolve the model, stream the file, publish results, then the manifest.

Publication order is the exactly-once argument. On entry the manifest says `in_progress`
(overwriting any older one for this path); scored and rejected files are multipart uploads
that appear only when complete; the manifest is written `succeeded` last. A crash anywhere
leaves an `in_progress` manifest and at worst complete files from the same deterministic
run, which the retry overwrites; never a success manifest beside half a result. A redelivery
after success finds the succeeded manifest of the same object version and returns it:
nothing is rescored, rewritten or audited twice (the audit entry is written in one
transaction with a per-run marker, so even a crash between the audit write and the manifest
cannot record a run twice).

A file too large for one invocation is fanned out (`split` → `run_part` per part → `merge`):
parts are byte ranges of CSV / JSON Lines files or row groups of Parquet files, each scored
into `batch/staging/{run_id}/`, then merged into the same three outputs with rows renumbered.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from botocore.exceptions import BotoCoreError, ClientError

from ferry_core.batch import formats
from ferry_core.batch.columns import ChunkVerdict, ColumnarValidator
from ferry_core.batch.keys import (
    VERSION_TAG,
    BatchFileError,
    BatchKey,
    ObjectRef,
    failure_manifest_key,
    parse_key,
    run_id,
)
from ferry_core.batch.s3io import MultipartWriter, RangeFile, open_stream
from ferry_core.capture import CaptureBuffer
from ferry_core.card import Card
from ferry_core.clock import now_iso
from ferry_core.errors import FerryError
from ferry_core.inference import OnnxModel
from ferry_core.scoring import ScoringService
from ferry_core.validation import Issue, Verdict

CONTENT_TYPE = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
ACTOR = "ferry-batch"


@contextlib.contextmanager
def all_or_nothing(*outputs: MultipartWriter) -> Iterator[None]:
    """Commit every output when the block finishes; abort them all if it (or a commit) raises.

    A multipart upload becomes visible only on commit, so a failed run leaves no half result.
    """
    try:
        yield
        for out in outputs:
            out.commit()
    except BaseException:
        for out in outputs:
            out.abort()
        raise


@dataclass(frozen=True)
class BatchSettings:
    """Sizes that bound memory and time (infra/config.py sets them per environment)."""

    chunk_rows: int = 65_536
    fanout_threshold_bytes: int = 256 * 1024 * 1024
    part_bytes: int = 64 * 1024 * 1024
    csv_block_bytes: int = formats.CSV_BLOCK_BYTES
    # Capture (issue 7): this share of scored rows goes to capture/rows/ for the drift function,
    # at most `capture_max_rows` a file (drift needs a sample, not a copy of every upload).
    capture_sample_rate: float = 0.0
    capture_max_rows: int = 10_000


@dataclass
class Counts:
    """Row accounting of a run or a part: rows_in = rows_scored + rows_rejected, always."""

    rows_in: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.rows_in += other.rows_in
        self.rows_scored += other.rows_scored
        self.rows_rejected += other.rows_rejected
        self.problems.update(other.problems)
        self.warnings.update(other.warnings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_scored": self.rows_scored,
            "rows_rejected": self.rows_rejected,
            "problems": dict(sorted(self.problems.items())),
            "warnings": dict(sorted(self.warnings.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        return cls(
            d["rows_in"],
            d["rows_scored"],
            d["rows_rejected"],
            Counter(d.get("problems", {})),
            Counter(d.get("warnings", {})),
        )


AuditAppend = Callable[..., Any]


def record_batch_run(
    append: AuditAppend, manifest: dict[str, Any], once: dict[str, Any] | None = None
) -> bool:
    """Write the run to the audit trail (`AuditLog.append`), at most once per run.

    `once` is a conditional Put written in the same transaction: when it already exists the
    append is refused and nothing is written. Returns whether an entry was written.
    """
    from ferry_core.errors import TransactionRefused

    model = manifest["model"]
    try:
        append(
            model["name"],
            "batch_run",
            ACTOR,
            version=model["version"],
            details={
                "run_id": manifest["run_id"],
                "input": {
                    k: manifest["input"][k] for k in ("bucket", "key", "version_id", "sha256")
                },
                "rows_in": manifest["rows_in"],
                "rows_scored": manifest["rows_scored"],
                "rows_rejected": manifest["rows_rejected"],
                "manifest": manifest["outputs"]["manifest"],
            },
            transact=[once] if once else (),
        )
    except TransactionRefused:
        return False
    return True


def _outage(exc: FerryError) -> bool:
    """A domain error raised because an AWS call failed, not because of the file or model."""
    return isinstance(exc.__cause__, BotoCoreError | ClientError)


def _client_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


class BatchRunner:
    """Scores uploaded files into scored / rejected / manifest objects in the same bucket."""

    def __init__(
        self,
        s3: Any,
        service: ScoringService,
        settings: BatchSettings | None = None,
        audit: AuditAppend | None = None,
        audit_once: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._s3 = s3
        self._service = service
        self.settings = settings or BatchSettings()
        self._audit = audit
        self._audit_once = audit_once
        self._clock = clock

    # ---- the whole file in this invocation ------------------------------------------------
    def run(self, obj: ObjectRef) -> dict[str, Any]:
        """Score one uploaded object; returns its manifest (a domain failure is a manifest too).

        A registry or model store that cannot be read (an AWS call failed after botocore's
        retries) says nothing about the file: that raises, so the queue retries the message
        and dead-letters it if the outage lasts, instead of failing the file for good.
        """
        started, t0 = self._clock(), time.perf_counter()
        try:
            bk = parse_key(obj.key)
        except BatchFileError as exc:
            return self._write_unroutable(obj, exc.message, started)
        previous = self.manifest(obj.bucket, bk.manifest)
        pinned = self._pin(obj)
        if pinned is None:
            return {"status": "superseded", "input": obj.as_dict()}
        if _same_run(previous, pinned):
            return {**previous, "duplicate": True}
        manifest = self._begin(pinned, bk, started)
        scored = MultipartWriter(self._s3, obj.bucket, bk.scored, CONTENT_TYPE[bk.format])
        rejected = MultipartWriter(self._s3, obj.bucket, bk.rejected, CONTENT_TYPE["jsonl"])
        try:
            with all_or_nothing(scored, rejected):
                card = self._resolve(pinned, bk, manifest)
                model = self._service.model(card)
                cols = ColumnarValidator(card.input_schema, self._service.validator(card))
                sample = self._sampler(pinned)
                counts, sha256 = self._score(
                    pinned, bk, card, model, cols, scored, rejected, sample=sample
                )
                if counts.rows_in == 0:
                    raise BatchFileError("the file has no data rows")
        except FerryError as exc:
            if _outage(exc):
                raise
            return self._fail(manifest, bk, exc.message, t0)
        manifest["input"]["sha256"] = sha256
        if sample is not None:  # only a committed run's rows reach the capture
            sample.commit(card, run_id(pinned))
        return self._succeed(manifest, counts, t0)

    def _sampler(self, obj: ObjectRef) -> BatchSample | None:
        rate = self.settings.capture_sample_rate
        if rate <= 0 or self.settings.capture_max_rows <= 0:
            return None
        buffer = CaptureBuffer(
            self._s3,
            obj.bucket,
            sample_rate=rate,
            source="batch",
            max_records=self.settings.capture_max_rows,
            background=False,
        )
        return BatchSample(buffer, self.settings.capture_max_rows)

    # ---- fan-out: split, parts, merge (the Step Functions Distributed Map path) -----------
    def needs_fanout(self, obj: ObjectRef) -> bool:
        return (obj.size or 0) > self.settings.fanout_threshold_bytes

    def split(self, obj: ObjectRef) -> dict[str, Any]:
        """Plan the parts of a large file: writes `parts.json` (the Map's ItemReader) to staging.

        Resolves the model once, so every part scores with the same version.
        """
        started, t0 = self._clock(), time.perf_counter()
        try:
            bk = parse_key(obj.key)
        except BatchFileError as exc:
            return {
                "status": "failed",
                "manifest": self._write_unroutable(obj, exc.message, started),
            }
        pinned = self._pin(obj)
        if pinned is None:
            return {"status": "superseded"}
        previous = self.manifest(obj.bucket, bk.manifest)
        if _same_run(previous, pinned):
            return {"status": "duplicate", "manifest": previous}
        manifest = self._begin(pinned, bk, started)
        try:
            card = self._resolve(pinned, bk, manifest)
            parts = self._plan(pinned, bk, card)
        except FerryError as exc:
            return {"status": "failed", "manifest": self._fail(manifest, bk, exc.message, t0)}
        rid = manifest["run_id"]
        stage = staging_prefix(rid)
        items = [{**p, "index": i} for i, p in enumerate(parts)]
        plan = {"manifest": manifest, "object": pinned.as_dict(), "parts": len(items)}
        self._put_json(obj.bucket, f"{stage}plan.json", plan)
        self._put_json(obj.bucket, f"{stage}parts.json", items)
        self._put_manifest(obj.bucket, bk.manifest, manifest)
        return {
            "status": "ready",
            "run_id": rid,
            "bucket": obj.bucket,
            "parts_key": f"{stage}parts.json",
            "parts": len(items),
            "object": pinned.as_dict(),
            "model_version": card.version,
        }

    def _plan(self, obj: ObjectRef, bk: BatchKey, card: Card) -> list[dict[str, Any]]:
        size = obj.size or 0
        step = max(1, self.settings.part_bytes)
        if bk.format == "parquet":
            meta = formats.open_parquet(RangeFile(self._s3, obj, size)).metadata
            parts, first, acc = [], 0, 0
            for g in range(meta.num_row_groups):
                acc += meta.row_group(g).total_byte_size
                if acc >= step or g == meta.num_row_groups - 1:
                    parts.append({"row_groups": [first, g + 1]})
                    first, acc = g + 1, 0
            return parts or [{"row_groups": [0, 0]}]
        start, header = 0, None
        if bk.format == "csv":
            line = open_stream(self._s3, obj, (0, min(size, 1 << 20))).readline()
            header = formats.read_header(io.BytesIO(line))
            formats.check_header(header, card.input_schema)
            start = len(line)
        bounds = list(range(start, size, step)) or [start]
        return [
            {"start": b, "end": min(size, b + step), "size": size, "header": header} for b in bounds
        ]

    def run_part(self, obj: ObjectRef, part: dict[str, Any], version: int) -> dict[str, Any]:
        """Score one part into staging; returns its row accounting (small: the Map's result)."""
        bk = parse_key(obj.key)
        card = self._service.registry.card(bk.model, version)
        model = self._service.model(card)
        cols = ColumnarValidator(card.input_schema, self._service.validator(card))
        names = part_keys(run_id(obj), part["index"], bk)
        scored = MultipartWriter(self._s3, obj.bucket, names["scored"], CONTENT_TYPE[bk.format])
        rejected = MultipartWriter(self._s3, obj.bucket, names["rejected"], CONTENT_TYPE["jsonl"])
        sample = self._sampler(obj)
        with all_or_nothing(scored, rejected):
            counts, _ = self._score(obj, bk, card, model, cols, scored, rejected, part, sample)
        if sample is not None:
            sample.commit(card, f"{run_id(obj)}#part{part['index']}")
        summary = {"index": part["index"], **counts.as_dict()}
        self._put_json(obj.bucket, names["summary"], summary)
        return summary

    def merge(self, obj: ObjectRef) -> dict[str, Any]:
        """Concatenate the parts, renumbering rows, into the three outputs; manifest last."""
        t0 = time.perf_counter()
        bk = parse_key(obj.key)
        rid = run_id(obj)
        stage = staging_prefix(rid)
        plan = self._get_json(obj.bucket, f"{stage}plan.json")
        manifest = plan["manifest"]
        counts = Counts()
        scored = MultipartWriter(self._s3, obj.bucket, bk.scored, CONTENT_TYPE[bk.format])
        rejected = MultipartWriter(self._s3, obj.bucket, bk.rejected, CONTENT_TYPE["jsonl"])
        out = formats.ScoredWriter(bk.format, scored)
        try:
            with all_or_nothing(scored, rejected):
                for i in range(plan["parts"]):
                    names = part_keys(rid, i, bk)
                    summary = Counts.from_dict(self._get_json(obj.bucket, names["summary"]))
                    self._copy_renumbered(obj.bucket, names, bk, out, rejected, counts.rows_in)
                    counts.add(summary)
                if counts.rows_in == 0:
                    raise BatchFileError("the file has no data rows")
                out.close()
                if bk.format == "csv" and counts.rows_scored == 0:
                    scored.write(b"")
        except FerryError as exc:
            return self._fail(manifest, bk, exc.message, t0)
        sha = open_stream(self._s3, obj)
        sha.raw.drain()
        manifest["input"]["sha256"] = sha.raw.sha256.hexdigest()
        manifest["parts"] = plan["parts"]
        done = self._succeed(manifest, counts, t0)
        self._clear_staging(obj.bucket, stage)
        return done

    def fail(self, obj: ObjectRef, reason: str) -> dict[str, Any]:
        """The fan-out's failure path: a failed manifest (with reason) and no staging left."""
        bk = parse_key(obj.key)
        stage = staging_prefix(run_id(obj))
        try:
            manifest = self._get_json(obj.bucket, f"{stage}plan.json")["manifest"]
        except Exception:
            manifest = self._begin(obj, bk, self._clock())
        done = self._fail(manifest, bk, reason, time.perf_counter())
        self._clear_staging(obj.bucket, stage)
        return done

    def _copy_renumbered(
        self,
        bucket: str,
        names: dict[str, str],
        bk: BatchKey,
        out: formats.ScoredWriter,
        rejected: MultipartWriter,
        offset: int,
    ) -> None:
        part_obj = ObjectRef(bucket, names["scored"])
        if bk.format == "jsonl":
            for line in open_stream(self._s3, part_obj):
                rec = json.loads(line)
                rec["row"] += offset
                out.write_lines((json.dumps(rec, allow_nan=False) + "\n").encode())
        elif bk.format == "csv":
            stream = open_stream(self._s3, part_obj)
            header = formats.read_header(stream) if stream.peek(1) else None
            if header is not None:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(column_names=header, use_threads=False),
                    convert_options=pacsv.ConvertOptions(
                        column_types={n: _OUTPUT_TYPES.get(n, pa.string()) for n in header},
                        strings_can_be_null=False,
                    ),
                )
                for batch in reader:
                    out.write_table(_offset_rows(pa.Table.from_batches([batch]), offset))
        else:
            size = self._s3.head_object(Bucket=bucket, Key=names["scored"])["ContentLength"]
            pf = formats.open_parquet(RangeFile(self._s3, part_obj, size))
            for batch in pf.iter_batches(batch_size=self.settings.chunk_rows):
                out.write_table(_offset_rows(pa.Table.from_batches([batch]), offset))
        for line in open_stream(self._s3, ObjectRef(bucket, names["rejected"])):
            entry = json.loads(line)
            entry["row"] += offset
            rejected.write((json.dumps(entry, allow_nan=False) + "\n").encode())

    def _clear_staging(self, bucket: str, prefix: str) -> None:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self._s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

    def _put_json(self, bucket: str, key: str, data: Any) -> None:
        body = json.dumps(data, sort_keys=True).encode()
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def _get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def manifest(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _client_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def _pin(self, obj: ObjectRef) -> ObjectRef | None:
        """The exact version to read (HeadObject fills in the version id moto's events lack)."""
        kwargs = obj.get_kwargs()
        try:
            head = self._s3.head_object(**kwargs)
        except Exception as exc:
            if _client_code(exc) in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                return None  # deleted or overwritten since: that newer upload has its own event
            raise
        return ObjectRef(
            bucket=obj.bucket,
            key=obj.key,
            version_id=obj.version_id or head.get("VersionId"),
            etag=head["ETag"].strip('"'),
            size=int(head["ContentLength"]),
        )

    def _begin(self, obj: ObjectRef, bk: BatchKey, started: str) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "status": "in_progress",
            "reason": None,
            "run_id": run_id(obj),
            "input": {
                "bucket": obj.bucket,
                "key": obj.key,
                "version_id": obj.version_id,
                "etag": obj.etag,
                "size": obj.size,
                "sha256": None,
                "format": bk.format,
            },
            "model": {"name": bk.model, "version": bk.version, "selected_by": None},
            "rows_in": 0,
            "rows_scored": 0,
            "rows_rejected": 0,
            "problems": {},
            "warnings": {},
            "outputs": {"scored": bk.scored, "rejected": bk.rejected, "manifest": bk.manifest},
            "started_at": started,
            "finished_at": None,
        }
        self._put_manifest(obj.bucket, bk.manifest, manifest)
        return manifest

    def _resolve(self, obj: ObjectRef, bk: BatchKey, manifest: dict[str, Any]) -> Card:
        """Pinned by the key's @version, else by the object's tag, else production now."""
        version, how = bk.version, "prefix"
        if version is None:
            version, how = self._tagged_version(obj), "tag"
        if version is None:
            how = "production"
        card = self._service.registry.resolve(bk.model, version=version)
        manifest["model"] = {"name": card.name, "version": card.version, "selected_by": how}
        return card

    def _tagged_version(self, obj: ObjectRef) -> int | None:
        kwargs = {"Bucket": obj.bucket, "Key": obj.key}
        if obj.version_id:
            kwargs["VersionId"] = obj.version_id
        tags = self._s3.get_object_tagging(**kwargs).get("TagSet", [])
        value = next((t["Value"] for t in tags if t["Key"] == VERSION_TAG), None)
        if value is None:
            return None
        if not value.isdigit() or not 0 < int(value) < 10**9:
            raise BatchFileError(f"tag {VERSION_TAG}={value[:20]!r} is not a version number")
        return int(value)

    def _score(
        self,
        obj: ObjectRef,
        bk: BatchKey,
        card: Card,
        model: OnnxModel,
        cols: ColumnarValidator,
        scored: MultipartWriter,
        rejected: MultipartWriter,
        part: dict[str, Any] | None = None,
        sample: BatchSample | None = None,
    ) -> tuple[Counts, str | None]:
        """Stream the file (or one part of it) through validation and scoring into the sinks."""
        counts = Counts()
        out = formats.ScoredWriter(bk.format, scored)
        rejects = formats.RejectWriter(rejected)
        sha256: str | None = None
        empty_schema: pa.Schema | None = None
        if bk.format == "parquet":
            pf = formats.open_parquet(RangeFile(self._s3, obj, obj.size or 0))
            empty_schema = formats.output_schema(pf.schema_arrow)
            groups = list(range(*part["row_groups"])) if part else None
            chunks = formats.read_parquet(pf, card.input_schema, self.settings.chunk_rows, groups)
            self._consume(chunks, card, model, cols, out, rejects, counts, sample)
            if part is None:
                hashing = open_stream(self._s3, obj)
                hashing.raw.drain()
                sha256 = hashing.raw.sha256.hexdigest()
        else:
            stream = open_stream(self._s3, obj, _range(part))
            if bk.format == "csv":
                header = part.get("header") if part else None
                chunks = formats.read_csv(
                    _RangeLines(stream, part) if part else stream,
                    card.input_schema,
                    self.settings.chunk_rows,
                    header=header,
                    block_bytes=self.settings.csv_block_bytes,
                )
                names = header or None
                self._consume(chunks, card, model, cols, out, rejects, counts, sample)
                if names is None and part is None:
                    names = [f.name for f in card.input_schema.features]
            else:
                lines = _RangeLines(stream, part) if part else stream
                chunks = formats.read_jsonl(lines, self.settings.chunk_rows)
                self._consume(chunks, card, model, cols, out, rejects, counts, sample)
            if part is None:
                stream.raw.drain()
                sha256 = stream.raw.sha256.hexdigest()
        if bk.format == "csv" and out._writer is None:
            # No accepted rows: the scored file is still a valid CSV with the header.
            scored.write(b"")
        out.close(empty_schema)
        return counts, sha256

    def _consume(
        self,
        chunks: Iterator[formats.Chunk],
        card: Card,
        model: OnnxModel,
        cols: ColumnarValidator,
        out: formats.ScoredWriter,
        rejects: formats.RejectWriter,
        counts: Counts,
        sample: BatchSample | None = None,
    ) -> None:
        """A three-stage pipeline over bounded queues (a few chunks in flight at most).

        A reader thread reads, parses and validates the next chunk while this thread scores
        (onnxruntime releases the GIL) and a writer thread encodes and uploads the last one.
        Rows stay in file order; any stage's exception surfaces here and stops the run.
        """
        checked = _background(((c, self._check(c, cols)) for c in chunks), depth=2)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-write") as pool:
            pending: list[Future[None]] = []
            for chunk, check in checked:
                scores, labels = check.score(model)
                if sample is not None:
                    sample.take(chunk, check.accepted(), scores, labels)
                while len(pending) >= 2:
                    pending.pop(0).result()
                pending.append(
                    pool.submit(
                        self._write, chunk, check, scores, labels, card, out, rejects, counts
                    )
                )
            for f in pending:
                f.result()
        if counts.rows_in != counts.rows_scored + counts.rows_rejected:  # pragma: no cover
            raise RuntimeError(f"row accounting broke: {counts.as_dict()}")

    @staticmethod
    def _check(chunk: formats.Chunk, cols: ColumnarValidator) -> _Checked:
        if chunk.table is not None:
            return _Checked(table=cols.check(chunk.table, text=chunk.text))
        records = chunk.records or []
        return _Checked(records=cols.validator.check(records), n=len(records))

    @staticmethod
    def _write(
        chunk: formats.Chunk,
        check: _Checked,
        scores: np.ndarray,
        labels: np.ndarray,
        card: Card,
        out: formats.ScoredWriter,
        rejects: formats.RejectWriter,
        counts: Counts,
    ) -> None:
        entries = [
            formats.reject_entry(
                r.row, r.raw, [{"field": None, "problem": r.problem, "message": r.message}]
            )
            for r in chunk.rejects
        ]
        accepted = check.accepted()
        issues = check.issues()
        if issues:
            index = sorted(issues)
            if chunk.table is not None:
                picked = chunk.table.take(pa.array(index, type=pa.int64())).to_pylist()
            else:
                picked = [(chunk.records or [])[i] for i in index]
            for i, raw in zip(index, picked, strict=True):
                problems = [{"field": p.field, "problem": p.problem, "message": p.message}
                            for p in issues[i]]  # fmt: skip
                entries.append(formats.reject_entry(chunk.rows[i], raw, problems))
        if len(accepted) and accepted.any():
            out.write(chunk, accepted, scores, labels, card.version)
        entries.sort(key=lambda e: e["row"])
        rejects.write(entries)
        counts.warnings.update(check.warning_counts())
        counts.rows_in += chunk.size
        counts.rows_scored += int(accepted.sum())
        counts.rows_rejected += len(entries)
        for e in entries:
            counts.problems.update(p["problem"] for p in e["problems"])

    def _succeed(self, manifest: dict[str, Any], counts: Counts, t0: float) -> dict[str, Any]:
        seconds = time.perf_counter() - t0
        manifest.update(counts.as_dict())
        manifest.update(
            status="succeeded",
            finished_at=self._clock(),
            seconds=round(seconds, 3),
            rows_per_second=round(counts.rows_in / seconds, 1) if seconds > 0 else None,
        )
        if self._audit is not None:
            once = self._audit_once(manifest["run_id"]) if self._audit_once else None
            manifest["audit_recorded"] = record_batch_run(self._audit, manifest, once)
        self._put_manifest(manifest["input"]["bucket"], manifest["outputs"]["manifest"], manifest)
        return manifest

    def _fail(
        self, manifest: dict[str, Any], bk: BatchKey, reason: str, t0: float
    ) -> dict[str, Any]:
        """A failed manifest, and no stale results of an older upload beside it."""
        bucket = manifest["input"]["bucket"]
        for key in (bk.scored, bk.rejected):
            self._s3.delete_object(Bucket=bucket, Key=key)
        manifest.update(
            status="failed",
            reason=reason,
            finished_at=self._clock(),
            seconds=round(time.perf_counter() - t0, 3),
        )
        manifest["outputs"] = {"manifest": bk.manifest}
        self._put_manifest(bucket, bk.manifest, manifest)
        return manifest

    def _write_unroutable(self, obj: ObjectRef, reason: str, started: str) -> dict[str, Any]:
        key = failure_manifest_key(obj.key)
        manifest = {
            "status": "failed",
            "reason": reason,
            "run_id": run_id(obj),
            "input": {**obj.as_dict(), "sha256": None},
            "model": None,
            "rows_in": 0,
            "rows_scored": 0,
            "rows_rejected": 0,
            "outputs": {"manifest": key},
            "started_at": started,
            "finished_at": self._clock(),
        }
        self._put_manifest(obj.bucket, key, manifest)
        return manifest

    def _put_manifest(self, bucket: str, key: str, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


_OUTPUT_TYPES = {
    "score": pa.float64(),
    "label": pa.int64(),
    "model_version": pa.int64(),
    "row": pa.int64(),
}


class BatchSample:
    """The capture sample of one run: rows kept per chunk, handed to the capture buffer only
    when the run commits (a failed run leaves no rows behind in the capture either)."""

    def __init__(self, buffer: CaptureBuffer, max_rows: int) -> None:
        self._buffer, self._max = buffer, max_rows
        self._parts: list[tuple[list[Any], np.ndarray, np.ndarray]] = []
        self.rows = 0

    def take(
        self, chunk: formats.Chunk, accepted: np.ndarray, scores: np.ndarray, labels: np.ndarray
    ) -> None:
        """Sample the accepted rows of a chunk (`scores` are those rows', in order)."""
        room = self._max - self.rows
        if room <= 0:
            return
        rows = np.flatnonzero(accepted)
        pos = self._buffer.sample_positions(len(rows))[:room]
        if not len(pos):
            return
        idx = rows[pos]
        if chunk.table is not None:
            picked = chunk.table.take(pa.array(idx, type=pa.int64())).to_pylist()
        else:
            picked = [(chunk.records or [])[i] for i in idx]
        self._parts.append((picked, scores[pos], labels[pos]))
        self.rows += len(pos)

    def commit(self, card: Card, ref: str) -> None:
        for picked, scores, labels in self._parts:
            self._buffer.add_rows(card.name, card.version, ref, picked, scores, labels)
        self._buffer.flush(wait=True)  # failures are logged and counted, never raised
        self._parts = []


@dataclass
class _Checked:
    """The verdict on one chunk: columnar (CSV, Parquet) or per record (JSON Lines)."""

    table: ChunkVerdict | None = None
    records: Verdict | None = None
    n: int = 0

    def accepted(self) -> np.ndarray:
        if self.table is not None:
            return self.table.accepted
        mask = np.zeros(self.n, dtype=bool)
        if self.records is not None:
            mask[self.records.row_index] = True
        return mask

    def issues(self) -> dict[int, list[Issue]]:
        if self.table is not None:
            return self.table.issues_by_row()
        out: dict[int, list[Issue]] = {}
        for issue in self.records.issues if self.records else []:
            out.setdefault(issue.instance, []).append(issue)
        return out

    def warning_counts(self) -> Counter[str]:
        if self.table is not None:
            return Counter(self.table.warning_counts())
        return Counter(w["field"] for ws in (self.records.warnings if self.records else [])
                       for w in ws)  # fmt: skip

    def score(self, model: OnnxModel) -> tuple[np.ndarray, np.ndarray]:
        if self.table is not None:
            return self.table.score(model)
        if self.records is None or not self.records.rows:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        scores = model.score(model.encode_rows(self.records.rows))
        return scores, model.labels(scores)


_DONE = object()


def _background(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Iterate `items` in a thread, `depth` ahead at most; its exceptions re-raise here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _DONE))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put((False, exc))

    thread = threading.Thread(target=produce, name="batch-read", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def staging_prefix(rid: str) -> str:
    return f"batch/staging/{rid}/"


def part_keys(rid: str, index: int, bk: BatchKey) -> dict[str, str]:
    stage = staging_prefix(rid)
    ext = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[bk.format]
    return {
        "scored": f"{stage}scored-{index:05d}{ext}",
        "rejected": f"{stage}rejected-{index:05d}.jsonl",
        "summary": f"{stage}summary-{index:05d}.json",
    }


def _offset_rows(table: pa.Table, offset: int) -> pa.Table:
    import pyarrow.compute as pc

    i = table.schema.get_field_index("row")
    return table.set_column(i, "row", pc.add(table.column(i).cast(pa.int64()), offset))


def _same_run(previous: dict[str, Any] | None, obj: ObjectRef) -> bool:
    """A succeeded manifest of this very object version: the work is done."""
    if not previous or previous.get("status") != "succeeded":
        return False
    done = previous.get("input", {})
    if obj.version_id and done.get("version_id"):
        return done["version_id"] == obj.version_id
    return bool(obj.etag) and done.get("etag") == obj.etag


def _range(part: dict[str, Any] | None) -> tuple[int, int] | None:
    """Read a part from one byte before its start (to find where its first line begins)."""
    if part is None or "start" not in part:
        return None
    return max(0, part["start"] - 1), part["size"]


class _RangeLines(io.RawIOBase):
    """The whole lines that begin inside [start, end) of a file, read from `start - 1`.

    The line straddling `start` belongs to the previous part, which reads past its own end
    to finish it; so every line is read by exactly one part.
    """

    def __init__(self, stream: Any, part: dict[str, Any]) -> None:
        self._stream = stream
        self._end = part["end"]
        self._pos = max(0, part["start"] - 1)
        if part["start"] > 0:
            self._pos += len(stream.readline())  # the rest of the previous part's line
        self._buffer = bytearray()

    def readable(self) -> bool:
        return True

    def readline(self, size: int = -1) -> bytes:
        if self._buffer:
            raise io.UnsupportedOperation("mixing read() and readline()")
        if self._pos >= self._end:
            return b""
        line = self._stream.readline()
        self._pos += len(line)
        return line

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        while line := self.readline():
            yield line

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        while len(self._buffer) < want and self._pos < self._end:
            lines = self._stream.readlines(1 << 20)
            if not lines:
                break
            for line in lines:
                if self._pos >= self._end:
                    break
                self._pos += len(line)
                self._buffer += line
        n = min(want, len(self._buffer))
        buffer[:n] = self._buffer[:n]
        del self._buffer[:n]
        return n
