"""Batch files whose every row says what must become of it: the ground truth of the rows property.

`make_file` writes CSV, JSON Lines or Parquet credit-risk files carrying every kind of
malformed row the platform must reject, each row with its number and expected side (scored or
rejected); `failing_files` are whole files that must fail with a reason.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# ---- the files: what was written into them is the ground truth ------------------------------


MODEL = "credit-risk"
INCOMING = f"batch/incoming/{MODEL}/"


@dataclass
class FileSpec:
    """One uploaded file and what must become of it.

    `expect[row]` is "scored" or "rejected" for every data row (1-based, as the outputs number
    them); `fails` is a substring of the failed manifest's reason when the whole file must fail.
    """

    key: str
    body: bytes
    fmt: str
    expect: dict[int, str] = field(default_factory=dict)
    fails: str | None = None
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return len(self.expect)


def _names() -> list[str]:
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA

    return [f.name for f in CREDIT_RISK_SCHEMA.features]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _csv_line(rec: dict[str, Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([_cell(rec.get(n)) for n in _names()])
    return buf.getvalue().encode()


def _with(rec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**rec, **changes}


def _csv_defects(good: dict[str, Any]) -> dict[str, bytes]:
    """CSV lines the batch applications generator does not make, each one malformed."""
    line = _csv_line(good)
    cells = line.split(b",")
    return {
        "extra_cells": line + b",surplus,cells",
        "ragged_short": b",".join(cells[:3]),
        "nan_text": _csv_line(_with(good, loan_amount="NaN")),
        "inf_text": _csv_line(_with(good, annual_income="-Infinity")),
        "overflow": _csv_line(_with(good, loan_amount="1e999")),
        "huge_integer": _csv_line(_with(good, age="1" + "0" * 400)),
        "whitespace_line": b"   ",
        "empty_cells": b"," * (len(cells) - 1),
        "long_text": _csv_line(_with(good, employment="x" * 5000)),
        "bad_boolean": _csv_line(_with(good, prior_default="maybe")),
        "negative": _csv_line(_with(good, open_accounts=-1)),
    }


def _jsonl_defects(good: dict[str, Any]) -> dict[str, bytes]:
    text = json.dumps(good)
    return {
        "nan_token": json.dumps(_with(good, loan_amount=float("nan"))).encode(),
        "infinity_token": json.dumps(_with(good, annual_income=float("inf"))).encode(),
        "invalid_utf8": text.encode().replace(b'"employment": "', b'"employment": "\xff', 1),
        "blank_line": b"",
        "whitespace_line": b"  \t ",
        "json_array": b"[1, 2, 3]",
        "json_number": b"42",
        "json_string": b'"an application"',
        "json_null": b"null",
        "empty_object": b"{}",
        "deeply_nested": b"[" * 5000 + b"]" * 5000,
        "bool_for_integer": json.dumps(_with(good, age=True)).encode(),
        "string_for_number": json.dumps(_with(good, loan_amount="12000")).encode(),
        "extra_field": json.dumps(_with(good, nickname="ace")).encode(),
        "overflow": text.replace('"age": ', '"age": 1' + "0" * 400 + ', "_": ', 1).encode(),
    }


def _parquet_defects(good: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "nan_value": _with(good, loan_amount=float("nan")),
        "neg_inf": _with(good, credit_history_years=float("-inf")),
        "null_required": _with(good, age=None),
        "out_of_range": _with(good, loan_term_months=1000.0),
        "unknown_category": _with(good, purpose="yacht"),
        "not_whole": _with(good, open_accounts=2.5),
    }


def _spread(
    base: list[tuple[bytes | dict[str, Any], str | None]], extra: list[Any], rng: random.Random
) -> list[Any]:
    out = list(base)
    for item in extra:
        out.insert(rng.randrange(len(out) + 1), item)
    return out


def make_file(fmt: str, n: int, seed: int, name: str, variant: str = "") -> FileSpec:
    """A file of about `n` generated applications with every defect of its format mixed in.

    `variant` (CSV): "crlf" line endings, "bom" (a UTF-8 byte order mark), "truncated" (the
    last line cut mid-row, no newline); (JSON Lines): "truncated".
    """
    from ferry_core.batch.sample_files import applications, encode

    rng = random.Random(seed)
    rows = applications(n, fmt, share=0.04, seed=seed)
    good = next(r.record for r in rows if r.kind is None and r.record)
    kinds: Counter[str] = Counter(r.kind or "valid" for r in rows)
    key = f"{INCOMING}{name}.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA

        items: list[Any] = [(r.record, "rejected" if r.kind else "scored") for r in rows]
        extras = [(rec, "rejected") for rec in _parquet_defects(good).values()]
        kinds.update(_parquet_defects(good).keys())
        items = _spread(items, extras, rng)
        types = {"integer": pa.float64(), "number": pa.float64(), "boolean": pa.bool_()}
        schema = pa.schema(
            [(f.name, types.get(f.type, pa.string())) for f in CREDIT_RISK_SCHEMA.features]
        )
        table = pa.Table.from_pylist([rec for rec, _ in items], schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=max(1, len(items) // 5))
        expect = {i + 1: side for i, (_, side) in enumerate(items)}
        return FileSpec(key, sink.getvalue(), fmt, expect, kinds=kinds)
    body = encode(rows, fmt)
    lines = body.split(b"\n")[:-1]  # every line ends with a newline
    header: list[bytes] = []
    if fmt == "csv":
        header, lines = lines[:1], lines[1:]
    assert len(lines) == n, (len(lines), n)
    base = [(line, "rejected" if r.kind else "scored") for line, r in zip(lines, rows, strict=True)]
    defects = _csv_defects(good) if fmt == "csv" else _jsonl_defects(good)
    kinds.update(defects.keys())
    items = _spread(base, [(d, "rejected") for d in defects.values()], rng)
    ending = b"\r\n" if variant == "crlf" else b"\n"
    text = ending.join([*header, *(line for line, _ in items)]) + ending
    if variant == "bom":
        text = b"\xef\xbb\xbf" + text
    expect = {i + 1: side for i, (_, side) in enumerate(items)}
    if variant == "truncated":  # the upload was cut off: the last line stops mid-row
        cut = (
            b",".join(_csv_line(good).split(b",")[:4])
            if fmt == "csv"
            else json.dumps(good).encode()[:25]
        )
        text += cut
        expect[len(expect) + 1] = "rejected"
        kinds["truncated_last_line"] += 1
    return FileSpec(key, text, fmt, expect, kinds=kinds)


def failing_files(seed: int) -> list[FileSpec]:
    """Whole files that cannot be scored as uploaded: each must end in a failed manifest."""
    from ferry_core.batch.sample_files import applications, encode

    csv_body = encode(applications(120, "csv", seed=seed), "csv")
    lines = csv_body.split(b"\n")
    bad_utf8 = b"\n".join([*lines[:60], lines[60].replace(b",", b",\xff\xfe", 1), *lines[61:]])
    parquet = make_file("parquet", 200, seed, "x").body
    wide = b"\n".join([lines[0] + b",nickname", *(ln + b",ace" for ln in lines[1:-1])]) + b"\n"
    return [
        FileSpec(f"{INCOMING}fail/invalid-utf8.csv", bad_utf8, "csv", fails="utf"),
        FileSpec(f"{INCOMING}fail/unknown-column.csv", wide, "csv", fails="unknown column"),
        FileSpec(
            f"{INCOMING}fail/cut.parquet", parquet[: len(parquet) // 2], "parquet", fails="parquet"
        ),
        FileSpec(f"{INCOMING}fail/empty.csv", b"", "csv", fails="empty"),
        FileSpec(f"{INCOMING}fail/header-only.csv", lines[0] + b"\n", "csv", fails="no data rows"),
        FileSpec(f"{INCOMING}fail/blank.jsonl", b"", "jsonl", fails="no data rows"),
        FileSpec("batch/incoming/no-such-model/a.csv", csv_body, "csv", fails="no model named"),
        FileSpec(f"{INCOMING}fail/notes.txt", b"hello", "txt", fails="file type"),
    ]
