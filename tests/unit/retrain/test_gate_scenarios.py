"""The gate's scenarios and latency check (ferry_core/retrain/gate/scenarios.py, latency.py),
with real (tiny) models and real ONNX graphs."""

from __future__ import annotations

import math

import pytest

from ferry_core.card import Artifact, Card, Feature, InputSchema
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA
from ferry_core.retrain.gate.reference import typical_instance
from ferry_core.retrain.gate.scenarios import Scenario, run_scenarios, scenario_suite
from ferry_core.serving.inference import OnnxModel
from ferry_core.serving.validator import InstanceValidator
from ferry_core.store import sha256_hex
from tests.unit.retrain.gate_support import (
    FAST,
    check,
    constant_onnx,
    gate,
    spec_of,
)

S = CREDIT_RISK_SCHEMA


def _by_name(scenarios: list[Scenario]) -> dict[str, Scenario]:
    return {s.name: s for s in scenarios}


def test_the_scenario_suite_expects_the_documented_verdicts() -> None:
    """The expectations, written out by hand from DESIGN.md §3.1/3.2 for the demo schema."""
    typical = typical_instance(S)
    suite = _by_name(scenario_suite(S, typical))
    rejected = {
        "age:below_minimum": ("age", "out_of_range"),
        "age:above_maximum": ("age", "out_of_range"),
        "age:extreme_+1e30": ("age", "out_of_range"),
        "age:fractional": ("age", "wrong_type"),
        "age:wrong_type_string": ("age", "wrong_type"),
        "age:nan": ("age", "not_finite"),
        "age:omitted": ("age", "missing"),
        "age:null": ("age", "missing"),
        "debt_to_income:extreme_+1e308": ("debt_to_income", "out_of_range"),
        "debt_to_income:-inf": ("debt_to_income", "not_finite"),
        "purpose:unknown_category": ("purpose", "unknown_category"),
        "purpose:wrong_type_number": ("purpose", "wrong_type"),
        "employment:omitted": ("employment", "missing"),
        "prior_default:wrong_type_number": ("prior_default", "wrong_type"),
        "prior_default:wrong_type_string": ("prior_default", "wrong_type"),
        "unknown_field": ("__ferry_unknown_field__", "unknown_field"),
    }
    for name, issue in rejected.items():
        assert suite[name].rejected == {issue}, name
    warned = ["debt_to_income:above_maximum", "debt_to_income:extreme_+1e30"]
    warned += ["debt_to_income:below_minimum", "debt_to_income:extreme_-1e30"]
    for name in warned:
        assert not suite[name].rejected and suite[name].warned == {"debt_to_income"}, name
    scored = ["typical", "all_nullable_null", "annual_income:null", "annual_income:omitted"]
    scored += ["purpose:null", "age:at_minimum", "age:at_maximum", "purpose:category=medical"]
    scored += ["prior_default:true", "debt_to_income:at_maximum"]
    for name in scored:
        assert not suite[name].rejected and not suite[name].warned, name
    assert suite["age:below_minimum"].instance["age"] == 17
    assert "age" not in suite["age:omitted"].instance
    assert suite["all_nullable_null"].instance["purpose"] is None


def test_the_suite_matches_the_validator_on_unbounded_and_odd_schemas() -> None:
    """Given features with no bounds, one bound, clipping and nullable booleans and categories,
    every generated expectation is the verdict the serving validator gives (a constant model
    scores whatever is accepted)."""
    schema = InputSchema(
        features=[
            Feature(name="count", type="integer"),
            Feature(name="ratio", type="number", minimum=0, out_of_range="clip_and_warn"),
            Feature(name="huge", type="number", maximum=1e38),
            Feature(name="half", type="integer", minimum=0.5, maximum=9.5, nullable=True),
            Feature(name="flag", type="boolean", nullable=True),
            Feature(name="kind", type="category", categories=["a", "b"], nullable=True),
        ]
    )
    typical = typical_instance(schema)
    assert typical == {"count": 0, "ratio": 0.0, "huge": 1e38, "half": 5, "flag": False,
                       "kind": "a"}  # fmt: skip
    suite = scenario_suite(schema, typical)
    by_name = _by_name(suite)
    assert not by_name["count:extreme_+1e30"].rejected  # no bounds: any float32 integer
    assert by_name["count:extreme_+1e308"].rejected == {("count", "out_of_range")}
    assert by_name["ratio:extreme_+1e30"].warned == set()  # no maximum: nothing to clip to
    assert by_name["ratio:below_minimum"].warned == {"ratio"}
    assert by_name["half:below_minimum"].instance["half"] == -1  # a whole number below 0.5
    assert by_name["half:at_minimum"].instance["half"] == 1
    card = Card(
        name="odd",
        version=1,
        input_schema=schema,
        artifact=Artifact(uri="s3://b/k", sha256="0" * 64, size=1),
    )
    model = OnnxModel(card, constant_onnx(schema, 0.25))
    result = run_scenarios(suite, InstanceValidator(schema), model, threshold=0.5)
    assert result["passed"], result["details"]
    assert result["scenarios"] == len(suite) and result["scored"] > 10


def test_a_good_model_gets_every_documented_verdict(candidate) -> None:
    scenarios = check(gate(candidate, None), "scenarios")
    assert scenarios["passed"] and scenarios["mismatches"] == 0
    assert scenarios["scenarios"] == scenarios["scored"] + scenarios["rejected"] > 100


def test_a_scenario_whose_verdict_differs_is_listed() -> None:
    """Given expectations the validator does not meet, each one is a listed mismatch."""
    typical = typical_instance(S)
    card = Card(
        name="credit-risk",
        version=1,
        input_schema=S,
        artifact=Artifact(uri="s3://b/k", sha256="0" * 64, size=1),
    )
    model = OnnxModel(card, constant_onnx(S, 0.25))
    wrong = [
        Scenario("claims_rejected", typical, rejected=frozenset({("age", "out_of_range")})),
        Scenario("claims_scored", {**typical, "purpose": "boat"}),
        Scenario("claims_warning", typical, warned=frozenset({"debt_to_income"})),
        Scenario("right", typical),
    ]
    result = run_scenarios(wrong, InstanceValidator(S), model, threshold=0.5)
    got = {d["scenario"]: d["got"] for d in result["details"]}
    assert not result["passed"] and result["mismatches"] == 3
    assert got == {
        "claims_rejected": "scored",
        "claims_scored": "rejected: purpose unknown_category",
        "claims_warning": "scored with warnings on: none",
    }


@pytest.mark.parametrize(
    "value, problem", [(1.5, "not a probability in [0, 1]"), (math.nan, "non-finite score")]
)
def test_a_model_answering_outside_0_1_fails_the_scenarios(
    candidate, value: float, problem: str
) -> None:
    """Given a graph that answers 1.5 (or NaN) whatever it is sent, every scenario that should
    be scored is a mismatch, and parity fails too."""
    onnx = constant_onnx(candidate.schema, value)
    spec = spec_of(candidate, model_sha256=sha256_hex(onnx), model_size=len(onnx))
    report = gate(candidate, None, spec=spec, onnx=onnx)
    scenarios = check(report, "scenarios")
    assert {"parity", "scenarios"} <= set(report.failed_checks)
    assert scenarios["mismatches"] == scenarios["scored"] > 0
    assert all(problem in d["got"] for d in scenarios["details"])


# --- latency ---------------------------------------------------------------------------------


def test_latency_over_budget_fails(candidate) -> None:
    policy = FAST.model_copy(update={"latency_p99_ms": 1e-6, "latency_runs": 20})
    report = gate(candidate, None, policy=policy)
    latency = check(report, "latency")
    assert report.failed_checks == ["latency"]
    assert latency["runs"] == 20 and latency["p99_ms"] > 1e-6 and latency["p50_ms"] > 0
    assert "budget 1e-06 ms" in latency["message"]
