"""Fan-out of a file too large for one invocation: plan its parts, merge what they scored.

The Step Functions Distributed Map runs `split` → `run_part` per part → `merge` (see
`BatchRunner`): parts are byte ranges of CSV / JSON Lines files or row groups of Parquet
files, each scored into `batch/staging/{run_id}/`, then merged into the same three outputs
as a single run, with rows renumbered.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ferry_core.batch import formats
from ferry_core.batch.keys import BatchKey, ObjectRef, run_id
from ferry_core.batch.s3io import MultipartWriter, RangeFile, open_stream
from ferry_core.card import Card

_OUTPUT_TYPES = {
    "score": pa.float64(),
    "label": pa.int64(),
    "model_version": pa.int64(),
    "row": pa.int64(),
}


@dataclass(frozen=True)
class StateMachine:
    """The fan-out state machine (a Step Functions client passed in, and its ARN)."""

    sfn: Any
    arn: str

    def start(self, obj: ObjectRef) -> dict[str, Any]:
        """Start the run of `obj`; its name is the run id, so a duplicate start is refused."""
        try:
            resp = self.sfn.start_execution(
                stateMachineArn=self.arn,
                name=run_id(obj),
                input=json.dumps({"object": obj.as_dict()}),
            )
        except self.sfn.exceptions.ExecutionAlreadyExists:
            return {"status": "fanned_out", "key": obj.key, "duplicate": True}
        return {"status": "fanned_out", "key": obj.key, "execution": resp["executionArn"]}


def plan_parts(
    s3: Any, obj: ObjectRef, bk: BatchKey, card: Card, part_bytes: int
) -> list[dict[str, Any]]:
    """The parts of a file: runs of Parquet row groups, or byte ranges of about `part_bytes`."""
    size = obj.size or 0
    step = max(1, part_bytes)
    if bk.format == "parquet":
        meta = formats.open_parquet(RangeFile(s3, obj, size)).metadata
        parts, first, acc = [], 0, 0
        for g in range(meta.num_row_groups):
            acc += meta.row_group(g).total_byte_size
            if acc >= step or g == meta.num_row_groups - 1:
                parts.append({"row_groups": [first, g + 1]})
                first, acc = g + 1, 0
        return parts or [{"row_groups": [0, 0]}]
    start, header = 0, None
    if bk.format == "csv":
        line = open_stream(s3, obj, (0, min(size, 1 << 20))).readline()
        header = formats.read_header(io.BytesIO(line))
        formats.check_header(header, card.input_schema)
        start = len(line)
    bounds = list(range(start, size, step)) or [start]
    return [
        {"start": b, "end": min(size, b + step), "size": size, "header": header} for b in bounds
    ]


def copy_renumbered(
    s3: Any,
    bucket: str,
    names: dict[str, str],
    bk: BatchKey,
    out: formats.ScoredWriter,
    rejected: MultipartWriter,
    offset: int,
    chunk_rows: int,
) -> None:
    """Append one part's scored and rejected rows to the outputs, rows shifted by `offset`."""
    part_obj = ObjectRef(bucket, names["scored"])
    if bk.format == "jsonl":
        for line in open_stream(s3, part_obj):
            rec = json.loads(line)
            rec["row"] += offset
            out.write_lines((json.dumps(rec, allow_nan=False) + "\n").encode())
    elif bk.format == "csv":
        stream = open_stream(s3, part_obj)
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
        size = s3.head_object(Bucket=bucket, Key=names["scored"])["ContentLength"]
        pf = formats.open_parquet(RangeFile(s3, part_obj, size))
        for batch in pf.iter_batches(batch_size=chunk_rows):
            out.write_table(_offset_rows(pa.Table.from_batches([batch]), offset))
    for line in open_stream(s3, ObjectRef(bucket, names["rejected"])):
        entry = json.loads(line)
        entry["row"] += offset
        rejected.write((json.dumps(entry, allow_nan=False) + "\n").encode())


def _offset_rows(table: pa.Table, offset: int) -> pa.Table:
    import pyarrow.compute as pc  # only the merge needs it: not on every cold start

    i = table.schema.get_field_index("row")
    return table.set_column(i, "row", pc.add(table.column(i).cast(pa.int64()), offset))
