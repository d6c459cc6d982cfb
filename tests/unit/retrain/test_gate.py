"""The validation gate: each check passes on a good candidate and fails on a candidate built to
fail it, with real (tiny) models, real ONNX graphs and the serving validator."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from ferry_core.card import Artifact, Card, Feature, InputSchema, Output
from ferry_core.onboarding.builder import (
    AGE_BANDS,
    CREDIT_RISK_SCHEMA,
    TARGET,
    build,
    build_credit_risk,
    credit_risk_pipeline,
    to_model_frame,
)
from ferry_core.registry.governance import validation_problem
from ferry_core.retrain.candidate import CandidateSpec, reference_parquet
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.reference import LABEL, REFERENCE_SCORE, roc_auc, typical_instance
from ferry_core.retrain.gate.report import CHECKS, GateReport
from ferry_core.retrain.gate.scenarios import Scenario, run_scenarios, scenario_suite
from ferry_core.retrain.gate.schema import schema_breaks
from ferry_core.retrain.gate.validate import run_gate
from ferry_core.serving.inference import OnnxModel
from ferry_core.serving.validator import InstanceValidator
from ferry_core.store import sha256_hex

FAST = GatePolicy(latency_runs=30)


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def candidate() -> Any:
    """A good retrained candidate (other data, more trees) whose every age band is above 0.6."""
    return build_credit_risk(rows=1500, n_estimators=20, seed=7)


@pytest.fixture(scope="module")
def worse(fitted: tuple[Any, Any, Any]) -> Any:
    """Trained on shuffled labels: converts and scores fine, ranks applicants at random."""
    _, train, valid = fitted
    pipe = credit_risk_pipeline(CREDIT_RISK_SCHEMA, n_estimators=10, seed=11)
    labels = np.random.default_rng(0).permutation(train[TARGET].to_numpy())
    pipe.fit(to_model_frame(train, CREDIT_RISK_SCHEMA), labels)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


def spec_of(built: Any, schema: InputSchema | None = None, **update: Any) -> CandidateSpec:
    """The spec `write_bundle` would write for `built` (optionally with another schema)."""
    ref = reference_parquet(built.reference)
    fields = {
        "name": "credit-risk",
        "run_id": "run-1",
        "input_schema": schema or built.schema,
        "output": Output(threshold=built.threshold),
        "metrics": dict(built.metrics),
        "baseline": built.baseline,
        "model_sha256": sha256_hex(built.onnx_bytes),
        "model_size": len(built.onnx_bytes),
        "reference_sha256": sha256_hex(ref),
        **update,
    }
    return CandidateSpec(**fields)


def table_of(built: Any) -> pa.Table:
    """The reference rows as validation reads them back (through Parquet)."""
    return pq.read_table(io.BytesIO(reference_parquet(built.reference)))


def card_of(built: Any, version: int = 1, schema: InputSchema | None = None, **update: Any) -> Card:
    return Card(
        name="credit-risk",
        version=version,
        input_schema=schema or built.schema,
        output=Output(threshold=built.threshold),
        artifact=Artifact(
            uri=f"s3://models/credit-risk/v{version}/model.onnx",
            sha256=sha256_hex(built.onnx_bytes),
            size=len(built.onnx_bytes),
        ),
        metrics=dict(built.metrics),
        **update,
    )


def with_feature(schema: InputSchema, name: str, **update: Any) -> InputSchema:
    """The schema with one feature changed (validated again, as a real card would be)."""
    feats = [
        {**f.model_dump(), **update} if f.name == name else f.model_dump() for f in schema.features
    ]
    return InputSchema.model_validate({"features": feats})


def check(report: GateReport, name: str) -> dict[str, Any]:
    (found,) = [c for c in report.checks if c["name"] == name]
    return found


def gate(
    built: Any,
    champion: Any | None,
    policy: GatePolicy = FAST,
    spec: CandidateSpec | None = None,
    table: pa.Table | None = None,
    onnx: bytes | None = None,
    champion_card: Card | None = None,
    breaking_change: bool = False,
) -> GateReport:
    card = champion_card or (card_of(champion) if champion is not None else None)
    return run_gate(
        spec or spec_of(built),
        onnx if onnx is not None else built.onnx_bytes,
        table if table is not None else table_of(built),
        card,
        champion.onnx_bytes if champion is not None else None,
        policy,
        breaking_change=breaking_change,
    )


def constant_onnx(schema: InputSchema, value: float) -> bytes:
    """A graph with the schema's inputs that answers `value` for every row, whatever it gets."""
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info(
            f.name, TensorProto.STRING if f.type == "category" else TensorProto.FLOAT, [None, 1]
        )
        for f in schema.features
    ]
    first = next(f.name for f in schema.features if f.type != "category")
    nodes = [
        helper.make_node("Shape", [first], ["n"], start=0, end=1),
        helper.make_node(
            "Constant", [], ["two"], value=helper.make_tensor("two", TensorProto.INT64, [1], [2])
        ),
        helper.make_node("Concat", ["n", "two"], ["shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["probabilities"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value]),
        ),
    ]
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph(nodes, "constant", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


# --- AUC -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, decimals", [(2, 6), (57, 1), (400, 2), (5000, 6)])
def test_auc_equals_sklearn_with_and_without_ties(n: int, decimals: int) -> None:
    """Given scores with many ties (rounded) and without, the rank AUC is sklearn's to 1e-12."""
    rng = np.random.default_rng(n)
    y = rng.random(n) < 0.3
    y[0], y[-1] = True, False
    scores = np.round(rng.random(n) * 0.6 + 0.3 * y, decimals)
    assert abs(roc_auc(y, scores) - roc_auc_score(y, scores)) <= 1e-12


def test_auc_is_undefined_for_one_class_or_a_non_finite_score() -> None:
    assert roc_auc([1, 1, 1], [0.1, 0.5, 0.9]) is None
    assert roc_auc([0, 1, 1], [0.1, math.nan, 0.9]) is None
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0 and roc_auc([0, 1], [0.5, 0.5]) == 0.5


# --- policy ----------------------------------------------------------------------------------


def test_policy_reads_its_environment_variables_and_refuses_nonsense() -> None:
    env = {
        "GATE_PARITY_TOLERANCE": "1e-4",
        "GATE_METRIC_TOLERANCE": "0.02",
        "GATE_SEGMENT_FLOOR": "0.55",
        "GATE_SEGMENT_MIN_ROWS": "50",
        "GATE_LATENCY_P99_MS": "25",
        "GATE_LATENCY_RUNS": "100",
        "MODEL_BUCKET": "ignored",
    }
    p = GatePolicy.from_env(env)
    assert p.as_dict() == {
        "parity_tolerance": 1e-4,
        "metric_tolerance": 0.02,
        "segment_floor": 0.55,
        "segment_min_rows": 50,
        "latency_p99_ms": 25.0,
        "latency_runs": 100,
    }
    assert GatePolicy.from_env({}) == GatePolicy()
    assert GatePolicy().as_dict()["parity_tolerance"] == 1e-5
    with pytest.raises(ValidationError):
        GatePolicy.from_env({"GATE_LATENCY_P99_MS": "0"})
    with pytest.raises(ValidationError):
        GatePolicy.from_env({"GATE_SEGMENT_FLOOR": "1.5"})


# --- the whole gate --------------------------------------------------------------------------


def test_a_good_candidate_passes_every_check_against_a_good_champion(candidate, built) -> None:
    """Given a retrained candidate and the production model, when gated with the default
    policy, every check passes, the champion is scored on the candidate's own rows, and the
    report is JSON that governance accepts as validation results."""
    report = gate(candidate, built, policy=GatePolicy())
    assert report.passed, report.summary()
    assert [c["name"] for c in report.checks] == list(CHECKS)
    metrics = check(report, "metrics")
    assert metrics["champion_source"] == "scored"
    assert metrics["rows"] == candidate.reference.shape[0]
    # The candidate's AUC on its reference rows is the one its build measured (with sklearn).
    assert metrics["candidate_auc"] == pytest.approx(candidate.metrics["overall"]["auc"], abs=1e-9)
    assert metrics["delta"] == pytest.approx(metrics["candidate_auc"] - metrics["champion_auc"])
    assert check(report, "latency")["runs"] == 300
    doc = report.as_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["passed"] is True and doc["source"] == "validation"
    assert doc["champion_version"] == 1 and doc["candidate"] == {
        "name": "credit-risk",
        "run_id": "run-1",
    }
    assert validation_problem(card_of(candidate, version=2, validation=doc)) is None
    assert report.summary().startswith("passed all 6 checks")


def test_a_first_version_passes_without_a_champion(candidate) -> None:
    report = gate(candidate, None)
    assert report.passed, report.summary()
    assert report.champion_version is None
    assert "first version" in check(report, "schema")["message"]
    assert "first version" in check(report, "metrics")["message"]
    assert "no champion" in report.summary()


def test_a_worse_candidate_is_rejected_on_metrics(worse, built) -> None:
    """Given a candidate trained on shuffled labels, when gated against the champion on the
    same rows, the metrics check fails with both AUCs and the delta, and the summary says so."""
    report = gate(worse, built)
    metrics = check(report, "metrics")
    assert not report.passed and report.failed_checks[0] == "metrics"
    assert metrics["champion_source"] == "scored"
    assert metrics["delta"] < -FAST.metric_tolerance
    assert metrics["champion_auc"] == pytest.approx(built.metrics["overall"]["auc"], abs=1e-9)
    assert "worse than tolerance" in metrics["message"]
    assert check(report, "parity")["passed"] and check(report, "scenarios")["passed"]
    assert report.summary().startswith("failed metrics")
    assert "metrics" in validation_problem(card_of(worse, 2, validation=report.as_dict()))


def test_the_champion_is_compared_on_the_rows_it_accepts(candidate, built) -> None:
    """Given a champion whose schema refused ages under 30 (the candidate widened it), when
    gated, both AUCs are measured on the rows the champion would have accepted."""
    narrow = with_feature(built.schema, "age", minimum=30)
    report = gate(candidate, built, champion_card=card_of(built, schema=narrow))
    metrics = check(report, "metrics")
    young = int((candidate.reference["age"] < 30).sum())
    assert check(report, "schema")["passed"]  # widening is compatible
    assert metrics["champion_refused_rows"] == young > 0
    assert metrics["rows"] == len(candidate.reference) - young
    keep = (candidate.reference["age"] >= 30).to_numpy()
    ref = candidate.reference[keep]
    scores = OnnxModel(card_of(candidate), candidate.onnx_bytes).score(
        {
            f.name: (
                ref[f.name].to_numpy(dtype=object).reshape(-1, 1)
                if f.type == "category"
                else ref[f.name].to_numpy(dtype=np.float32).reshape(-1, 1)
            )
            for f in candidate.schema.features
        }
    )
    assert metrics["candidate_auc"] == pytest.approx(roc_auc(ref[LABEL], scores), abs=1e-12)


# --- schema ----------------------------------------------------------------------------------

S = CREDIT_RISK_SCHEMA


@pytest.mark.parametrize(
    "new, expected",
    [
        (InputSchema(features=S.features[1:]), "age: feature removed"),
        (with_feature(S, "age", type="number"), "age: type changed from integer to number"),
        (with_feature(S, "annual_income", nullable=False), "annual_income: no longer nullable"),
        (
            with_feature(S, "purpose", categories=["car", "home"]),
            "purpose: categories no longer accepted: education, business, personal, medical",
        ),
        (with_feature(S, "age", minimum=21), "age: minimum raised from 18 to 21"),
        (with_feature(S, "loan_amount", maximum=1000), "loan_amount: maximum lowered"),
        (with_feature(S, "open_accounts", minimum=None), None),
        (with_feature(S, "open_accounts", maximum=500), None),
        (with_feature(S, "age", out_of_range="clip_and_warn"), None),
        (with_feature(S, "debt_to_income", out_of_range="reject"), "now rejected"),
        (with_feature(S, "purpose", categories=[*S.feature("purpose").categories, "x"]), None),
        (with_feature(S, "employment", nullable=True), None),
        (
            InputSchema(features=[*S.features, Feature(name="region", type="number")]),
            "region: new required feature",
        ),
        (
            InputSchema(
                features=[*S.features, Feature(name="region", type="number", nullable=True)]
            ),
            None,
        ),
    ],
)
def test_schema_breaks_are_what_an_existing_client_would_feel(
    new: InputSchema, expected: str | None
) -> None:
    breaks = schema_breaks(S, new)
    if expected is None:
        assert breaks == []
    else:
        assert len(breaks) == 1 and expected in breaks[0], breaks


def test_a_schema_break_fails_the_gate_and_lists_every_break(candidate, built) -> None:
    schema = with_feature(
        with_feature(candidate.schema, "purpose", categories=["car", "home"]),
        "annual_income",
        nullable=False,
    )
    report = gate(candidate, built, spec=spec_of(candidate, schema=schema))
    schema_check = check(report, "schema")
    assert not schema_check["passed"] and len(schema_check["breaks"]) == 2
    assert "purpose: categories" in schema_check["message"]
    assert "annual_income: no longer nullable" in schema_check["message"]
    assert report.failed_checks[0] == "schema"


def test_a_narrowed_range_fails_unless_flagged_as_a_breaking_change(candidate, built) -> None:
    """Given a candidate whose age minimum went from 18 to 21, the gate fails it; with the
    breaking_change flag the schema check passes, noting the break, and the metrics check falls
    back to the champion card's AUC (the champion is not scored against another contract)."""
    spec = spec_of(candidate, schema=with_feature(candidate.schema, "age", minimum=21))
    refused = gate(candidate, built, spec=spec)
    assert refused.failed_checks == ["schema"]
    assert "age: minimum raised from 18 to 21" in check(refused, "schema")["message"]
    accepted = gate(candidate, built, spec=spec, breaking_change=True)
    assert accepted.passed, accepted.summary()
    schema_check = check(accepted, "schema")
    assert "accepted by the breaking_change flag" in schema_check["message"]
    assert schema_check["breaking_change"] is True and accepted.as_dict()["breaking_change"]
    metrics = check(accepted, "metrics")
    assert metrics["champion_source"] == "card" and "champion's card" in metrics["message"]
    assert metrics["champion_auc"] == built.metrics["overall"]["auc"]


def test_a_changed_positive_label_is_a_break(candidate, built) -> None:
    spec = spec_of(candidate, output=Output(positive_label=0))
    report = gate(candidate, built, spec=spec)
    assert not check(report, "schema")["passed"]
    assert "positive label changed from 1 to 0" in check(report, "schema")["message"]


# --- parity ----------------------------------------------------------------------------------


def test_parity_fails_when_the_graph_does_not_reproduce_the_reference_scores(candidate) -> None:
    """Given reference scores nudged by 1e-3 on every tenth row, parity fails and counts them."""
    table = table_of(candidate)
    ref = table.column(REFERENCE_SCORE).to_numpy().copy()
    ref[::10] += 1e-3
    table = table.set_column(
        table.schema.get_field_index(REFERENCE_SCORE), REFERENCE_SCORE, pa.array(ref)
    )
    report = gate(candidate, None, table=table)
    parity = check(report, "parity")
    assert report.failed_checks == ["parity"]
    assert parity["rows_over_tolerance"] == len(ref[::10])
    assert parity["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)
    assert report.summary().startswith("failed parity")


def test_parity_passes_on_the_real_reference(candidate) -> None:
    parity = check(gate(candidate, None), "parity")
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-5
    assert parity["max_abs_diff"] == pytest.approx(candidate.parity["max_abs_diff"], abs=1e-7)


def test_missing_labels_fail_the_metric_checks_with_a_clear_message(candidate, built) -> None:
    table = table_of(candidate)
    report = gate(candidate, built, table=table.drop_columns([LABEL]))
    assert report.failed_checks == ["metrics", "segments"]
    assert "no __label__ column" in check(report, "metrics")["message"]
    labels = table.column(LABEL).to_pylist()
    labels[3] = None
    nulls = table.set_column(
        table.schema.get_field_index(LABEL), LABEL, pa.array(labels, pa.int64())
    )
    assert "have no label" in check(gate(candidate, built, table=nulls), "metrics")["message"]


def test_an_unloadable_graph_fails_every_check_that_needs_it(candidate, built) -> None:
    report = gate(candidate, built, onnx=b"not an onnx graph")
    assert report.failed_checks == ["parity", "metrics", "segments", "scenarios", "latency"]
    messages = {check(report, n)["message"] for n in report.failed_checks}
    assert messages == {
        "the candidate's graph cannot be served: the model file is not a valid ONNX protobuf: "
        "unsupported wire type 6"
    }
    assert check(report, "schema")["passed"]


# --- segments --------------------------------------------------------------------------------


def test_segment_aucs_are_the_ones_the_build_measured(candidate) -> None:
    segments = check(gate(candidate, None), "segments")
    assert segments["passed"] and segments["groups"] == 4 and segments["skipped"] == 0
    built_segments = candidate.metrics["segments"]["age_band"]
    for group, entry in segments["segments"]["age_band"].items():
        assert entry["rows"] == built_segments[group]["rows"]
        assert entry["auc"] == pytest.approx(built_segments[group]["auc"], abs=1e-9)


def test_a_segment_under_the_floor_fails_and_names_the_group(candidate, built) -> None:
    """Given the policy's floor above one age band's AUC, exactly the bands below it fail."""
    aucs = {g: s["auc"] for g, s in candidate.metrics["segments"]["age_band"].items()}
    lowest, second = sorted(aucs.values())[:2]
    floor = (lowest + second) / 2  # the worst band is below it, the others are not
    (worst,) = [g for g, a in aucs.items() if a < floor]
    report = gate(candidate, built, policy=FAST.model_copy(update={"segment_floor": floor}))
    segments = check(report, "segments")
    assert report.failed_checks == ["segments"] and segments["failed"] == 1
    assert f"age_band={worst}" in segments["message"]
    assert segments["segments"]["age_band"][worst]["status"] == "failed"


def test_a_segment_definition_may_carry_its_own_floor(candidate) -> None:
    metrics = {
        **candidate.metrics,
        "segment_definitions": {
            "age_band": {**AGE_BANDS, "floor": 0.99},
            "employment": {"feature": "employment"},
        },
    }
    report = gate(candidate, None, spec=spec_of(candidate, metrics=metrics))
    segments = check(report, "segments")
    ages = segments["segments"]["age_band"]
    assert all(e["status"] == "failed" and e["floor"] == 0.99 for e in ages.values())
    assert "age_band=18-29 AUC" in segments["message"]
    employment = segments["segments"]["employment"]
    for e in employment.values():  # the policy's floor (0.6) applies to the other segment
        want = (
            "skipped"
            if e["rows"] < FAST.segment_min_rows or e["positives"] in (0, e["rows"])
            else "passed"
            if e["auc"] >= 0.6
            else "failed"
        )
        assert e["status"] == want, e
    assert segments["failed"] == 4 + sum(e["status"] == "failed" for e in employment.values())
    assert set(employment) == set(CREDIT_RISK_SCHEMA.feature("employment").categories)
    assert sum(e["rows"] for e in employment.values()) == len(candidate.reference)
    assert all(e["floor"] == FAST.segment_floor for e in employment.values())


def test_small_segment_groups_are_skipped_not_failed(candidate) -> None:
    policy = FAST.model_copy(update={"segment_floor": 0.99, "segment_min_rows": 1000})
    segments = check(gate(candidate, None, policy=policy), "segments")
    assert segments["passed"] and segments["skipped"] == segments["groups"] == 4
    assert all(e["status"] == "skipped" for e in segments["segments"]["age_band"].values())


# --- scenarios -------------------------------------------------------------------------------


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
