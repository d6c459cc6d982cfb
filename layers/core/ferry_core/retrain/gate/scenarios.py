"""The `scenarios` check: a suite generated from the input schema (in range, at and
past the bounds, missing, null, wrong type, extreme, not finite, unknown category and field)
gets exactly the verdict DESIGN.md §3.1/3.2 documents, through `InstanceValidator` and
`OnnxModel` as the API runs them, and every scored row a finite score in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ferry_core.card import Feature, InputSchema
from ferry_core.errors import FerryError
from ferry_core.retrain.gate.reference import CandidateUnderTest, int_if_exact
from ferry_core.retrain.gate.report import MAX_LISTED
from ferry_core.serving.inference import OnnxModel
from ferry_core.serving.validator import FLOAT32_MAX, InstanceValidator

UNKNOWN_FIELD = "__ferry_unknown_field__"
UNKNOWN_CATEGORY = "__ferry_unknown_category__"


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
        sent = int_if_exact(v) if integer and math.isfinite(v) and v.is_integer() else v
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


def check_scenarios(c: CandidateUnderTest) -> dict[str, Any]:
    scenarios = scenario_suite(c.spec.input_schema, c.typical())
    return run_scenarios(scenarios, c.validator, c.model, c.spec.output.threshold)
