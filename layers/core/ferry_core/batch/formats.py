"""Streaming readers and writers for the three batch formats: CSV, JSON Lines and Parquet.

Readers yield `Chunk`s of at most about `chunk_rows` rows, each row carrying its 1-based
number among the file's data rows (the header is not a row; every other line is, blank or
not). Rows a reader cannot even split into fields (a CSV line with too few or too many
values, a line that is not JSON) come out as `ShapeReject`s with the same problem codes the
API uses. Writers take the accepted rows of a chunk with their scores and append them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ferry_core.batch.keys import BatchFileError, Format
from ferry_core.card import InputSchema

OUTPUT_COLUMNS = ("score", "label", "model_version", "row")
CSV_BLOCK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ShapeReject:
    """A row that never became a record: the problem is the row's shape, not a field value."""

    row: int
    raw: Any
    problem: str
    message: str


@dataclass
class Chunk:
    """Rows of one file, in order: a table (CSV as text, Parquet typed) or JSON records."""

    rows: np.ndarray  # 1-based data-row numbers of the table rows / records
    table: pa.Table | None = None
    records: list[Any] | None = None
    text: bool = False
    rejects: list[ShapeReject] = field(default_factory=list)

    @property
    def size(self) -> int:
        n = self.table.num_rows if self.table is not None else len(self.records or [])
        return n + len(self.rejects)


def check_header(names: list[str], schema: InputSchema) -> None:
    """The columns must be features, each once, and include every non-nullable feature."""
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    features = {f.name for f in schema.features}
    unknown = [n for n in names if n not in features]
    missing = [f.name for f in schema.features if not f.nullable and f.name not in seen]
    problems = []
    if dupes:
        problems.append(f"duplicate column(s) {', '.join(dupes)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown[:10])}")
    if missing:
        problems.append(f"missing required column(s) {', '.join(missing)}")
    if problems:
        raise BatchFileError(
            "the header does not match the model's input schema: " + "; ".join(problems)
        )
    clash = sorted(set(names) & set(OUTPUT_COLUMNS))
    if clash:
        raise BatchFileError(f"column(s) {', '.join(clash)} would clash with the output columns")


def _rebatch(tables: Iterator[pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    count = 0
    for t in tables:
        pending.append(t)
        count += t.num_rows
        if count >= chunk_rows:
            yield pa.concat_tables(pending)
            pending, count = [], 0
    if pending:
        yield pa.concat_tables(pending)


def read_header(stream: BinaryIO) -> list[str]:
    """The column names on the first line of a CSV stream (which it consumes)."""
    line = stream.readline()
    if not line.strip():
        raise BatchFileError("the file is empty" if not line else "the header line is blank")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchFileError("the header line is not UTF-8") from exc
    (names,) = list(csv.reader([text.rstrip("\r\n")])) or [[]]
    return [n.strip() for n in names]


def read_csv(
    stream: BinaryIO,
    schema: InputSchema,
    chunk_rows: int,
    header: list[str] | None = None,
    block_bytes: int = CSV_BLOCK_BYTES,
) -> Iterator[Chunk]:
    """CSV with a header line, every cell read as text; quoted newlines are not supported.

    `header` is given for a byte range of a fanned-out file (the range has no header line).
    """
    if header is None:
        header = read_header(stream)
        check_header(header, schema)
    width = len(header)
    bad: dict[int, tuple[str, int]] = {}

    def invalid(row: Any) -> str:
        bad[row.number] = (row.text, row.actual_columns)
        return "skip"

    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=block_bytes, column_names=header
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return
        raise BatchFileError(f"not a readable CSV file: {_short(exc)}") from exc

    def tables() -> Iterator[pa.Table]:
        try:
            for batch in reader:
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            raise BatchFileError(f"the file is not valid UTF-8 CSV: {_short(exc)}") from exc

    cursor = 1  # line numbers count from the first data line: they are the row numbers
    for table in _rebatch(tables(), chunk_rows):
        # The reader reports a skipped line before it yields the rows after it, and may report
        # lines further ahead: rows take the next numbers that are not skipped lines.
        n = table.num_rows
        pending = np.array(sorted(k for k in bad if k >= cursor), dtype=np.int64)
        candidates = np.arange(cursor, cursor + n + len(pending), dtype=np.int64)
        numbers = candidates[~np.isin(candidates, pending)][:n]
        last = int(numbers[-1]) if n else cursor - 1
        rejects = [_shape_reject(k, *bad.pop(k), width) for k in pending.tolist() if k <= last]
        cursor = last + 1
        yield Chunk(rows=numbers, table=table, text=True, rejects=rejects)
    if bad:
        rejects = [_shape_reject(k, *bad.pop(k), width) for k in sorted(bad)]
        yield Chunk(rows=np.zeros(0, dtype=np.int64), records=[], rejects=rejects)


def _shape_reject(row: int, text: str, got: int, width: int) -> ShapeReject:
    if got < width:
        what = "a blank line" if text.strip() == "" else f"{got} of the header's {width} values"
        return ShapeReject(row, text, "missing", f"the row has {what}")
    return ShapeReject(
        row, text, "unknown_field", f"the row has {got} values but the header has {width}"
    )


def read_jsonl(stream: BinaryIO, chunk_rows: int, first_row: int = 1) -> Iterator[Chunk]:
    """One JSON object per line; a line that is not JSON is rejected, never fatal."""
    records: list[Any] = []
    numbers: list[int] = []
    rejects: list[ShapeReject] = []
    row = first_row - 1
    for raw in stream:
        row += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            rejects.append(ShapeReject(row, repr(raw[:200]), "wrong_type", "the line is not UTF-8"))
            continue
        try:
            records.append(json.loads(line))
            numbers.append(row)
        except (ValueError, RecursionError) as exc:
            text = line.rstrip("\r\n")
            msg = "a blank line" if not text.strip() else f"not valid JSON: {_short(exc)}"
            rejects.append(ShapeReject(row, text, "wrong_type", f"the line is {msg}"))
        if len(records) + len(rejects) >= chunk_rows:
            yield Chunk(rows=np.array(numbers, dtype=np.int64), records=records, rejects=rejects)
            records, numbers, rejects = [], [], []
    if records or rejects:
        yield Chunk(rows=np.array(numbers, dtype=np.int64), records=records, rejects=rejects)


def open_parquet(source: Any) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchFileError(f"not a readable Parquet file: {_short(exc)}") from exc


def read_parquet(
    pf: pq.ParquetFile,
    schema: InputSchema,
    chunk_rows: int,
    row_groups: list[int] | None = None,
    first_row: int = 1,
) -> Iterator[Chunk]:
    """Parquet, a batch at a time (one row group's columns in memory at most)."""
    check_header(pf.schema_arrow.names, schema)
    row = first_row
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=row_groups):
            n = batch.num_rows
            yield Chunk(
                rows=np.arange(row, row + n), table=pa.Table.from_batches([batch]), text=False
            )
            row += n
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchFileError(f"the Parquet file is corrupt: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# ---- writers -------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A value that `json.dumps(allow_nan=False)` accepts: non-finite floats become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class ScoredWriter:
    """Appends scored rows (input columns + score, label, model_version, row) to a sink."""

    def __init__(self, fmt: Format, sink: Any) -> None:
        self.format = fmt
        self._sink = sink
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def write(
        self,
        chunk: Chunk,
        accepted: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        version: int,
    ) -> None:
        rows = chunk.rows[accepted]
        if self.format == "jsonl":
            lines = []
            records = chunk.records or []
            for k, i in enumerate(np.flatnonzero(accepted)):
                rec = dict(records[i])
                rec.update(
                    score=float(scores[k]), label=int(labels[k]), model_version=version,
                    row=int(rows[k]),
                )  # fmt: skip
                lines.append(json.dumps(rec, allow_nan=False))
            if lines:
                self._sink.write(("\n".join(lines) + "\n").encode())
            return
        assert chunk.table is not None
        table = chunk.table.filter(pa.array(accepted))
        n = table.num_rows
        table = (
            table.append_column("score", pa.array(scores, pa.float64()))
            .append_column("label", pa.array(labels, pa.int64()))
            .append_column("model_version", pa.array(np.full(n, version), pa.int64()))
            .append_column("row", pa.array(rows, pa.int64()))
        )
        self.write_table(table)

    @property
    def started(self) -> bool:
        """True once a table was written (a CSV then has its header)."""
        return self._writer is not None

    def write_table(self, table: pa.Table) -> None:
        """Append a table that already has the output columns (the merge uses this)."""
        if self._writer is None:
            self._schema = table.schema
            if self.format == "csv":
                self._writer = pacsv.CSVWriter(
                    self._sink,
                    table.schema,
                    write_options=pacsv.WriteOptions(quoting_style="needed"),
                )
            else:
                self._writer = pq.ParquetWriter(self._sink, table.schema, compression="zstd")
        else:
            table = table.cast(self._schema)
        self._writer.write_table(table)

    def write_lines(self, data: bytes) -> None:
        self._sink.write(data)

    def close(self, empty_schema: pa.Schema | None = None) -> None:
        if self._writer is None and empty_schema is not None and self.format != "jsonl":
            self.write_table(empty_schema.empty_table())
        if self._writer is not None:
            self._writer.close()


class RejectWriter:
    """Appends rejected rows as JSON Lines: row number, raw row, problems (API codes)."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def write(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            text = "\n".join(json.dumps(json_safe(e), allow_nan=False) for e in entries)
            self._sink.write((text + "\n").encode())


def reject_entry(row: int, raw: Any, problems: list[dict[str, Any]]) -> dict[str, Any]:
    return {"row": int(row), "raw": raw, "problems": problems}


def output_schema(input_schema: pa.Schema) -> pa.Schema:
    """The scored file's schema: the input columns, then the four output columns."""
    return (
        input_schema.append(pa.field("score", pa.float64()))
        .append(pa.field("label", pa.int64()))
        .append(pa.field("model_version", pa.int64()))
        .append(pa.field("row", pa.int64()))
    )
