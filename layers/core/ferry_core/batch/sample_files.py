"""Sample batch files with known defects, for the tests, the benchmarks and the demo.

Never imported by a handler: it builds credit-risk rows with `ferry_core.onboarding.builder`
(the `train` extras).

`applications(n)` makes credit-risk rows with about `share` of them malformed, cycling through
every kind a batch run must reject; `encode(rows, fmt)` writes them as CSV, JSON Lines or
Parquet bytes. Each row says what the run should do with it (`expect`: None to score, else
the problem code its reject must carry).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

# kind → (formats it can be written in, expected problem code)
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "wrong_type": (("csv", "jsonl"), "wrong_type"),
    "out_of_range": (("csv", "jsonl", "parquet"), "out_of_range"),
    "missing": (("csv", "jsonl", "parquet"), "missing"),
    "unknown_category": (("csv", "jsonl", "parquet"), "unknown_category"),
    "not_finite": (("csv", "jsonl", "parquet"), "not_finite"),
    "not_whole": (("csv", "jsonl", "parquet"), "wrong_type"),
    "unknown_field": (("jsonl",), "unknown_field"),
    "blank_line": (("csv",), "missing"),
    "short_row": (("csv",), "missing"),
    "invalid_json": (("jsonl",), "wrong_type"),
}
_SHAPES = {"blank_line", "short_row", "invalid_json"}


@dataclass
class Row:
    """One row to write: the record (None for shape defects) and what the run should do."""

    record: dict[str, Any] | None
    kind: str | None = None  # None: a valid row

    @property
    def expect(self) -> str | None:
        return KINDS[self.kind][1] if self.kind else None


def applications(n: int, fmt: str, share: float = 0.02, seed: int = 5) -> list[Row]:
    """`n` credit-risk applications, about `share` of them malformed (every kind `fmt` allows)."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records

    recs = records(generate_credit_data(n, seed=seed), CREDIT_RISK_SCHEMA)
    kinds = [k for k, (fmts, _) in KINDS.items() if fmt in fmts]
    rng = np.random.default_rng(seed)
    bad = rng.choice(n, size=max(len(kinds), int(n * share)), replace=False) if n else []
    rows = [Row(r) for r in recs]
    for j, i in enumerate(sorted(bad)):
        kind = kinds[j % len(kinds)]
        rows[i] = Row(None if kind in _SHAPES else _spoil(recs[i], kind), kind)
    return rows


def _spoil(rec: dict[str, Any], kind: str) -> dict[str, Any]:
    rec = dict(rec)
    if kind == "wrong_type":
        rec["age"] = "forty"
    elif kind == "out_of_range":
        rec["age"] = 17
    elif kind == "missing":
        rec["employment"] = None
    elif kind == "unknown_category":
        rec["employment"] = "astronaut"
    elif kind == "not_finite":
        rec["loan_amount"] = float("inf")
    elif kind == "not_whole":
        rec["age"] = 30.5
    elif kind == "unknown_field":
        rec["nickname"] = "ace"
    return rec


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def encode(rows: list[Row], fmt: str) -> bytes:
    """The rows as a CSV (with header), JSON Lines or Parquet file."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA

    names = [f.name for f in CREDIT_RISK_SCHEMA.features]
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        for r in rows:
            if r.kind == "blank_line":
                out.write("\n")
            elif r.kind == "short_row":
                out.write("42,1000\n")
            else:
                w.writerow([_cell((r.record or {}).get(n)) for n in names])
        return out.getvalue().encode()
    if fmt == "jsonl":
        lines = []
        for r in rows:
            lines.append(
                '{"age": 41, "broken' if r.kind == "invalid_json" else json.dumps(r.record)
            )
        return ("\n".join(lines) + "\n").encode()
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"integer": pa.float64(), "number": pa.float64(), "boolean": pa.bool_()}
        schema = pa.schema(
            [(f.name, types.get(f.type, pa.string())) for f in CREDIT_RISK_SCHEMA.features]
        )
        table = pa.Table.from_pylist([r.record for r in rows], schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=max(1, len(rows) // 4))
        return sink.getvalue()
    raise ValueError(f"unknown format {fmt!r}")


def csv_bytes(n: int, seed: int = 5) -> bytes:
    """A valid credit-risk CSV of `n` rows, generated in blocks (for the 1M-row benchmark)."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data

    names = [f.name for f in CREDIT_RISK_SCHEMA.features]
    out = io.BytesIO()
    out.write((",".join(names) + "\n").encode())
    block = 100_000
    for start in range(0, n, block):
        df = generate_credit_data(min(block, n - start), seed=seed + start)[names]
        df.to_csv(out, header=False, index=False, lineterminator="\n")
    return out.getvalue()
