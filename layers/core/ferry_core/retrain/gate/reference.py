"""The candidate under test and the reference rows every check shares.

The reference rows are the validation rows in the serving encoding with the source pipeline's
scores and the labels; they are decoded back into client instances, so every check feeds the
real serving path. AUC is computed here without scikit-learn (rank-based, ties averaged): the
validation image has no pandas or scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from ferry_core.card import Artifact, Card, Feature, InputSchema
from ferry_core.errors import ModelUnavailable
from ferry_core.retrain.candidate import CandidateSpec
from ferry_core.serving.inference import MISSING_CATEGORY, OnnxModel
from ferry_core.serving.validator import InstanceValidator

REFERENCE_SCORE = "__reference_score__"
LABEL = "__label__"


class GateInputError(ValueError):
    """The candidate's reference rows cannot support a check (missing columns, labels, scores)."""


def roc_auc(labels: Any, scores: Any) -> float | None:
    """ROC AUC as the Mann-Whitney U statistic (ties averaged); None when it is undefined.

    Undefined: one class only, or a non-finite score. Equals sklearn's `roc_auc_score`.
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0 or not np.isfinite(s).all():
        return None
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based, ties averaged
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass
class Reference:
    """The reference rows decoded against the candidate's schema."""

    rows: list[dict[str, Any]]  # the instances a client would send (None for nulls)
    columns: dict[str, np.ndarray]  # float64 (NaN = null) or object str ("" = null)
    scores: np.ndarray | None
    labels: np.ndarray | None
    label_problem: str | None

    def __len__(self) -> int:
        return len(self.rows)

    def require_labels(self) -> np.ndarray:
        if self.labels is None:
            raise GateInputError(self.label_problem or "the reference rows carry no labels")
        return self.labels


def read_reference(table: pa.Table, schema: InputSchema) -> Reference:
    """Decode the serving-encoded reference frame (numbers as float64 with NaN, categories as
    str with "") back into client instances, so every check feeds the real serving path."""
    if table.num_rows == 0:
        raise GateInputError("the reference holds no rows")
    names = set(table.schema.names)
    absent = [f.name for f in schema.features if f.name not in names]
    if absent:
        raise GateInputError(f"the reference rows lack feature column(s): {', '.join(absent)}")
    columns: dict[str, np.ndarray] = {}
    values: dict[str, list[Any]] = {}
    for f in schema.features:
        col = table.column(f.name)
        try:
            if f.type == "category":
                text = col.cast(pa.string()).fill_null(MISSING_CATEGORY).to_pylist()
                columns[f.name] = np.array(text, dtype=object)
                values[f.name] = [None if v == MISSING_CATEGORY else v for v in text]
            else:
                arr = col.cast(pa.float64()).fill_null(math.nan).to_numpy()
                columns[f.name] = arr
                values[f.name] = _decode_numbers(f, arr)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise GateInputError(f"reference column {f.name} is not a {f.type}: {exc}") from exc
    n = table.num_rows
    rows = [{f.name: values[f.name][i] for f in schema.features} for i in range(n)]
    scores = None
    if REFERENCE_SCORE in names:
        col = table.column(REFERENCE_SCORE)
        scores = col.cast(pa.float64()).fill_null(math.nan).to_numpy()
    labels, problem = _labels(table)
    return Reference(rows, columns, scores, labels, problem)


def _decode_numbers(f: Feature, arr: np.ndarray) -> list[Any]:
    if f.type == "boolean":
        return [None if math.isnan(v) else bool(v) for v in arr.tolist()]
    return [None if math.isnan(v) else v for v in arr.tolist()]


def _labels(table: pa.Table) -> tuple[np.ndarray | None, str | None]:
    if LABEL not in table.schema.names:
        return None, f"the reference rows carry no {LABEL} column: no metric can be measured"
    col = table.column(LABEL)
    if col.null_count:
        return None, f"{col.null_count} reference row(s) have no label"
    try:
        y = col.cast(pa.float64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None, f"{LABEL} is not numeric (0/1)"
    if not np.isin(y, (0.0, 1.0)).all():
        return None, f"{LABEL} holds values other than 0 and 1"
    return y.astype(np.int64), None


def typical_instance(
    schema: InputSchema, columns: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """An ordinary in-range instance: reference medians and modes, else the middle of the range."""
    columns = columns or {}
    out: dict[str, Any] = {}
    for f in schema.features:
        col = columns.get(f.name)
        if f.type == "category":
            cats = list(f.categories or [])
            seen = [v for v in col.tolist() if v in cats] if col is not None else []
            out[f.name] = max(cats, key=seen.count) if seen else cats[0]
            continue
        finite = col[np.isfinite(col)] if col is not None else np.zeros(0)
        if f.type == "boolean":
            out[f.name] = bool(finite.size and finite.mean() >= 0.5)
            continue
        if finite.size:
            v = float(np.median(finite))
        elif f.minimum is not None and f.maximum is not None:
            v = (f.minimum + f.maximum) / 2
        else:
            v = f.minimum if f.minimum is not None else (f.maximum if f.maximum is not None else 0)
        integer = f.type == "integer"
        if integer:
            v = float(round(v))
        if f.minimum is not None:
            v = max(v, float(math.ceil(f.minimum)) if integer else f.minimum)
        if f.maximum is not None:
            v = min(v, float(math.floor(f.maximum)) if integer else f.maximum)
        out[f.name] = int_if_exact(float(v)) if integer else float(v)
    return out


def int_if_exact(v: float) -> int | float:
    return int(v) if abs(v) < 2**53 else v


def number_text(x: float | None) -> str:
    if x is None:
        return "none"
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else repr(float(x))


class CandidateUnderTest:
    """The candidate's model, reference rows and scores, each computed once when first needed.

    A failure (unloadable graph, unreadable reference) is raised again by every check that
    needs it, so each such check fails with the same reason.
    """

    def __init__(self, spec: CandidateSpec, onnx_bytes: bytes, reference: pa.Table) -> None:
        self.spec = spec
        self._onnx = onnx_bytes
        self._table = reference
        self.validator = InstanceValidator(spec.input_schema)

    @cached_property
    def model(self) -> OnnxModel:
        card = Card(
            name="candidate",
            version=1,
            input_schema=self.spec.input_schema,
            output=self.spec.output,
            artifact=Artifact(
                uri=f"s3://candidate/{self.spec.name}/{self.spec.run_id}/model.onnx",
                sha256=self.spec.model_sha256,
                size=self.spec.model_size,
            ),
        )
        try:
            return OnnxModel(card, self._onnx)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                f"the candidate's graph cannot be served: {exc.message}"
            ) from exc

    @cached_property
    def reference(self) -> Reference:
        return read_reference(self._table, self.spec.input_schema)

    @cached_property
    def scores(self) -> np.ndarray:
        """The candidate's scores on the reference rows, through the serving encoder."""
        return self.model.score(self.model.encode_rows(self.reference.rows))

    def typical(self) -> dict[str, Any]:
        try:
            columns = self.reference.columns
        except GateInputError:
            columns = None
        return typical_instance(self.spec.input_schema, columns)
