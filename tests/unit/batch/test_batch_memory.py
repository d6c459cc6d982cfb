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
        self.held: list[int] = []  # traced memory each time the run writes output

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        self.bytes += n
        if tracemalloc.is_tracing():
            self.held.append(tracemalloc.get_traced_memory()[0])
        return n


def test_memory_does_not_grow_with_the_rows(
    registered: Any, aws: Any, boto: dict[str, Any], tmp_path: Path
) -> None:
    """
    Given CSV files of 150,000 and 450,000 rows (with malformed rows), in chunks of 2,048 rows
    When each streams through the run's pipeline with Python allocations traced
    Then every row is accounted for; the peak stays a few megabytes for both (a list of row
        dicts for 450,000 rows alone would take about 450 MB); and the memory the run holds
        while it writes its output is the same for three times the rows

    The reader, scorer and writer are three threads with a few chunks in flight, so the peak is
    a maximum over how they happened to interleave, which creeps up with the number of chunks
    (and with the machine's load) although nothing is kept per row. What the run holds at each
    write (the median over the run) grows only when something is kept per row or per chunk. It
    rises with the file up to ~150,000 rows (the CSV reader's read-ahead fills up), then stays.
    """
    service = ScoringService(
        RegistryReader(boto["dynamodb"], aws.registry_table), ModelStore(boto["s3"], tmp_path)
    )
    card = service.registry.resolve("credit-risk")
    model, cols = service.model(card), ColumnarValidator(card.input_schema)
    peaks, held = [], []
    for n in (150_000, 450_000):
        body = csv_bytes(n, seed=n) + b"\n42,short\n"
        stream = io.BufferedReader(io.BytesIO(body))
        scored, rejected, counts = Discard(), Discard(), Counts()
        tracemalloc.start()
        chunks = formats.read_csv(stream, card.input_schema, 2048, block_bytes=1 << 16)
        out = formats.ScoredWriter("csv", scored)
        consume(chunks, card, model, cols, out, formats.RejectWriter(rejected), counts)
        out.close()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        held.append(statistics.median(scored.held))
        assert (counts.rows_in, counts.rows_rejected) == (n + 2, 2)
        assert scored.bytes > len(body)
        assert len(scored.held) > 10, "the output was written as the run went, not at the end"
    assert max(peaks) < 8 * 1024 * 1024, peaks
    assert held[1] < 1.2 * held[0], (held, peaks)  # three times the rows, the same memory
