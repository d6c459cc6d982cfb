"""Data capture: a sample of scored rows (inputs, score, label, model version, request id) into
the data bucket, where the drift function reads them.

Layout (JSON Lines, one row a line, partitioned by model and UTC hour so a window is a few
prefix listings): `capture/rows/{model}/{YYYY-MM-DD}/{HH}/{epoch_ms}-{source}-{id}.jsonl`.
Drift reports go beside them, under a prefix the scoring role cannot write:
`capture/reports/{model}/{YYYY-MM-DD}/{HHMMSS}-v{n}.json` and `capture/reports/{model}/latest.json`.

Why an in-memory buffer rather than Kinesis Data Firehose: a Firehose `PutRecord` is a network
call (milliseconds) on every sampled request, or a client-side batcher anyway; Firehose adds a
stream, a role and a per-GB price to the stack, and the local platform would need to emulate it.
The buffer costs a random draw per request and a list append per sampled one (~0.3 µs a
request at 10 %; tests/unit/monitoring/test_capture.py prints it); it writes one S3 object per
`max_records` rows or `max_age_seconds`, from a background thread, so no request waits for S3.

What can be lost, and why it is acceptable: Lambda has no shutdown hook without an extension,
so rows still in the buffer when a container is reclaimed are lost — at most `max_records`
rows or `max_age_seconds` of sampled traffic per container. The age is checked on every
request, so a frozen container flushes on its first request after thawing. Capture is a
sample for drift statistics; a lost slice changes a window's size, not its verdict. A failed
upload is logged and counted (`dropped_rows`), never raised into a request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from ferry_core.errors import DriftReportNotFound
from ferry_core.settings import ScoringSettings

ROWS_PREFIX = "capture/rows/"
REPORTS_PREFIX = "capture/reports/"
LATEST = "latest.json"

log = logging.getLogger("ferry.capture")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def hour_prefix(model: str, ts: float) -> str:
    d = _utc(ts)
    return f"{ROWS_PREFIX}{model}/{d:%Y-%m-%d}/{d:%H}/"


def rows_key(model: str, ts: float, source: str) -> str:
    return f"{hour_prefix(model, ts)}{int(ts * 1000)}-{source}-{uuid.uuid4().hex[:12]}.jsonl"


def report_key(model: str, version: int, ts: float) -> str:
    d = _utc(ts)
    return f"{REPORTS_PREFIX}{model}/{d:%Y-%m-%d}/{d:%H%M%S}-v{version}.json"


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows)


class CaptureBuffer:
    """Samples scored requests into memory and writes them to S3 in batches.

    `offer` is the hot path (real-time: a request is sampled whole, at `sample_rate`);
    `add_rows` takes rows the caller already sampled (batch, with `sample_positions`). Flushes
    run on one background thread (`background=True`) or inline; `flush(wait=True)` drains.
    Thread-safe: the local platform serves requests from several threads.
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        sample_rate: float,
        source: str = "realtime",
        max_records: int = 500,
        max_age_seconds: float = 60.0,
        background: bool = True,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        if max_records < 1 or max_age_seconds <= 0:
            raise ValueError("max_records must be >= 1 and max_age_seconds > 0")
        self._s3, self._bucket, self.source = s3, bucket, source
        self.sample_rate = sample_rate
        self._max_records, self._max_age = max_records, max_age_seconds
        self._random = random.Random(seed).random
        self._rng = np.random.default_rng(seed)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[tuple[float, str, int, str, Sequence[Any], Sequence[Any]]] = []
        self._count = 0
        self._first = 0.0
        self._executor = ThreadPoolExecutor(1, "ferry-capture") if background else None
        self._inflight: list[Future[Any]] = []
        self.written_rows = 0
        self.dropped_rows = 0
        self.keys: list[str] = []

    @classmethod
    def from_settings(cls, settings: ScoringSettings, s3: Callable[[], Any]) -> CaptureBuffer:
        """The scoring function's sample; `s3` makes the client, only when capture is on.

        Rate 0 (the default, or no data bucket) leaves `offer` one comparison on the hot path.
        """
        rate = settings.capture_sample_rate if settings.data_bucket else 0.0
        return cls(
            s3() if rate else None,
            settings.data_bucket or "",
            sample_rate=rate,
            max_records=settings.capture_max_records,
            max_age_seconds=settings.capture_max_age_seconds,
        )

    # -- the hot path

    def offer(
        self,
        model: str,
        version: int,
        request_id: str,
        instances: Sequence[Mapping[str, Any]],
        predictions: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Keep this request (whole) with probability `sample_rate`; True when kept.

        Keeps references only: the encoding happens at flush, off the request's path.
        """
        rate = self.sample_rate
        if rate <= 0.0 or (rate < 1.0 and self._random() >= rate):
            if self._count:
                self._maybe_flush(self._clock())
            return False
        now = self._clock()
        with self._lock:
            if not self._pending:
                self._first = now
            self._pending.append((now, model, version, request_id, instances, predictions))
            self._count += len(instances)
        self._maybe_flush(now)
        return True

    def _maybe_flush(self, now: float) -> None:
        if self._count >= self._max_records or now - self._first >= self._max_age:
            self.flush(wait=False)

    # -- batch rows (already sampled by the caller)

    def sample_positions(self, n: int) -> np.ndarray:
        """Positions of the rows of an n-row chunk to keep, each with probability sample_rate."""
        if n <= 0 or self.sample_rate <= 0.0:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self._rng.random(n) < self.sample_rate)

    def add_rows(
        self,
        model: str,
        version: int,
        ref: str,
        rows: Sequence[Mapping[str, Any]],
        scores: Sequence[float] | np.ndarray,
        labels: Sequence[Any] | np.ndarray,
    ) -> None:
        """Buffer rows that were sampled already (batch: `ref` is the run id)."""
        if not len(rows):
            return
        preds = [
            {"score": s, "label": lab}
            for s, lab in zip(np.asarray(scores).tolist(), np.asarray(labels).tolist(), strict=True)
        ]
        now = self._clock()
        with self._lock:
            if not self._pending:
                self._first = now
            self._pending.append((now, model, version, ref, rows, preds))
            self._count += len(rows)
        self._maybe_flush(now)

    # -- flushing

    def flush(self, wait: bool = True) -> list[str]:
        """Write what is buffered; with `wait`, also wait for background writes. Returns keys."""
        with self._lock:
            pending, self._pending, self._count = self._pending, [], 0
        if pending:
            if self._executor is None:
                self._write(pending)
            else:
                self._inflight = [f for f in self._inflight if not f.done()]
                self._inflight.append(self._executor.submit(self._write, pending))
        if wait:
            for f in self._inflight:
                f.result()
            self._inflight = []
        return list(self.keys)

    def close(self) -> None:
        self.flush(wait=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _write(
        self, pending: list[tuple[float, str, int, str, Sequence[Any], Sequence[Any]]]
    ) -> None:
        by_model: dict[str, list[dict[str, Any]]] = {}
        for ts, model, version, ref, instances, predictions in pending:
            out = by_model.setdefault(model, [])
            for features, pred in zip(instances, predictions, strict=True):
                out.append(
                    {
                        "ts": ts,
                        "model": model,
                        "version": version,
                        "source": self.source,
                        "request_id": ref,
                        "features": features,
                        "score": pred.get("score"),
                        "label": pred.get("label"),
                    }
                )
        for model, rows in by_model.items():
            key = rows_key(model, rows[0]["ts"], self.source)
            try:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=encode_rows(rows),
                    ContentType="application/x-ndjson",
                )
            except Exception as exc:  # never into a request: a lost slice of a sample
                self.dropped_rows += len(rows)
                log.warning("capture upload failed: %s (%d rows dropped)", exc, len(rows))
                continue
            self.written_rows += len(rows)
            self.keys.append(key)


# ---------------------------------------------------------------- reading (the drift function)


def read_capture(
    s3: Any, bucket: str, model: str, start: float, end: float, max_rows: int = 500_000
) -> list[dict[str, Any]]:
    """Captured rows of `model` with start <= ts < end, newest hours first, at most max_rows."""
    rows: list[dict[str, Any]] = []
    hour = _utc(end).replace(minute=0, second=0, microsecond=0)
    first = _utc(start).replace(minute=0, second=0, microsecond=0)
    paginator = s3.get_paginator("list_objects_v2")
    while hour >= first and len(rows) < max_rows:
        prefix = hour_prefix(model, hour.timestamp())
        keys = [
            o["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]
        for key in sorted(keys, reverse=True):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            for line in body.splitlines():
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.warning("skipping an unreadable capture line in %s", key)
                    continue
                if isinstance(row, dict) and start <= float(row.get("ts", -1)) < end:
                    rows.append(row)
            if len(rows) >= max_rows:
                break
        hour -= timedelta(hours=1)
    return rows[:max_rows]


def write_report(s3: Any, bucket: str, report: Mapping[str, Any]) -> str:
    """The report at its own key (history) and as the model's `latest.json`."""
    body = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    key = report["key"]
    for k in (key, f"{REPORTS_PREFIX}{report['model']}/{LATEST}"):
        s3.put_object(Bucket=bucket, Key=k, Body=body, ContentType="application/json")
    return key


def read_report(s3: Any, bucket: str, model: str, key: str | None = None) -> dict[str, Any]:
    """The latest drift report of `model` (or the one at `key`)."""
    key = key or f"{REPORTS_PREFIX}{model}/{LATEST}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise DriftReportNotFound(f"no drift report for {model!r} yet ({key})") from exc
    return orjson.loads(body)
