"""The columnar validator: `InstanceValidator`'s verdict for a whole chunk, without a dict per row.

A chunk arrives as Arrow columns, either as text (CSV: every cell a string, decoded by the
rules of `decode_text_cell`) or typed (Parquet). A vectorised fast path accepts the rows it can
prove valid and builds their onnxruntime feeds straight from the columns. Every other row (a
null in a required column, a value of the wrong type, out of range, not finite, an unknown
category, or anything the fast path is not sure of) is decoded to a dict and checked by
`InstanceValidator` itself, so its verdict, problem codes and messages are the real-time API's
by construction. The fast path only has to be sound (never accept what the validator would
reject); tests/unit/batch/test_batch_columns.py proves it, and that it is precise on every kind of
malformed value, so the slow path stays at the share of malformed rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry_core.card import Feature, InputSchema
from ferry_core.serving.inference import MISSING_CATEGORY, OnnxModel
from ferry_core.serving.validator import FLOAT32_MAX, InstanceValidator, Issue, Verdict

# How a CSV cell becomes a value (the rules of `decode_text_cell`, mirrored by the fast path).
INTEGER_TEXT = r"^[+-]?[0-9]+$"
NUMBER_TEXT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
NON_FINITE_TEXT = r"^[+-]?(?:[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])$"
TRUE_TEXT = ("true", "1")
FALSE_TEXT = ("false", "0")
# Longer numerals, and integers past 2**53, go to the exact path: float64 may round them.
_MAX_FAST_DIGITS = 15
_EXACT_INT = 2.0**53

_INTEGER_RE = re.compile(INTEGER_TEXT)
_NUMBER_RE = re.compile(NUMBER_TEXT)
_NON_FINITE_RE = re.compile(NON_FINITE_TEXT)
_MAX_INT_DIGITS = 4000  # int() refuses longer strings; such numerals are floats (inf)


def decode_text_cell(feature: Feature, text: str) -> Any:
    """The value a CSV cell stands for: "" is null; numerals, true/false/1/0 by type; else text.

    A cell that is not a value of its feature's type stays a string, so the validator reports
    `wrong_type` (or `unknown_category`) exactly as it would for that string in JSON.
    """
    if text == "":
        return None
    if feature.type in ("number", "integer"):
        if _INTEGER_RE.match(text) and len(text) <= _MAX_INT_DIGITS:
            return int(text)
        if _NUMBER_RE.match(text) or _NON_FINITE_RE.match(text):
            return float(text)
        return text
    if feature.type == "boolean":
        low = text.lower()
        if low in TRUE_TEXT:
            return True
        if low in FALSE_TEXT:
            return False
    return text


def decode_text_row(schema: InputSchema, row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row (column → cell text) as the instance the validator checks."""
    out: dict[str, Any] = {}
    for name, text in row.items():
        try:
            feature = schema.feature(name)
        except KeyError:
            out[name] = text
            continue
        out[name] = decode_text_cell(feature, text)
    return out


@dataclass
class ChunkVerdict:
    """The verdict on the rows of one chunk, in chunk order (indices are 0-based in the chunk)."""

    n: int
    fast_ok: np.ndarray  # rows the vectorised path accepted
    fast_feeds: dict[str, np.ndarray]  # their onnxruntime feeds (clipped), in chunk order
    clipped: dict[str, np.ndarray] = field(default_factory=dict)  # fast rows clipped, by feature
    slow_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slow: Verdict = field(default_factory=Verdict)  # InstanceValidator on the slow rows

    @property
    def accepted(self) -> np.ndarray:
        mask = self.fast_ok.copy()
        mask[self.slow_index[self.slow.row_index]] = True
        return mask

    def issues_by_row(self) -> dict[int, list[Issue]]:
        """Problems of each rejected row, keyed by its index in the chunk."""
        out: dict[int, list[Issue]] = {}
        for issue in self.slow.issues:
            out.setdefault(int(self.slow_index[issue.instance]), []).append(issue)
        return out

    def warning_counts(self) -> dict[str, int]:
        """Values clipped under `clip_and_warn`, per feature, over the accepted rows."""
        counts = {name: int(mask.sum()) for name, mask in self.clipped.items() if mask.any()}
        for warns in self.slow.warnings:
            for w in warns:
                counts[w["field"]] = counts.get(w["field"], 0) + 1
        return counts

    def score(self, model: OnnxModel) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels of the accepted rows, in chunk order, in one onnxruntime call."""
        accepted = self.accepted
        fast_rows = np.flatnonzero(self.fast_ok)
        slow_rows = self.slow_index[self.slow.row_index]
        if len(slow_rows):
            slow_feeds = model.encode_rows(self.slow.rows)
            feeds = {
                name: np.concatenate([self.fast_feeds[name], slow_feeds[name]])
                for name in self.fast_feeds
            }
        else:
            feeds = self.fast_feeds
        if not accepted.any():
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        scores = model.score(feeds)
        # Fast rows come first in the feeds, then the slow ones: put them back in chunk order.
        order = np.argsort(np.concatenate([fast_rows, slow_rows]), kind="stable")
        scores = scores[order]
        return scores, model.labels(scores)


class ColumnarValidator:
    """Validates Arrow chunks against one input schema, with InstanceValidator's verdict."""

    def __init__(self, schema: InputSchema, validator: InstanceValidator | None = None) -> None:
        self.schema = schema
        self.validator = validator or InstanceValidator(schema)

    def check(self, table: pa.Table | pa.RecordBatch, *, text: bool) -> ChunkVerdict:
        """Verdict on every row of `table` (columns named after features; all present or nullable).

        `text=True`: every column is a string column of CSV cells. Otherwise the columns carry
        their own Arrow types (Parquet) and each value is what `to_pylist()` gives.
        """
        n = table.num_rows
        ok = np.ones(n, dtype=bool)
        feeds: dict[str, np.ndarray] = {}
        clipped: dict[str, np.ndarray] = {}
        names = set(table.schema.names)
        for f in self.schema.features:
            if f.name in names:
                col = table.column(f.name)
                if isinstance(col, pa.ChunkedArray):
                    col = col.combine_chunks()
                col_ok, values, clip = _check_column(f, col, text)
            else:  # an absent nullable column (absent required columns fail the whole file)
                col_ok = np.full(n, f.nullable)
                values = _null_values(f, n)
                clip = None
            ok &= col_ok
            feeds[f.name] = values
            if clip is not None:
                clipped[f.name] = clip
        slow_index = np.flatnonzero(~ok)
        fast_feeds = {name: v[ok].reshape(-1, 1) for name, v in feeds.items()}
        verdict = ChunkVerdict(
            n=n,
            fast_ok=ok,
            fast_feeds=fast_feeds,
            clipped={name: m & ok for name, m in clipped.items()},
            slow_index=slow_index,
        )
        if len(slow_index):
            rows = self.rows(table, slow_index, text=text)
            verdict.slow = self.validator.check(rows)
        return verdict

    def rows(self, table: pa.Table | pa.RecordBatch, index: Sequence[int], *, text: bool) -> list:
        """The instances the validator sees for some rows (decoded CSV cells or typed values)."""
        picked = table.take(pa.array(index, type=pa.int64())).to_pylist()
        if text:
            return [decode_text_row(self.schema, r) for r in picked]
        return picked


def _null_values(f: Feature, n: int) -> np.ndarray:
    if f.type == "category":
        return np.full(n, MISSING_CATEGORY, dtype=object)
    return np.full(n, np.nan, dtype=np.float32)


def _check_column(
    f: Feature, col: pa.Array, text: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(rows the fast path accepts, their feed values, rows clipped) for one feature column."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if f.type in ("number", "integer"):
        return _numeric(f, col, text)
    if f.type == "category":
        return _category(f, col, text), _category_values(col, text), None
    return _boolean(f, col, text)


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy, null counted as False."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_stringy(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _numeric(
    f: Feature, col: pa.Array, text: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n = len(col)
    if text:
        null = _mask(pc.equal(col, ""))
        short = _mask(pc.less_equal(pc.utf8_length(col), _MAX_FAST_DIGITS))
        try:
            # The common case: every cell is a numeral or empty, and one cast parses them all
            # (Arrow's float syntax is NUMBER_TEXT's, plus inf/nan, which are not finite).
            source = pc.if_else(pa.array(null), pa.scalar(None, col.type), col)
            vals = pc.cast(source, pa.float64()).to_numpy(zero_copy_only=False)
            present = ~null & short
        except pa.ArrowInvalid:
            numeral = _mask(pc.match_substring_regex(col, NUMBER_TEXT))
            present = numeral & short
            source = pc.if_else(pa.array(present), col, pa.scalar(None, col.type))
            vals = pc.cast(source, pa.float64()).to_numpy(zero_copy_only=False)
    elif (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_null(col.type)
    ):
        null = _mask(col.is_null())
        present = ~null
        vals = pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        if pa.types.is_integer(col.type):
            with np.errstate(invalid="ignore"):
                present &= np.abs(np.nan_to_num(vals)) <= _EXACT_INT
    else:  # booleans, strings, decimals...: the validator says what is wrong with each value
        null = _mask(col.is_null())
        return null & f.nullable, np.full(n, np.nan, dtype=np.float32), None
    vals = np.asarray(vals, dtype=np.float64)
    hard = f.out_of_range == "reject"
    lo = f.minimum if hard and f.minimum is not None else -FLOAT32_MAX
    hi = f.maximum if hard and f.maximum is not None else FLOAT32_MAX
    with np.errstate(invalid="ignore"):
        good = present & np.isfinite(vals) & (vals >= lo) & (vals <= hi)
        if f.type == "integer":
            good &= np.floor(vals) == vals
    ok = good | (null & f.nullable)
    clip = None
    if not hard and (f.minimum is not None or f.maximum is not None):
        cmin = -math.inf if f.minimum is None else f.minimum
        cmax = math.inf if f.maximum is None else f.maximum
        with np.errstate(invalid="ignore"):
            clip = good & ((vals < cmin) | (vals > cmax))
            vals = np.where(good, np.clip(vals, cmin, cmax), vals)
    feed = np.where(good, vals, np.nan).astype(np.float32)
    return ok, feed, clip


def _category(f: Feature, col: pa.Array, text: bool) -> np.ndarray:
    if not text and not _is_stringy(col.type):
        return _mask(col.is_null()) & f.nullable
    if not text:
        col = pc.cast(col, pa.string())
    null = _mask(pc.equal(col, "")) if text else _mask(col.is_null())
    known = _mask(pc.is_in(col, value_set=pa.array(f.categories or [], type=col.type)))
    return known | (null & f.nullable)


def _category_values(col: pa.Array, text: bool) -> np.ndarray:
    if not text and not _is_stringy(col.type):
        return np.full(len(col), MISSING_CATEGORY, dtype=object)
    if not text:
        col = pc.cast(col, pa.string())
    filled = pc.fill_null(col, MISSING_CATEGORY)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=object)


def _boolean(
    f: Feature, col: pa.Array, text: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n = len(col)
    if text:
        null = _mask(pc.equal(col, ""))
        low = pc.utf8_lower(col)
        true = _mask(pc.is_in(low, value_set=pa.array(TRUE_TEXT)))
        false = _mask(pc.is_in(low, value_set=pa.array(FALSE_TEXT)))
    elif pa.types.is_boolean(col.type):
        null = _mask(col.is_null())
        true = _mask(col)
        false = ~null & ~true
    else:
        null = _mask(col.is_null())
        return null & f.nullable, np.full(n, np.nan, dtype=np.float32), None
    feed = np.where(true, 1.0, np.where(false, 0.0, np.nan)).astype(np.float32)
    return true | false | (null & f.nullable), feed, None
