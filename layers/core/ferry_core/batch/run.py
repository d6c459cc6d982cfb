"""One batch run: resolve the model, stream the file, publish results, then the manifest.

`BatchRunner.run` scores a whole file in this invocation; a file too large for one is fanned
out (`split` → `run_part` per part → `merge`, or `fail`), each step a state of the fan-out
state machine. Exactly once: outputs appear only when complete and the manifest is written
last (`outputs`); a redelivery after success finds the succeeded manifest of the same object
version and returns it, so nothing is rescored, rewritten or audited twice (the audit entry
is written in one transaction with a per-run marker, `accounting.once_per_run`, so even a
crash between the audit write and the manifest cannot record a run twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry_core.audit.anchors import AnchorStore
from ferry_core.audit.chain import AuditLog
from ferry_core.batch import formats
from ferry_core.batch.accounting import AuditAppend, Counts, once_per_run, record_batch_run
from ferry_core.batch.chunks import BatchSample, Scorer, score_file
from ferry_core.batch.columns import ColumnarValidator
from ferry_core.batch.fanout import StateMachine, copy_renumbered, plan_parts
from ferry_core.batch.keys import (
    VERSION_TAG,
    BatchFileError,
    BatchKey,
    ObjectRef,
    parse_key,
    run_id,
)
from ferry_core.batch.outputs import Outputs, all_or_nothing, part_keys, same_run, staging_prefix
from ferry_core.batch.s3io import client_code, open_stream
from ferry_core.batch.settings import BatchEnvironment, BatchSettings
from ferry_core.card import Card
from ferry_core.clock import now_iso
from ferry_core.errors import FerryError
from ferry_core.monitoring.capture import CaptureBuffer
from ferry_core.registry.events import EventPublisher, publishing
from ferry_core.serving.scoring import ScoringService

_log = logging.getLogger(__name__)


def _outage(exc: FerryError) -> bool:
    """A domain error raised because an AWS call failed, not because of the file or model."""
    return isinstance(exc.__cause__, BotoCoreError | ClientError)


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
        fanout: StateMachine | None = None,
    ) -> None:
        self._s3 = s3
        self._service = service
        self.settings = settings or BatchSettings()
        self._audit = audit
        self._audit_once = audit_once
        self._clock = clock
        self._fanout = fanout
        self._outputs = Outputs(s3, clock)

    @classmethod
    def from_settings(
        cls,
        settings: BatchEnvironment,
        *,
        s3: Any,
        dynamodb: Any,
        sfn: Any = None,
        events: Any = None,
    ) -> BatchRunner:
        """The runner a batch function builds once per container (AWS clients passed in).

        Batch runs are audited like governance events, so their chain head is anchored too,
        and with `events` each audited run is published (`Batch Run Recorded`); without a
        state machine (`sfn` or its ARN missing) every file runs in one invocation.
        """
        bucket = settings.audit_anchor_bucket
        audit = AuditLog(
            dynamodb, settings.audit_table, AnchorStore(s3, bucket) if bucket else None
        )
        append: AuditAppend = audit.append
        if events is not None:
            publisher = EventPublisher(events, settings.event_bus, settings.env)
            append = publishing(audit.append, publisher, _log.warning)
        fanout = None
        if sfn is not None and settings.state_machine_arn:
            fanout = StateMachine(sfn, settings.state_machine_arn)
        return cls(
            s3,
            ScoringService.from_settings(settings, dynamodb, s3),
            settings.batch_settings(),
            audit=append,
            audit_once=once_per_run(
                settings.idempotency_table, now_iso, keep_seconds=settings.idempotency_seconds
            ),
            fanout=fanout,
        )

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
            return self._outputs.unroutable(obj, exc.message, started)
        previous = self._outputs.manifest(obj.bucket, bk.manifest)
        pinned = self._pin(obj)
        if pinned is None:
            return {"status": "superseded", "input": obj.as_dict()}
        if same_run(previous, pinned):
            return {**previous, "duplicate": True}
        manifest = self._outputs.begin(pinned, bk, started)
        scored, rejected = self._outputs.writers(obj.bucket, bk.scored, bk.rejected, bk.format)
        try:
            with all_or_nothing(scored, rejected):
                scorer = self._scorer(self._resolve(pinned, bk, manifest), pinned)
                counts, sha256 = score_file(self._s3, pinned, bk, scorer, scored, rejected)
                if counts.rows_in == 0:
                    raise BatchFileError("the file has no data rows")
        except FerryError as exc:
            if _outage(exc):
                raise
            return self._outputs.fail(manifest, bk, exc.message, t0)
        manifest["input"]["sha256"] = sha256
        if scorer.sample is not None:  # only a committed run's rows reach the capture
            scorer.sample.commit(scorer.card, run_id(pinned))
        return self._outputs.succeed(manifest, counts, t0, self._record)

    def _scorer(self, card: Card, obj: ObjectRef) -> Scorer:
        model = self._service.model(card)  # an artifact that fails its check fails here
        cols = ColumnarValidator(card.input_schema, self._service.validator(card))
        return Scorer(card, model, cols, self.settings, self._sampler(obj))

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

    def _record(self, manifest: dict[str, Any]) -> None:
        """Audit a succeeded run, once (`audit_recorded` says whether this call wrote it)."""
        if self._audit is not None:
            once = self._audit_once(manifest["run_id"]) if self._audit_once else None
            manifest["audit_recorded"] = record_batch_run(self._audit, manifest, once)

    # ---- fan-out: split, parts, merge (the Step Functions Distributed Map path) -----------
    def needs_fanout(self, obj: ObjectRef) -> bool:
        """Too large for one invocation, and a state machine to fan out to."""
        size = obj.size or 0
        return self._fanout is not None and size > self.settings.fanout_threshold_bytes

    def fan_out(self, obj: ObjectRef) -> dict[str, Any]:
        """Start the fan-out state machine on `obj` (see `needs_fanout`)."""
        if self._fanout is None:
            raise RuntimeError("no fan-out state machine configured")
        return self._fanout.start(obj)

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
                "manifest": self._outputs.unroutable(obj, exc.message, started),
            }
        pinned = self._pin(obj)
        if pinned is None:
            return {"status": "superseded"}
        previous = self._outputs.manifest(obj.bucket, bk.manifest)
        if same_run(previous, pinned):
            return {"status": "duplicate", "manifest": previous}
        manifest = self._outputs.begin(pinned, bk, started)
        try:
            card = self._resolve(pinned, bk, manifest)
            parts = plan_parts(self._s3, pinned, bk, card, self.settings.part_bytes)
        except FerryError as exc:
            failed = self._outputs.fail(manifest, bk, exc.message, t0)
            return {"status": "failed", "manifest": failed}
        rid = manifest["run_id"]
        stage = staging_prefix(rid)
        items = [{**p, "index": i} for i, p in enumerate(parts)]
        plan = {"manifest": manifest, "object": pinned.as_dict(), "parts": len(items)}
        self._outputs.put_json(obj.bucket, f"{stage}plan.json", plan)
        self._outputs.put_json(obj.bucket, f"{stage}parts.json", items)
        self._outputs.put_manifest(obj.bucket, bk.manifest, manifest)
        return {
            "status": "ready",
            "run_id": rid,
            "bucket": obj.bucket,
            "parts_key": f"{stage}parts.json",
            "parts": len(items),
            "object": pinned.as_dict(),
            "model_version": card.version,
        }

    def run_part(self, obj: ObjectRef, part: dict[str, Any], version: int) -> dict[str, Any]:
        """Score one part into staging; returns its row accounting (small: the Map's result)."""
        bk = parse_key(obj.key)
        scorer = self._scorer(self._service.registry.card(bk.model, version), obj)
        names = part_keys(run_id(obj), part["index"], bk)
        scored, rejected = self._outputs.writers(
            obj.bucket, names["scored"], names["rejected"], bk.format
        )
        with all_or_nothing(scored, rejected):
            counts, _ = score_file(self._s3, obj, bk, scorer, scored, rejected, part)
        if scorer.sample is not None:
            scorer.sample.commit(scorer.card, f"{run_id(obj)}#part{part['index']}")
        summary = {"index": part["index"], **counts.as_dict()}
        self._outputs.put_json(obj.bucket, names["summary"], summary)
        return summary

    def merge(self, obj: ObjectRef) -> dict[str, Any]:
        """Concatenate the parts, renumbering rows, into the three outputs; manifest last."""
        t0 = time.perf_counter()
        bk = parse_key(obj.key)
        rid = run_id(obj)
        stage = staging_prefix(rid)
        plan = self._outputs.get_json(obj.bucket, f"{stage}plan.json")
        manifest = plan["manifest"]
        counts = Counts()
        scored, rejected = self._outputs.writers(obj.bucket, bk.scored, bk.rejected, bk.format)
        out = formats.ScoredWriter(bk.format, scored)
        try:
            with all_or_nothing(scored, rejected):
                for i in range(plan["parts"]):
                    names = part_keys(rid, i, bk)
                    summary = Counts.from_dict(self._outputs.get_json(obj.bucket, names["summary"]))
                    copy_renumbered(
                        self._s3, obj.bucket, names, bk, out, rejected, counts.rows_in,
                        self.settings.chunk_rows,
                    )  # fmt: skip
                    counts.add(summary)
                if counts.rows_in == 0:
                    raise BatchFileError("the file has no data rows")
                out.close()
                if bk.format == "csv" and counts.rows_scored == 0:
                    scored.write(b"")
        except FerryError as exc:
            return self._outputs.fail(manifest, bk, exc.message, t0)
        sha = open_stream(self._s3, obj)
        sha.raw.drain()
        manifest["input"]["sha256"] = sha.raw.sha256.hexdigest()
        manifest["parts"] = plan["parts"]
        done = self._outputs.succeed(manifest, counts, t0, self._record)
        self._outputs.clear_staging(obj.bucket, stage)
        return done

    def fail(self, obj: ObjectRef, reason: str) -> dict[str, Any]:
        """The fan-out's failure path: a failed manifest (with reason) and no staging left."""
        bk = parse_key(obj.key)
        stage = staging_prefix(run_id(obj))
        try:
            manifest = self._outputs.get_json(obj.bucket, f"{stage}plan.json")["manifest"]
        except Exception:
            manifest = self._outputs.begin(obj, bk, self._clock())
        done = self._outputs.fail(manifest, bk, reason, time.perf_counter())
        self._outputs.clear_staging(obj.bucket, stage)
        return done

    # ---- the input: which version of the object, which version of the model -----------------
    def _pin(self, obj: ObjectRef) -> ObjectRef | None:
        """The exact version to read (HeadObject fills in the version id moto's events lack)."""
        try:
            head = self._s3.head_object(**obj.get_kwargs())
        except Exception as exc:
            if client_code(exc) in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                return None  # deleted or overwritten since: that newer upload has its own event
            raise
        return ObjectRef(
            bucket=obj.bucket,
            key=obj.key,
            version_id=obj.version_id or head.get("VersionId"),
            etag=head["ETag"].strip('"'),
            size=int(head["ContentLength"]),
        )

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
