"""The validation gate: each check passes on a good candidate and fails on a candidate built to
fail it, with real (tiny) models, real ONNX graphs and the serving validator."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from ferry_core.card import Feature, InputSchema, Output
from ferry_core.onboarding.builder import (
    AGE_BANDS,
    CREDIT_RISK_SCHEMA,
)
from ferry_core.registry.governance import validation_problem
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.reference import LABEL, REFERENCE_SCORE, roc_auc
from ferry_core.retrain.gate.report import CHECKS
from ferry_core.retrain.gate.schema import schema_breaks
from ferry_core.serving.inference import OnnxModel
from tests.unit.retrain.gate_support import (
    FAST,
    NO_SPEED_BUDGET_MS,
    card_of,
    check,
    gate,
    spec_of,
    table_of,
    with_feature,
)

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
    policy (but no speed budget), every check passes, the champion is scored on the
    candidate's own rows, and the report is JSON that governance accepts as validation
    results."""
    report = gate(candidate, built, policy=GatePolicy(latency_p99_ms=NO_SPEED_BUDGET_MS))
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
        "the candidate's graph cannot be served: the model file is not a valid ONNX protobuf "
        "(malformed, or nested deeper than protobuf allows): Error parsing message with type "
        "'onnx.ModelProto': Wire format was corrupt"
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
