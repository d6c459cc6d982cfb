"""The validation gate: every retraining candidate passes it before it can be promoted.

`run_gate` takes a candidate (its spec, ONNX bytes and reference rows) and the production
champion, and runs six checks, each a JSON-able dict `{"name", "passed", "message", ...figures}`:

- `schema`    the candidate accepts everything the champion accepted (same names and types,
              no category dropped, no range narrowed, no nullable removed, no feature removed,
              no new required feature), unless the caller flags a breaking change;
- `parity`    the ONNX graph, run through the serving code, reproduces the source pipeline's
              scores on the reference rows;
- `metrics`   candidate AUC not below the champion's on the same rows, beyond a tolerance;
- `segments`  every named segment with enough rows of both classes above its AUC floor;
- `scenarios` a suite generated from the input schema (in range, at and past the bounds,
              missing, null, wrong type, extreme, not finite, unknown category and field) gets
              exactly the verdict DESIGN.md §3.1/3.2 documents, through `InstanceValidator` and
              `OnnxModel` as the API runs them, and every scored row a finite score in [0, 1];
- `latency`   single-row validate + predict p99 within the budget.

A candidate that fails a check is a result (the report says why), not an exception; only an
unreadable bundle or champion raises. `validate_candidate` is the whole step the validation
function runs: read the bundle, fetch the champion, gate, store `validation.json` beside it.

Runtime dependencies only (numpy, pyarrow, onnxruntime, pydantic): the validation image has no
pandas or scikit-learn, so AUC is computed here (rank-based, ties averaged).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_core.candidate import (
    RUN_ID,
    Bundle,
    CandidateSpec,
    CandidateUnavailable,
    read_bundle,
    write_report,
)
from ferry_core.card import Artifact, Card, Feature, InputSchema
from ferry_core.errors import FerryError, ModelUnavailable
from ferry_core.registry import RegistryReader, now_iso
from ferry_core.serving.inference import MISSING_CATEGORY, OnnxModel
from ferry_core.serving.validator import FLOAT32_MAX, InstanceValidator
from ferry_core.store import ModelStore

REFERENCE_SCORE = "__reference_score__"
LABEL = "__label__"
CHECKS = ("schema", "parity", "metrics", "segments", "scenarios", "latency")
MAX_LISTED = 50  # mismatches / breaks listed in a report; the counts are always complete
UNKNOWN_FIELD = "__ferry_unknown_field__"
UNKNOWN_CATEGORY = "__ferry_unknown_category__"
LATENCY_WARMUP = 10


class GatePolicy(BaseModel):
    """The gate's thresholds; infra/config.py sets them per environment through GATE_* vars."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    parity_tolerance: float = Field(default=1e-5, alias="GATE_PARITY_TOLERANCE", ge=0)
    metric_tolerance: float = Field(default=0.01, alias="GATE_METRIC_TOLERANCE", ge=0, le=1)
    segment_floor: float = Field(default=0.6, alias="GATE_SEGMENT_FLOOR", ge=0, le=1)
    segment_min_rows: int = Field(default=30, alias="GATE_SEGMENT_MIN_ROWS", ge=2)
    latency_p99_ms: float = Field(default=50.0, alias="GATE_LATENCY_P99_MS", gt=0)
    latency_runs: int = Field(default=300, alias="GATE_LATENCY_RUNS", ge=1, le=100_000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatePolicy:
        """Read when the function starts (never at import); unset variables keep the defaults."""
        env = os.environ if environ is None else environ
        aliases = {f.alias for f in cls.model_fields.values() if f.alias}
        return cls.model_validate({k: v for k, v in env.items() if k in aliases})

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class ValidationSettings(BaseModel):
    """What the stack passes the validation function; the gate policy comes from GATE_* vars."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    model_bucket: str = Field(alias="MODEL_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    model_cache_dir: str = Field(default="/tmp/ferry-models", alias="MODEL_CACHE_DIR")
    policy: GatePolicy = Field(default_factory=GatePolicy)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ValidationSettings:
        env = os.environ if environ is None else environ
        aliases = {f.alias for f in cls.model_fields.values() if f.alias}
        values: dict[str, Any] = {k: v for k, v in env.items() if k in aliases}
        return cls.model_validate({**values, "policy": GatePolicy.from_env(env)})


class ValidationRequest(BaseModel):
    """The validation step's input, as the state machine passes it (unknown keys are a bug)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    run_id: str = Field(pattern=RUN_ID.pattern)
    breaking_change: bool = Field(default=False, strict=True)


class GateInputError(ValueError):
    """The candidate's reference rows cannot support a check (missing columns, labels, scores)."""


# ---------------------------------------------------------------------------------------------
# AUC without scikit-learn


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


# ---------------------------------------------------------------------------------------------
# Reference rows


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


# ---------------------------------------------------------------------------------------------
# Schema compatibility


def schema_breaks(old: InputSchema, new: InputSchema) -> list[str]:
    """Every way `new` refuses or changes a request `old` accepted (empty: compatible)."""
    breaks: list[str] = []
    new_by_name = {f.name: f for f in new.features}
    old_names = {f.name for f in old.features}
    for o in old.features:
        n = new_by_name.get(o.name)
        if n is None:
            breaks.append(f"{o.name}: feature removed")
            continue
        if n.type != o.type:
            breaks.append(f"{o.name}: type changed from {o.type} to {n.type}")
            continue
        if o.nullable and not n.nullable:
            breaks.append(f"{o.name}: no longer nullable")
        if o.type == "category":
            dropped = [c for c in o.categories or [] if c not in (n.categories or [])]
            if dropped:
                breaks.append(f"{o.name}: categories no longer accepted: {', '.join(dropped)}")
        breaks.extend(_range_breaks(o, n))
    for n in new.features:
        if n.name not in old_names and not n.nullable:
            breaks.append(f"{n.name}: new required feature (existing clients do not send it)")
    return breaks


def _range_breaks(o: Feature, n: Feature) -> list[str]:
    out: list[str] = []
    if o.type not in ("number", "integer"):
        return out
    if n.minimum is not None and (o.minimum is None or n.minimum > o.minimum):
        out.append(f"{o.name}: minimum raised from {_num(o.minimum)} to {_num(n.minimum)}")
    if n.maximum is not None and (o.maximum is None or n.maximum < o.maximum):
        out.append(f"{o.name}: maximum lowered from {_num(o.maximum)} to {_num(n.maximum)}")
    bounded = n.minimum is not None or n.maximum is not None
    if o.out_of_range == "clip_and_warn" and n.out_of_range == "reject" and bounded:
        out.append(f"{o.name}: out-of-range values now rejected (were clipped with a warning)")
    return out


def _num(x: float | None) -> str:
    if x is None:
        return "none"
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else repr(float(x))


# ---------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
    """One instance and the verdict the schema contract documents for it.

    `rejected` empty → scored (with a clip warning on each field of `warned`); else the exact
    set of (field, problem) the validator must report.
    """

    name: str
    instance: dict[str, Any]
    field: str | None = None
    value: Any = None
    rejected: frozenset[tuple[str | None, str]] = frozenset()
    warned: frozenset[str] = frozenset()

    @property
    def expected(self) -> str:
        if self.rejected:
            return "rejected: " + ", ".join(f"{f} {p}" for f, p in sorted(self.rejected, key=str))
        if self.warned:
            return "scored, warning on " + ", ".join(sorted(self.warned))
        return "scored"


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
        out[f.name] = _int_if_exact(float(v)) if integer else float(v)
    return out


def _int_if_exact(v: float) -> int | float:
    return int(v) if abs(v) < 2**53 else v


def expected_numeric(f: Feature, value: float) -> tuple[str | None, bool]:
    """(problem or None, clipped) for a number sent to a numeric feature (DESIGN.md §3.2).

    Not finite → not_finite; beyond float32 → out_of_range whatever the policy (it could not
    reach the graph); outside [minimum, maximum] → out_of_range under `reject`, clipped with a
    warning under `clip_and_warn`; a fraction for an integer → wrong_type.
    """
    v = float(value)
    if not math.isfinite(v):
        return "not_finite", False
    if abs(v) > FLOAT32_MAX:
        return "out_of_range", False
    outside = (f.minimum is not None and v < f.minimum) or (f.maximum is not None and v > f.maximum)
    if outside and f.out_of_range == "reject":
        return "out_of_range", False
    if f.type == "integer" and not v.is_integer():
        return "wrong_type", False
    return None, outside


def scenario_suite(schema: InputSchema, typical: dict[str, Any]) -> list[Scenario]:
    """Scenarios generated from the input schema, each with its documented verdict."""
    suite = [Scenario("typical", dict(typical))]
    nullable = [f.name for f in schema.features if f.nullable]
    if nullable:
        suite.append(Scenario("all_nullable_null", {**typical, **dict.fromkeys(nullable)}))
    suite.append(
        Scenario(
            "unknown_field",
            {**typical, UNKNOWN_FIELD: 1},
            UNKNOWN_FIELD,
            1,
            rejected=frozenset({(UNKNOWN_FIELD, "unknown_field")}),
        )
    )
    for f in schema.features:
        suite.extend(_feature_scenarios(f, typical))
    return suite


def _feature_scenarios(f: Feature, typical: dict[str, Any]) -> list[Scenario]:
    name = f.name

    def sc(label: str, value: Any, problem: str | None = None, warned: bool = False) -> Scenario:
        rejected = frozenset({(name, problem)}) if problem else frozenset()
        return Scenario(
            f"{name}:{label}",
            {**typical, name: value},
            name,
            value,
            rejected,
            frozenset({name}) if warned else frozenset(),
        )

    missing = None if f.nullable else "missing"
    omitted = {k: v for k, v in typical.items() if k != name}
    out = [
        Scenario(
            f"{name}:omitted",
            omitted,
            name,
            None,
            frozenset({(name, missing)}) if missing else frozenset(),
        ),
        sc("null", None, missing),
    ]
    if f.type == "category":
        out.extend(sc(f"category={c}", c) for c in f.categories or [])
        out.append(sc("unknown_category", UNKNOWN_CATEGORY, "unknown_category"))
        out.append(sc("wrong_type_number", 7, "wrong_type"))
        return out
    if f.type == "boolean":
        out += [sc("true", True), sc("false", False)]
        out += [
            sc("wrong_type_string", "true", "wrong_type"),
            sc("wrong_type_number", 1, "wrong_type"),
        ]
        return out
    values: list[tuple[str, Any]] = []
    integer = f.type == "integer"
    if f.minimum is not None:
        lo = float(math.ceil(f.minimum)) if integer else float(f.minimum)
        below = f.minimum - max(1.0, abs(f.minimum) * 0.01)
        below = float(math.floor(below)) if integer else below
        values += [("at_minimum", lo), ("below_minimum", below)]
    if f.maximum is not None:
        hi = float(math.floor(f.maximum)) if integer else float(f.maximum)
        above = f.maximum + max(1.0, abs(f.maximum) * 0.01)
        above = float(math.ceil(above)) if integer else above
        values += [("at_maximum", hi), ("above_maximum", above)]
    values += [
        ("extreme_+1e30", 1e30),
        ("extreme_-1e30", -1e30),
        ("extreme_+1e308", 1e308),
        ("extreme_-1e308", -1e308),
        ("nan", math.nan),
        ("+inf", math.inf),
        ("-inf", -math.inf),
    ]
    if integer:
        base = typical[name]
        values.append(("fractional", float(base) + 0.5))
    for label, v in values:
        problem, clipped = expected_numeric(f, v)
        sent = _int_if_exact(v) if integer and math.isfinite(v) and v.is_integer() else v
        out.append(sc(label, sent, problem, clipped))
    out += [
        sc("wrong_type_string", "12", "wrong_type"),
        sc("wrong_type_boolean", True, "wrong_type"),
    ]
    return out


def run_scenarios(
    scenarios: Sequence[Scenario], validator: InstanceValidator, model: OnnxModel, threshold: float
) -> dict[str, Any]:
    """Run each scenario as its own request, validator then model as the API does; list every
    scenario whose verdict, warnings, score or label is not the documented one."""
    mismatches: list[dict[str, Any]] = []
    scored = rejected = 0
    for s in scenarios:
        got = _outcome(s, validator, model, threshold)
        if got["rejected"]:
            rejected += 1
        else:
            scored += 1
        if got["problem"]:
            mismatches.append(
                {
                    "scenario": s.name,
                    "field": s.field,
                    "value": _json_value(s.value),
                    "expected": s.expected,
                    "got": got["problem"],
                }
            )
    n = len(scenarios)
    passed = not mismatches
    message = (
        f"all {n} scenarios got their documented verdict"
        if passed
        else f"{len(mismatches)} of {n} scenarios did not get their documented verdict: "
        + "; ".join(f"{m['scenario']} ({m['got']})" for m in mismatches[:3])
    )
    return {
        "passed": passed,
        "message": message,
        "scenarios": n,
        "scored": scored,
        "rejected": rejected,
        "mismatches": len(mismatches),
        "details": mismatches[:MAX_LISTED],
    }


def _outcome(
    s: Scenario, validator: InstanceValidator, model: OnnxModel, threshold: float
) -> dict[str, Any]:
    """What happened to one scenario: was it rejected, and if not as documented, why."""
    verdict = validator.check([s.instance])
    if verdict.issues:
        got = frozenset((i.field, i.problem) for i in verdict.issues)
        if got == s.rejected:
            return {"rejected": True, "problem": None}
        shown = ", ".join(f"{f} {p}" for f, p in sorted(got, key=str))
        return {"rejected": True, "problem": f"rejected: {shown}"}
    if s.rejected:
        return {"rejected": False, "problem": "scored"}
    warned = frozenset(w["field"] for w in verdict.warnings[0])
    if warned != s.warned:
        shown = ", ".join(sorted(warned)) or "none"
        return {"rejected": False, "problem": f"scored with warnings on: {shown}"}
    try:
        scores, labels = model.predict_rows(verdict.rows)
    except FerryError as exc:
        return {"rejected": False, "problem": f"scoring failed: {exc.message}"}
    score, label = float(scores[0]), int(labels[0])
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        return {"rejected": False, "problem": f"score {score!r} is not a probability in [0, 1]"}
    if label != int(score >= threshold):
        return {"rejected": False, "problem": f"label {label} for score {score:.6g}"}
    return {"rejected": False, "problem": None}


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # 'nan', 'inf': JSON has no literal for them
    return v


# ---------------------------------------------------------------------------------------------
# The gate


@dataclass(frozen=True)
class GateReport:
    """The outcome of one gate run; `as_dict()` is what the card's `validation` field holds."""

    candidate: dict[str, str]
    champion_version: int | None
    checks: list[dict[str, Any]]
    policy: GatePolicy
    at: str
    breaking_change: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        return [c["name"] for c in self.checks if not c["passed"]]

    def summary(self) -> str:
        """One line naming the failed checks and why (a rejection reason), or the pass."""
        against = (
            f"champion v{self.champion_version}"
            if self.champion_version is not None
            else "no champion (first version)"
        )
        if self.passed:
            names = ", ".join(c["name"] for c in self.checks)
            return f"passed all {len(self.checks)} checks ({names}) against {against}"
        parts = [f"{c['name']}: {c['message']}" for c in self.checks if not c["passed"]]
        line = f"failed {', '.join(self.failed_checks)} against {against} — " + "; ".join(parts)
        line = " ".join(line.split())
        return line if len(line) <= 1000 else line[:997] + "..."

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "passed": self.passed,
                "source": "validation",
                "at": self.at,
                "summary": self.summary(),
                "candidate": self.candidate,
                "champion_version": self.champion_version,
                "breaking_change": self.breaking_change,
                "policy": self.policy.as_dict(),
                "checks": self.checks,
            }
        )


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class _Candidate:
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


def _guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; a candidate that cannot even be checked fails it, with the reason."""
    try:
        return {"name": name, **fn()}
    except FerryError as exc:
        return {"name": name, "passed": False, "message": exc.message}
    except GateInputError as exc:
        return {"name": name, "passed": False, "message": str(exc)}


def check_schema(
    spec: CandidateSpec, champion: Card | None, breaks: list[str], breaking_change: bool
) -> dict[str, Any]:
    """Compatible with the champion's contract, or the caller says the break is intended."""
    features = len(spec.input_schema.features)
    if champion is None:
        return {
            "passed": True,
            "message": "first version: no champion schema to stay compatible with",
            "features": features,
            "breaks": [],
        }
    figures = {
        "features": features,
        "champion_features": len(champion.input_schema.features),
        "breaks": breaks[:MAX_LISTED],
        "breaking_change": breaking_change,
    }
    if not breaks:
        return {
            "passed": True,
            "message": f"compatible with v{champion.version}'s input schema",
            **figures,
        }
    listed = "; ".join(breaks[:5]) + (f"; … {len(breaks) - 5} more" if len(breaks) > 5 else "")
    if breaking_change:
        return {
            "passed": True,
            "message": f"{len(breaks)} breaking change(s) from v{champion.version}, accepted by "
            f"the breaking_change flag: {listed}",
            **figures,
        }
    return {
        "passed": False,
        "message": f"{len(breaks)} incompatible change(s) from v{champion.version}'s input "
        f"schema (set breaking_change to accept them): {listed}",
        **figures,
    }


def _output_breaks(spec: CandidateSpec, champion: Card) -> list[str]:
    if spec.output.positive_label != champion.output.positive_label:
        return [
            f"output: positive label changed from {champion.output.positive_label!r} "
            f"to {spec.output.positive_label!r}"
        ]
    return []


def check_parity(c: _Candidate, policy: GatePolicy) -> dict[str, Any]:
    """The ONNX graph, through the serving code, reproduces the source pipeline's scores."""
    ref = c.reference
    if ref.scores is None:
        raise GateInputError(f"the reference rows carry no {REFERENCE_SCORE} column")
    if not np.isfinite(ref.scores).all():
        raise GateInputError(f"{REFERENCE_SCORE} holds null or non-finite values")
    diff = np.abs(c.scores - ref.scores)
    worst = float(diff.max())
    over = int((diff > policy.parity_tolerance).sum())
    passed = worst <= policy.parity_tolerance
    rel = "≤" if passed else ">"
    return {
        "passed": passed,
        "message": f"ONNX vs source scores on {diff.size} rows: max abs diff {worst:.3g} {rel} "
        f"tolerance {policy.parity_tolerance:.3g}" + ("" if passed else f" ({over} row(s) over)"),
        "rows": int(diff.size),
        "max_abs_diff": worst,
        "mean_abs_diff": float(diff.mean()),
        "rows_over_tolerance": over,
        "tolerance": policy.parity_tolerance,
    }


def check_metrics(
    c: _Candidate,
    champion: Card | None,
    champion_onnx: bytes | None,
    compatible: bool,
    policy: GatePolicy,
) -> dict[str, Any]:
    """Candidate AUC vs the champion's on the same rows (or its card's figure, said so)."""
    y = c.reference.require_labels()
    auc = roc_auc(y, c.scores)
    if auc is None:
        raise GateInputError("candidate AUC is undefined: the reference labels hold one class")
    tol = policy.metric_tolerance
    if champion is None:
        return {
            "passed": True,
            "message": f"first version: candidate AUC {auc:.4f} on {y.size} rows, no champion",
            "candidate_auc": auc,
            "rows": int(y.size),
            "tolerance": tol,
        }
    v = champion.version
    card_auc = champion.metrics.get("overall", {}).get("auc")
    same, note = None, ""
    if not compatible:
        note = "schemas incompatible"
    elif champion_onnx is None:
        note = "no champion artifact given"
    else:
        try:
            same = _same_rows(c, y, champion, champion_onnx)
        except FerryError as exc:
            note = f"champion v{v} could not score the rows ({exc.message})"
        else:
            note = "" if same else f"champion v{v} accepts too few of the rows for an AUC"
    if same:
        auc, champ_auc, rows, refused = same
        figures = {"rows": rows, "champion_refused_rows": refused, "champion_source": "scored"}
        where = "on the same rows"
    else:
        champ_auc = card_auc
        figures = {"rows": int(y.size), "champion_source": "card"}
        where = "from its card (its own validation rows)"
        note += ": compared with the AUC on the champion's card; "
    if champ_auc is None:
        return {
            "passed": True,
            "message": f"{note}champion v{v} records no AUC; candidate AUC {auc:.4f}, "
            "nothing to compare with",
            "candidate_auc": auc,
            "champion_auc": None,
            "delta": None,
            "tolerance": tol,
            "champion_version": v,
            **figures,
        }
    delta = auc - champ_auc
    passed = auc >= champ_auc - tol
    verdict = "within" if passed else "worse than"
    return {
        "passed": passed,
        "message": f"{note}candidate AUC {auc:.4f} vs champion v{v} {champ_auc:.4f} {where} "
        f"(delta {delta:+.4f}, {verdict} tolerance {tol:g})",
        "candidate_auc": auc,
        "champion_auc": champ_auc,
        "delta": delta,
        "tolerance": tol,
        "champion_version": v,
        "champion_card_auc": card_auc,
        **figures,
    }


def _same_rows(
    c: _Candidate, y: np.ndarray, champion: Card, champion_onnx: bytes
) -> tuple[float, float, int, int] | None:
    """(candidate AUC, champion AUC, rows, rows the champion refused) on the reference rows the
    champion accepts, scored through its own validator and graph: what production would have
    answered. None when those rows cannot give both an AUC."""
    model = OnnxModel(champion, champion_onnx)
    names = [f.name for f in champion.input_schema.features]
    rows = c.reference.rows
    verdict = InstanceValidator(champion.input_schema).check(
        [{k: r[k] for k in names} for r in rows]
    )
    if not verdict.rows:
        return None
    champ_scores, _ = model.predict_rows(verdict.rows)
    idx = np.asarray(verdict.row_index, dtype=np.int64)
    cand_auc = roc_auc(y[idx], c.scores[idx])
    champ_auc = roc_auc(y[idx], champ_scores)
    if cand_auc is None or champ_auc is None:
        return None
    return cand_auc, champ_auc, int(idx.size), len(rows) - int(idx.size)


def segment_groups(definition: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> dict:
    """Group masks of one segment definition: numeric bands by `edges` (lower bound included),
    else one group per value of the feature (nulls in no group)."""
    feature = definition.get("feature")
    if feature not in columns:
        raise GateInputError(f"segment feature {feature!r} is not a column of the reference")
    col = columns[feature]
    groups: dict[str, np.ndarray] = {}
    if "edges" in definition:
        edges = [float(e) for e in definition["edges"]]
        for lo, hi in itertools.pairwise(edges):
            label = f"{_num(lo)}-{_num(hi - 1)}" if hi.is_integer() else f"{_num(lo)}-{_num(hi)}"
            with np.errstate(invalid="ignore"):
                groups[label] = (col >= lo) & (col < hi)
    elif col.dtype == object:
        for value in sorted({v for v in col.tolist() if v != MISSING_CATEGORY}):
            groups[value] = col == value
    else:
        for value in sorted(set(col[np.isfinite(col)].tolist())):
            groups[_num(value)] = col == value
    return groups


def check_segments(c: _Candidate, policy: GatePolicy) -> dict[str, Any]:
    """Each named segment group with enough rows of both classes must reach its AUC floor."""
    definitions = c.spec.metrics.get("segment_definitions") or {}
    if not definitions:
        return {"passed": True, "message": "no segments defined", "segments": {}}
    y = c.reference.require_labels()
    scores = c.scores
    results: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    skipped = 0
    for seg, definition in definitions.items():
        floor = float(definition.get("floor", policy.segment_floor))
        results[seg] = {}
        for group, mask in segment_groups(definition, c.reference.columns).items():
            n, pos = int(mask.sum()), int(y[mask].sum())
            entry: dict[str, Any] = {"rows": n, "positives": pos, "floor": floor}
            if n < policy.segment_min_rows:
                entry.update(status="skipped", reason=f"{n} rows < {policy.segment_min_rows}")
            elif pos in (0, n):
                entry.update(status="skipped", reason="one class only")
            else:
                auc = roc_auc(y[mask], scores[mask])
                ok = auc is not None and auc >= floor
                entry.update(auc=auc, status="passed" if ok else "failed")
                if not ok:
                    failed.append(f"{seg}={group} AUC {auc:.3f} < {floor:g}")
            skipped += entry["status"] == "skipped"
            results[seg][group] = entry
    groups = sum(len(g) for g in results.values())
    if failed:
        message = f"{len(failed)} segment group(s) below their AUC floor: " + "; ".join(failed)
    else:
        message = (
            f"{groups - skipped} segment group(s) at or above their AUC floor, "
            f"{skipped} skipped (fewer than {policy.segment_min_rows} rows or one class)"
        )
    return {
        "passed": not failed,
        "message": message,
        "groups": groups,
        "failed": len(failed),
        "skipped": skipped,
        "min_rows": policy.segment_min_rows,
        "segments": results,
    }


def check_scenarios(c: _Candidate) -> dict[str, Any]:
    scenarios = scenario_suite(c.spec.input_schema, c.typical())
    return run_scenarios(scenarios, c.validator, c.model, c.spec.output.threshold)


def check_latency(c: _Candidate, policy: GatePolicy) -> dict[str, Any]:
    """Single-row validate + predict, timed as the API runs it, after a short warm-up."""
    instance = c.typical()
    model, validator = c.model, c.validator

    def one() -> None:
        verdict = validator.check([instance])
        if not verdict.ok:
            raise GateInputError(f"the typical instance is rejected: {verdict.issues[0].message}")
        model.predict_rows(verdict.rows)

    for _ in range(min(LATENCY_WARMUP, policy.latency_runs)):
        one()
    times = np.empty(policy.latency_runs)
    for i in range(policy.latency_runs):
        start = time.perf_counter()
        one()
        times[i] = time.perf_counter() - start
    ms = times * 1000.0
    p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    passed = p99 <= policy.latency_p99_ms
    rel = "≤" if passed else ">"
    return {
        "passed": passed,
        "message": f"single-row validate+predict p99 {p99:.3f} ms {rel} budget "
        f"{policy.latency_p99_ms:g} ms over {policy.latency_runs} runs (p50 {p50:.3f} ms)",
        "runs": policy.latency_runs,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": float(ms.max()),
        "budget_p99_ms": policy.latency_p99_ms,
    }


def run_gate(
    spec: CandidateSpec,
    onnx_bytes: bytes,
    reference: pa.Table,
    champion: Card | None,
    champion_onnx: bytes | None,
    policy: GatePolicy,
    breaking_change: bool = False,
) -> GateReport:
    """Run every check on a candidate; a failed check is reported, never raised."""
    c = _Candidate(spec, onnx_bytes, reference)
    breaks = (
        schema_breaks(champion.input_schema, spec.input_schema) + _output_breaks(spec, champion)
        if champion is not None
        else []
    )
    checks = [
        _guarded("schema", lambda: check_schema(spec, champion, breaks, breaking_change)),
        _guarded("parity", lambda: check_parity(c, policy)),
        _guarded("metrics", lambda: check_metrics(c, champion, champion_onnx, not breaks, policy)),
        _guarded("segments", lambda: check_segments(c, policy)),
        _guarded("scenarios", lambda: check_scenarios(c)),
        _guarded("latency", lambda: check_latency(c, policy)),
    ]
    return GateReport(
        candidate={"name": spec.name, "run_id": spec.run_id},
        champion_version=champion.version if champion is not None else None,
        checks=checks,
        policy=policy,
        at=now_iso(),
        breaking_change=breaking_change,
    )


# ---------------------------------------------------------------------------------------------
# The validation step


@dataclass(frozen=True)
class GateRun:
    """A completed gate run: the report and where it was stored."""

    report: GateReport
    report_uri: str
    bundle: Bundle = field(repr=False)


def load_bundle(s3: Any, bucket: str, model: str, run_id: str) -> tuple[Bundle, pa.Table]:
    """The verified bundle and its reference table; anything unreadable is CandidateUnavailable."""
    try:
        bundle = read_bundle(s3, bucket, model, run_id)
    except ValidationError as exc:
        raise CandidateUnavailable(
            f"candidates/{model}/{run_id}/candidate.json is not a valid candidate spec: "
            f"{exc.error_count()} error(s)"
        ) from exc
    try:
        table = bundle.reference_table()
    except (pa.ArrowException, OSError) as exc:
        raise CandidateUnavailable(f"{bundle.uri}reference.parquet is not readable: {exc}") from exc
    return bundle, table


def load_champion(
    registry: RegistryReader, store: ModelStore, model: str
) -> tuple[Card | None, bytes | None]:
    """The production version's card and proven artifact, or (None, None) for a first version.

    An artifact that fails its integrity check raises ModelUnavailable: the gate does not
    quietly compare against a weaker figure when production itself is in doubt.
    """
    pointer = registry.pointer(model, "production")
    if pointer is None:
        return None, None
    card = registry.card(model, pointer.version)
    return card, store.fetch(card.artifact)


def validate_candidate(
    s3: Any,
    bucket: str,
    registry: RegistryReader,
    store: ModelStore,
    request: ValidationRequest,
    policy: GatePolicy,
) -> GateRun:
    """The validation step: read the bundle and the champion, gate, store `validation.json`."""
    bundle, table = load_bundle(s3, bucket, request.model, request.run_id)
    champion, champion_onnx = load_champion(registry, store, request.model)
    report = run_gate(
        bundle.spec,
        bundle.onnx_bytes,
        table,
        champion,
        champion_onnx,
        policy,
        breaking_change=request.breaking_change,
    )
    uri = write_report(s3, bundle, report.as_dict())
    return GateRun(report, uri, bundle)
