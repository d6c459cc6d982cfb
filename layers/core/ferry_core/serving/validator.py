"""Instance validation: one input schema → one compiled pydantic validator, reused per version.

Real-time, batch and candidate validation all call `InstanceValidator.check`, so one record
gets one verdict wherever it is scored. The caller decides what a problem means: the API
rejects the whole request, batch scoring rejects just that row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from ferry_core.card import Feature, InputSchema

# Every numeric feature goes to onnxruntime as float32: a value it cannot represent is out of
# range whatever the schema says, so it can never become an inf inside the graph.
FLOAT32_MAX = 3.4028234663852886e38

Problem = Literal[
    "missing", "wrong_type", "out_of_range", "unknown_category", "unknown_field", "not_finite"
]

_TYPE_WORD = {"number": "a number", "integer": "an integer", "boolean": "true or false"}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


@dataclass(frozen=True)
class Issue:
    """One problem with one field of one instance (a detail of a 422 response)."""

    instance: int
    field: str | None
    problem: Problem
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "field": self.field,
            "problem": self.problem,
            "message": self.message,
        }


@dataclass
class Verdict:
    """The outcome for a list of instances: accepted rows (with warnings) and problems."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    row_index: list[int] = field(default_factory=list)
    warnings: list[list[dict[str, Any]]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def _field_type(feature: Feature) -> Any:
    """The strict pydantic type of one feature; bounds are hard only under `reject`."""
    if feature.type == "category":
        return Literal[tuple(feature.categories or ())]  # type: ignore[misc]
    if feature.type == "boolean":
        return Annotated[bool, Field(strict=True)]
    hard = feature.out_of_range == "reject"
    lo = feature.minimum if hard and feature.minimum is not None else -FLOAT32_MAX
    hi = feature.maximum if hard and feature.maximum is not None else FLOAT32_MAX
    number = Annotated[float, Field(strict=True, ge=lo, le=hi, allow_inf_nan=False)]
    if feature.type == "integer":
        # 30 and 30.0 are the same integer: JSON encoders and columnar readers (an integer
        # column with nulls arrives as float64) disagree on which to write. The check is exact
        # (pydantic's multiple_of=1 has a tolerance and would accept 1e-10).
        return Annotated[number, AfterValidator(_whole)]
    return number


def _whole(value: float) -> float:
    if not value.is_integer():
        raise PydanticCustomError("not_whole", "not a whole number")
    return value


class InstanceValidator:
    """Validates instances (dicts of raw feature values) against one input schema.

    Built once per model version: compiling the pydantic core schema costs milliseconds,
    checking an instance costs microseconds.
    """

    def __init__(self, schema: InputSchema) -> None:
        self.schema = schema
        self._features = {f.name: f for f in schema.features}
        fields: dict[str, Any] = {}
        for f in schema.features:
            t = _field_type(f)
            fields[f.name] = NotRequired[t | None] if f.nullable else t
        instance_type = TypedDict("Instance", fields)  # type: ignore[operator]
        instance_type.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self._one = TypeAdapter(instance_type)
        self._many = TypeAdapter(list[instance_type])  # type: ignore[valid-type]
        self._nullable = [f.name for f in schema.features if f.nullable]
        self._clipped = [
            f
            for f in schema.features
            if f.out_of_range == "clip_and_warn"
            and (f.minimum is not None or f.maximum is not None)
        ]

    def check(self, instances: Sequence[Any]) -> Verdict:
        """Validate every instance; rows that pass are returned complete (nulls filled in)."""
        try:
            rows = self._many.validate_python(instances)
        except ValidationError as exc:
            return self._partial(instances, exc)
        verdict = Verdict(rows=rows, row_index=list(range(len(rows))))
        self._finish(verdict)
        return verdict

    def _partial(self, instances: Sequence[Any], exc: ValidationError) -> Verdict:
        issues = [self._issue(e) for e in exc.errors(include_url=False)]
        bad = {i.instance for i in issues}
        verdict = Verdict(issues=sorted(issues, key=lambda i: (i.instance, i.field or "")))
        for idx, raw in enumerate(instances):
            if idx not in bad:
                verdict.rows.append(self._one.validate_python(raw))
                verdict.row_index.append(idx)
        self._finish(verdict)
        return verdict

    def _finish(self, verdict: Verdict) -> None:
        """Fill omitted nullable fields with None; clip `clip_and_warn` values, with a warning."""
        rows = verdict.rows
        verdict.warnings = [[] for _ in rows]
        if self._nullable:
            width = len(self._features)
            for row in rows:
                if len(row) != width:
                    for name in self._nullable:
                        row.setdefault(name, None)
        for f in self._clipped:
            name, lo, hi = f.name, f.minimum, f.maximum
            for row, warns in zip(rows, verdict.warnings, strict=True):
                v = row[name]
                if v is None:
                    continue
                if lo is not None and v < lo:
                    row[name] = float(lo)
                    warns.append(_clip_warning(f, v, lo, "below the minimum"))
                elif hi is not None and v > hi:
                    row[name] = float(hi)
                    warns.append(_clip_warning(f, v, hi, "above the maximum"))

    def _issue(self, err: dict[str, Any]) -> Issue:
        loc = err["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else 0
        name = loc[1] if len(loc) > 1 and isinstance(loc[1], str) else None
        kind = err["type"]
        value = err.get("input")
        if name is None:
            return Issue(index, None, "wrong_type", "an instance must be a JSON object of features")
        if kind == "extra_forbidden":
            return Issue(index, name, "unknown_field", f"{name!r} is not a feature of this model")
        feature = self._features.get(name)
        if feature is None:  # pragma: no cover - pydantic only reports declared fields here
            return Issue(index, name, "unknown_field", f"{name!r} is not a feature of this model")
        if kind == "missing":
            return Issue(index, name, "missing", f"{name} is required")
        if value is None:
            return Issue(index, name, "missing", f"{name} is null but the feature is not nullable")
        numeric = feature.type in ("number", "integer")
        if isinstance(value, float) and not math.isfinite(value) and feature.type != "category":
            return Issue(
                index, name, "not_finite", f"{name} must be a finite number, got {_show(value)}"
            )
        if kind in _RANGE_ERRORS or (
            numeric and isinstance(value, int) and not isinstance(value, bool)
        ):
            return Issue(index, name, "out_of_range", _range_message(feature, value))
        if kind == "literal_error" and isinstance(value, str):
            allowed = ", ".join(feature.categories or [])
            return Issue(
                index, name, "unknown_category", f"{name}: {_show(value)} is not one of: {allowed}"
            )
        expected = _TYPE_WORD.get(feature.type, "one of the categories (a string)")
        got = _json_type(value)
        return Issue(index, name, "wrong_type", f"{name} must be {expected}, got {got}")


def _range_message(feature: Feature, value: Any) -> str:
    lo, hi = feature.minimum, feature.maximum
    if feature.out_of_range != "reject" or (lo is None and hi is None):
        limit = f"±{FLOAT32_MAX:.3g}"
        return f"{feature.name}: {_show(value)} is outside the representable range ({limit})"
    span = f"[{_fmt(lo)}, {_fmt(hi)}]"
    return f"{feature.name}: {_show(value)} is outside the allowed range {span}"


def _show(value: Any) -> str:
    """A short, safe rendering of a client's value (huge ints cannot even be str()-ed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fmt(x: float | None) -> str:
    if x is None:
        return "…"
    return str(int(x)) if float(x).is_integer() else str(x)


def _clip_warning(f: Feature, value: Any, bound: float, where: str) -> dict[str, Any]:
    return {
        "field": f.name,
        "problem": "out_of_range",
        "message": f"{f.name}: {_show(value)} is {where} {_fmt(bound)}; clipped to {_fmt(bound)}",
    }


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return _show(value)
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
