"""The chunk loop: stream a file (or one part of it) through validation and scoring.

A file is read in chunks of `chunk_rows`; each chunk is validated with the same verdict the
real-time API gives a row, its accepted rows are scored in one vectorised onnxruntime call,
and its scored and rejected rows are written out in file order. Memory is a few chunks,
whatever the file size.
"""

from __future__ import annotations

import io
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ferry_core.batch import formats
from ferry_core.batch.accounting import Counts
from ferry_core.batch.columns import ChunkVerdict, ColumnarValidator
from ferry_core.batch.keys import BatchKey, ObjectRef
from ferry_core.batch.s3io import MultipartWriter, RangeFile, open_stream
from ferry_core.batch.settings import BatchSettings
from ferry_core.card import Card
from ferry_core.monitoring.capture import CaptureBuffer
from ferry_core.serving.inference import OnnxModel
from ferry_core.serving.validator import Issue, Verdict


@dataclass(frozen=True)
class Scorer:
    """What scores a run's chunks: one model version, its validator, the sizes, the sample."""

    card: Card
    model: OnnxModel
    cols: ColumnarValidator
    settings: BatchSettings
    sample: BatchSample | None = None


def score_file(
    s3: Any,
    obj: ObjectRef,
    bk: BatchKey,
    scorer: Scorer,
    scored: MultipartWriter,
    rejected: MultipartWriter,
    part: dict[str, Any] | None = None,
) -> tuple[Counts, str | None]:
    """Score the file (or `part` of it) into the sinks; returns its accounting and, for a
    whole file, the sha256 of every byte read."""
    counts = Counts()
    out = formats.ScoredWriter(bk.format, scored)
    rejects = formats.RejectWriter(rejected)
    card, settings = scorer.card, scorer.settings
    sha256: str | None = None
    empty_schema: pa.Schema | None = None
    if bk.format == "parquet":
        pf = formats.open_parquet(RangeFile(s3, obj, obj.size or 0))
        empty_schema = formats.output_schema(pf.schema_arrow)
        groups = list(range(*part["row_groups"])) if part else None
        chunks = formats.read_parquet(pf, card.input_schema, settings.chunk_rows, groups)
        consume(chunks, card, scorer.model, scorer.cols, out, rejects, counts, scorer.sample)
        if part is None:
            hashing = open_stream(s3, obj)
            hashing.raw.drain()
            sha256 = hashing.raw.sha256.hexdigest()
    else:
        stream = open_stream(s3, obj, byte_range(part))
        lines = RangeLines(stream, part) if part else stream
        if bk.format == "csv":
            chunks = formats.read_csv(
                lines,
                card.input_schema,
                settings.chunk_rows,
                header=part.get("header") if part else None,
                block_bytes=settings.csv_block_bytes,
            )
        else:
            chunks = formats.read_jsonl(lines, settings.chunk_rows)
        consume(chunks, card, scorer.model, scorer.cols, out, rejects, counts, scorer.sample)
        if part is None:
            stream.raw.drain()
            sha256 = stream.raw.sha256.hexdigest()
    if bk.format == "csv" and not out.started:
        # No accepted rows: the scored file is still a valid CSV with the header.
        scored.write(b"")
    out.close(empty_schema)
    return counts, sha256


def consume(
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
    checked = _background(((c, _check(c, cols)) for c in chunks), depth=2)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-write") as pool:
        pending: list[Future[None]] = []
        for chunk, check in checked:
            scores, labels = check.score(model)
            if sample is not None:
                sample.take(chunk, check.accepted(), scores, labels)
            while len(pending) >= 2:
                pending.pop(0).result()
            pending.append(
                pool.submit(_write, chunk, check, scores, labels, card, out, rejects, counts)
            )
        for f in pending:
            f.result()
    if counts.rows_in != counts.rows_scored + counts.rows_rejected:  # pragma: no cover
        raise RuntimeError(f"row accounting broke: {counts.as_dict()}")


def _check(chunk: formats.Chunk, cols: ColumnarValidator) -> _Checked:
    if chunk.table is not None:
        return _Checked(table=cols.check(chunk.table, text=chunk.text))
    records = chunk.records or []
    return _Checked(records=cols.validator.check(records), n=len(records))


def _rows(chunk: formats.Chunk, index: Any) -> list[Any]:
    """The raw rows at `index` of a chunk, as dicts (columnar) or as read (JSON Lines)."""
    if chunk.table is not None:
        return chunk.table.take(pa.array(index, type=pa.int64())).to_pylist()
    return [(chunk.records or [])[i] for i in index]


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
        for i, raw in zip(index, _rows(chunk, index), strict=True):
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
        self._parts.append((_rows(chunk, rows[pos]), scores[pos], labels[pos]))
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


def byte_range(part: dict[str, Any] | None) -> tuple[int, int] | None:
    """Read a part from one byte before its start (to find where its first line begins)."""
    if part is None or "start" not in part:
        return None
    return max(0, part["start"] - 1), part["size"]


class RangeLines(io.RawIOBase):
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
