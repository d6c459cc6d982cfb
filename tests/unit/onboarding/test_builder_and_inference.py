"""The ONNX graph scores what the sklearn pipeline scores, through the serving encoding."""

from __future__ import annotations

import numpy as np
import pytest

from ferry_core.card import Artifact, Card, Feature, InputSchema, Output
from ferry_core.errors import ModelUnavailable
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, records, to_model_frame
from ferry_core.serving.inference import ModelPool, OnnxModel


def _card(schema: InputSchema = CREDIT_RISK_SCHEMA, **output: object) -> Card:
    return Card(
        name="credit-risk",
        version=1,
        input_schema=schema,
        output=Output(**output),
        artifact=Artifact(uri="s3://b/k", sha256="0" * 64, size=1),
    )


def test_parity_is_measured_and_passes(built) -> None:
    assert built.parity["passed"]
    assert built.parity["rows"] == 400
    assert built.parity["max_abs_diff"] < 1e-5


def test_serving_path_matches_sklearn_row_by_row(built, fitted) -> None:
    pipe, _, valid = fitted
    model = OnnxModel(_card(), built.onnx_bytes)
    scores, labels = model.predict_rows(records(valid, CREDIT_RISK_SCHEMA))
    expected = pipe.predict_proba(to_model_frame(valid, CREDIT_RISK_SCHEMA))[:, 1]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, (expected >= 0.5).astype(int))


def test_nulls_are_scored_like_sklearn_scores_them(built, fitted) -> None:
    pipe, _, valid = fitted
    rows = records(valid.head(20), CREDIT_RISK_SCHEMA)
    for r in rows:
        r["annual_income"] = r["credit_history_years"] = r["purpose"] = None
    frame = valid.head(20).copy()
    frame["annual_income"] = frame["credit_history_years"] = np.nan
    frame["purpose"] = None
    expected = pipe.predict_proba(to_model_frame(frame, CREDIT_RISK_SCHEMA))[:, 1]
    scores = OnnxModel(_card(), built.onnx_bytes).predict_rows(rows)[0]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_threshold_decides_the_label(built, fitted) -> None:
    rows = records(fitted[2].head(50), CREDIT_RISK_SCHEMA)
    scores, labels = OnnxModel(_card(threshold=0.2), built.onnx_bytes).predict_rows(rows)
    np.testing.assert_array_equal(labels, (scores >= 0.2).astype(int))


def test_baselines_and_metrics_are_complete(built) -> None:
    for f in CREDIT_RISK_SCHEMA.features:
        b = built.baseline[f.name]
        shares = b.bin_shares if b.kind == "numeric" else [*b.shares.values(), b.null_share]
        assert sum(shares) == pytest.approx(1.0)
    assert built.baseline["__score__"].kind == "numeric"
    assert {"auc", "accuracy", "brier", "log_loss"} <= set(built.metrics["overall"])
    assert set(built.metrics["segments"]["age_band"]) == {"18-29", "30-44", "45-59", "60-100"}


def test_card_schema_that_does_not_match_the_graph_is_refused(built) -> None:
    schema = InputSchema(features=[Feature(name="age", type="integer")])
    with pytest.raises(ModelUnavailable, match="do not match"):
        OnnxModel(_card(schema), built.onnx_bytes)


def test_card_type_that_does_not_match_the_graph_is_refused(built) -> None:
    feats = [
        f.model_copy(
            update={"type": "category", "categories": ["a"], "minimum": None, "maximum": None}
        )
        if f.name == "age"
        else f
        for f in CREDIT_RISK_SCHEMA.features
    ]
    with pytest.raises(ModelUnavailable, match="graph input 'age'"):
        OnnxModel(_card(InputSchema(features=feats)), built.onnx_bytes)


def test_missing_probability_output_is_refused(built) -> None:
    with pytest.raises(ModelUnavailable, match="no output"):
        OnnxModel(_card(probability_output="proba"), built.onnx_bytes)


def test_unloadable_bytes_are_unavailable(built) -> None:
    with pytest.raises(ModelUnavailable):
        OnnxModel(_card(), built.onnx_bytes[: len(built.onnx_bytes) // 2])


def test_pool_loads_each_version_once_and_evicts_the_oldest(built) -> None:
    loads: list[int] = []

    def loader(card: Card) -> OnnxModel:
        loads.append(card.version)
        return OnnxModel(card, built.onnx_bytes)

    pool = ModelPool(loader, capacity=2)
    cards = [_card().model_copy(update={"version": v}) for v in (1, 2, 3)]
    for c in (*cards, cards[2], cards[0]):
        pool.get(c)
    assert loads == [1, 2, 3, 1]
