"""Schema overrides: what the data scientist knows about an input column that the data hides.

Registration infers each column's schema from the data (type from the dtype, observed range,
categories, nullability). Overrides adjust it, two ways in, merged field by field (a `--feature`
field wins over the same field in the file):

- `--feature "NAME=TYPE[,OPTION]..."` (repeatable), OPTION one of `nullable`,
  `nullable=true|false`, `min=N`, `max=N` (`none`: unbounded) and
  `out_of_range=reject|clip_and_warn`. A feature name may hold spaces, commas and `=`, so the
  split rule is: NAME is everything before the LAST `=` that is followed by a known type and
  then a comma or the end. No option value is a type name, so the rule never cuts inside the
  options: `a=b,c=integer,min=0` is the integer feature `a=b,c` with minimum 0.
- `--schema-overrides FILE.json`: a partial input schema, `{"features": [{"name": ...,
  "maximum": 120}, ...]}` (or card-like `{"input_schema": {...}}`), any Feature field but the
  graph mapping; `null` removes an inferred bound.

Fields not overridden keep their inferred value (bounds found in the data stay
`clip_and_warn` unless `out_of_range` is given). An override is checked against the data: an
integer column holding 53.5, a value outside a declared bound or category, missing values in a
column declared not nullable, a minimum above the maximum and a name that is no input column
are refused, each in one sentence naming the column.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_core.card import Feature, FeatureType, OutOfRange
from ferry_core.errors import FerryError, validation_message

if TYPE_CHECKING:
    import pandas as pd

FEATURE_TYPES: tuple[str, ...] = get_args(FeatureType)
SPEC_HELP = (
    f"expected NAME=TYPE, TYPE one of {', '.join(FEATURE_TYPES)}, then options ,nullable "
    ",nullable=false ,min=N ,max=N ,out_of_range=reject|clip_and_warn"
)
_TYPE_AT = re.compile(rf"=({'|'.join(FEATURE_TYPES)})(?=,|$)")
_BOUNDS = {"min": "minimum", "max": "maximum"}
_TRUTH = {"true": True, "false": False}


class OverrideError(FerryError):
    """A schema override that is malformed or that the data contradicts."""

    code = "bad_input"


class FeatureOverride(BaseModel):
    """The fields of one feature that override the inferred ones; unset fields stay inferred."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: FeatureType | None = None
    nullable: bool | None = None
    minimum: float | None = Field(None, allow_inf_nan=False)
    maximum: float | None = Field(None, allow_inf_nan=False)
    out_of_range: OutOfRange | None = None
    categories: list[str] | None = None
    description: str | None = None

    def fields(self) -> dict[str, Any]:
        """The overridden fields (an explicit null bound or description counts: it removes)."""
        given = self.model_dump(exclude_unset=True, exclude={"name"})
        return {k: v for k, v in given.items() if v is not None or k in _NULLABLE_FIELDS}


_NULLABLE_FIELDS = ("minimum", "maximum", "description")


def parse_feature_spec(spec: str) -> FeatureOverride:
    """`NAME=TYPE[,OPTION]...` as the module docstring defines it."""
    matches = list(_TYPE_AT.finditer(spec))
    found = matches[-1] if matches else None
    if found is None or found.start() == 0:
        raise OverrideError(f"feature {spec!r}: {SPEC_HELP}")
    fields: dict[str, Any] = {"name": spec[: found.start()], "type": found.group(1)}
    tail = spec[found.end() :]  # empty, or a comma and the options
    for option in tail[1:].split(",") if tail else ():
        key, sep, value = option.partition("=")
        if key == "nullable" and (not sep or value in _TRUTH):
            field, parsed = "nullable", _TRUTH.get(value, True)
        elif key in _BOUNDS and sep:
            field, parsed = _BOUNDS[key], _number(spec, key, value)
        elif key == "out_of_range" and value in get_args(OutOfRange):
            field, parsed = key, value
        else:
            raise OverrideError(f"feature {spec!r}: unknown option {option!r}; {SPEC_HELP}")
        if field in fields:
            raise OverrideError(f"feature {spec!r}: {key} is given twice")
        fields[field] = parsed
    try:
        return FeatureOverride.model_validate(fields)
    except ValidationError as exc:
        raise OverrideError(f"feature {spec!r}: {validation_message(exc)}") from exc


def _number(spec: str, key: str, value: str) -> float | None:
    if value == "none":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise OverrideError(f"feature {spec!r}: {key} must be a finite number, not {value!r}")
    return number


def parse_feature_specs(specs: Iterable[str]) -> list[FeatureOverride]:
    """Every `--feature` spec, refusing a feature given twice."""
    return list(_by_name((parse_feature_spec(s) for s in specs), "--feature").values())


def overrides_from_json(data: bytes, source: str) -> list[FeatureOverride]:
    """A partial input schema: `{"features": [...]}`, `{"input_schema": {...}}` or a list."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise OverrideError(f"{source}: not JSON: {exc}") from exc
    if isinstance(doc, dict):
        doc = doc.get("input_schema", doc)
        doc = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(doc, list):
        raise OverrideError(f'{source}: expected {{"features": [{{"name": ..., ...}}, ...]}}')
    found = []
    for i, item in enumerate(doc):
        try:
            found.append(FeatureOverride.model_validate(item))
        except ValidationError as exc:
            raise OverrideError(f"{source}: features[{i}]: {validation_message(exc)}") from exc
    return list(_by_name(found, source).values())


def _by_name(overrides: Iterable[FeatureOverride], source: str) -> dict[str, FeatureOverride]:
    out: dict[str, FeatureOverride] = {}
    for o in overrides:
        if o.name in out:
            raise OverrideError(f"{source}: the feature {o.name!r} is given twice")
        out[o.name] = o
    return out


def merge(*layers: Iterable[FeatureOverride]) -> dict[str, FeatureOverride]:
    """One override per feature name; a later layer's fields win over an earlier one's."""
    out: dict[str, FeatureOverride] = {}
    for layer in layers:
        for o in layer:
            before = out[o.name].model_dump(exclude_unset=True) if o.name in out else {}
            out[o.name] = FeatureOverride.model_validate(
                {**before, **o.model_dump(exclude_unset=True)}
            )
    return out


def check_names(overrides: Iterable[str], columns: list[str]) -> None:
    """Refuse override names that are no input column, with the close matches of each."""
    unknown = []
    for name in overrides:
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
            hint = f" (close matches: {', '.join(map(repr, close))})" if close else ""
            unknown.append(f"{name!r}{hint}")
    if unknown:
        raise OverrideError(f"a schema override names no input column: {'; '.join(unknown)}")


def apply(inferred: Feature, override: FeatureOverride, column: pd.Series) -> Feature:
    """`inferred` with `override`'s fields, refused where the data contradicts the result.

    `inferred` must already be inferred as the override's type (`intake.infer_schema` does so).
    """
    name = inferred.name
    declared = override.fields()
    merged = {**inferred.model_dump(), **declared}
    low, high = declared.get("minimum"), declared.get("maximum")
    if low is not None and high is not None and low > high:
        raise OverrideError(f"column {name!r}: the minimum {low:g} is above the maximum {high:g}")
    problem = data_problem(merged, column)
    if problem:
        raise OverrideError(f"column {name!r} {problem}")
    try:
        return Feature.model_validate(merged)
    except ValidationError as exc:
        raise OverrideError(f"column {name!r}: {validation_message(exc)}") from exc


def data_problem(feature: dict[str, Any], column: pd.Series) -> str | None:
    """Why the data contradicts `feature`'s fields (a phrase after the column's name), or None."""
    missing = int(column.isna().sum())
    if missing and not feature.get("nullable"):
        return f"is declared not nullable but has {missing} missing value(s)"
    present = column.dropna()
    if feature["type"] == "boolean":
        odd = [v for v in present.unique().tolist() if v not in (True, False)]
        return f"is declared boolean but holds {odd[0]!r}" if odd else None
    if feature["type"] == "category":
        odd = sorted({str(v) for v in present} - set(feature.get("categories") or ()))
        return f"holds {odd[0]!r}, not one of its declared categories" if odd else None
    values = present.astype(float)
    low, high = feature.get("minimum"), feature.get("maximum")
    if low is not None and values.min() < low:
        return f"holds {values.min():g}, below its declared minimum {low:g}"
    if high is not None and values.max() > high:
        return f"holds {values.max():g}, above its declared maximum {high:g}"
    return None
