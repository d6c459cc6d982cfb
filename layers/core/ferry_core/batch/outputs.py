"""What a batch run publishes, and in which order: scored rows, rejected rows, then the manifest.

Publication order is the exactly-once argument. On entry the manifest says `in_progress`
(overwriting any older one for this path); scored and rejected files are multipart uploads
that appear only when complete (`all_or_nothing`); the manifest is written `succeeded` last.
A crash anywhere leaves an `in_progress` manifest and at worst complete files from the same
deterministic run, which the retry overwrites; never a success manifest beside half a result.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from ferry_core.batch.accounting import Counts
from ferry_core.batch.keys import STAGING, BatchKey, ObjectRef, failure_manifest_key, run_id
from ferry_core.batch.s3io import MultipartWriter, client_code

CONTENT_TYPE = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


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


def staging_prefix(rid: str) -> str:
    return f"{STAGING}{rid}/"


def part_keys(rid: str, index: int, bk: BatchKey) -> dict[str, str]:
    """Where one part of a fanned-out run stages its scored rows, rejects and row accounting."""
    stage = staging_prefix(rid)
    ext = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[bk.format]
    return {
        "scored": f"{stage}scored-{index:05d}{ext}",
        "rejected": f"{stage}rejected-{index:05d}.jsonl",
        "summary": f"{stage}summary-{index:05d}.json",
    }


def same_run(previous: dict[str, Any] | None, obj: ObjectRef) -> bool:
    """A succeeded manifest of this very object version: the work is done."""
    if not previous or previous.get("status") != "succeeded":
        return False
    done = previous.get("input", {})
    if obj.version_id and done.get("version_id"):
        return done["version_id"] == obj.version_id
    return bool(obj.etag) and done.get("etag") == obj.etag


class Outputs:
    """The objects a run writes beside its input: results, manifests and staging."""

    def __init__(self, s3: Any, clock: Callable[[], str]) -> None:
        self._s3 = s3
        self._clock = clock

    def writers(
        self, bucket: str, scored_key: str, rejected_key: str, fmt: str
    ) -> tuple[MultipartWriter, MultipartWriter]:
        """The scored (in the input's format) and rejected (JSON Lines) multipart uploads."""
        return (
            MultipartWriter(self._s3, bucket, scored_key, CONTENT_TYPE[fmt]),
            MultipartWriter(self._s3, bucket, rejected_key, CONTENT_TYPE["jsonl"]),
        )

    def manifest(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if client_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def begin(self, obj: ObjectRef, bk: BatchKey, started: str) -> dict[str, Any]:
        """The `in_progress` manifest, written before anything else of the run."""
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
        self.put_manifest(obj.bucket, bk.manifest, manifest)
        return manifest

    def succeed(
        self,
        manifest: dict[str, Any],
        counts: Counts,
        t0: float,
        record: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """The `succeeded` manifest, written last; `record` audits the run before it."""
        seconds = time.perf_counter() - t0
        manifest.update(counts.as_dict())
        manifest.update(
            status="succeeded",
            finished_at=self._clock(),
            seconds=round(seconds, 3),
            rows_per_second=round(counts.rows_in / seconds, 1) if seconds > 0 else None,
        )
        record(manifest)
        self.put_manifest(manifest["input"]["bucket"], manifest["outputs"]["manifest"], manifest)
        return manifest

    def fail(
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
        self.put_manifest(bucket, bk.manifest, manifest)
        return manifest

    def unroutable(self, obj: ObjectRef, reason: str, started: str) -> dict[str, Any]:
        """The failed manifest of a key that names no model or format we can read."""
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
        self.put_manifest(obj.bucket, key, manifest)
        return manifest

    def put_manifest(self, bucket: str, key: str, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def put_json(self, bucket: str, key: str, data: Any) -> None:
        body = json.dumps(data, sort_keys=True).encode()
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def clear_staging(self, bucket: str, prefix: str) -> None:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self._s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
