"""Streaming: a batch run's Python memory is a few chunks, not the file.

moto keeps every object, and copies of it per request, in Python memory, so the run's own
memory is measured on the pipeline itself (reader → validator → scorer → writers) over an
in-memory file and a discarding sink. The 1,000,000-row figure with the bucket in another
process is `ferry bench batch`.
"""

from __future__ import annotations

import io
import statistics
import tracemalloc
from pathlib import Path
from typing import Any

from ferry_core.batch import formats
from ferry_core.batch.accounting import Counts
from ferry_core.batch.chunks import consume
from ferry_core.batch.columns import ColumnarValidator
from ferry_core.batch.sample_files import csv_bytes
from ferry_core.registry.reader import RegistryReader
from ferry_core.serving.scoring import ScoringService
from ferry_core.store import ModelStore


class Discard(io.RawIOBase):
    """A sink that counts bytes and keeps none (S3 keeps them in production)."""

    def __init__(self) -> None:
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        self.bytes += n
        return n


def test_memory_does_not_grow_with_the_rows(
    registered: Any, aws: Any, boto: dict[str, Any], tmp_path: Path
) -> None:
    """
    Given CSV files of 50,000 and 150,000 rows (with malformed rows), in chunks of 2,048 rows
    When each streams through the run's pipeline with Python allocations traced, three times
    Then every row is accounted for, and the peak is the same few megabytes for both: a list
        of row dicts for 150,000 rows alone would take about 150 MB

    The reader, scorer and writer are three threads with a few chunks in flight, so one run's
    peak depends on how they interleave (up to ~1.5 MB apart on a loaded machine); a leak
    raises every run's peak, so the medians of three runs per size are compared.
    """
    service = ScoringService(
        RegistryReader(boto["dynamodb"], aws.registry_table), ModelStore(boto["s3"], tmp_path)
    )
    card = service.registry.resolve("credit-risk")
    model, cols = service.model(card), ColumnarValidator(card.input_schema)
    peaks: dict[int, list[int]] = {50_000: [], 150_000: []}
    for _ in range(3):
        for n, runs in peaks.items():
            body = csv_bytes(n, seed=n) + b"\n42,short\n"
            stream = io.BufferedReader(io.BytesIO(body))
            scored, rejected, counts = Discard(), Discard(), Counts()
            tracemalloc.start()
            chunks = formats.read_csv(stream, card.input_schema, 2048, block_bytes=1 << 16)
            out = formats.ScoredWriter("csv", scored)
            consume(chunks, card, model, cols, out, formats.RejectWriter(rejected), counts)
            out.close()
            runs.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            assert (counts.rows_in, counts.rows_rejected) == (n + 2, 2)
            assert scored.bytes > len(body)
    assert max(peaks[150_000]) < 8 * 1024 * 1024, peaks
    small, large = (statistics.median(runs) for runs in peaks.values())
    assert large < 1.2 * small, peaks  # three times the rows, the same memory
