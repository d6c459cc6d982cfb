"""Registration inputs from files: tables, schemas, pipelines, ONNX with a parity reference."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, TARGET, to_model_frame
from ferry_core.onboarding.intake import (
    IntakeError,
    build_from_onnx,
    build_from_pipeline,
    infer_schema,
    load_pipeline,
    read_schema,
    read_table,
)
from ferry_core.store import sha256_hex


def test_csv_and_parquet_read_the_same_rows_with_provenance(tmp_path, fitted) -> None:
    _, train, _ = fitted
    train.to_csv(tmp_path / "t.csv", index=False)
    train.to_parquet(tmp_path / "t.parquet", index=False)
    csv, ref = read_table(str(tmp_path / "t.csv"))
    pq, _ = read_table(str(tmp_path / "t.parquet"))
    assert len(csv) == len(pq) == len(train)
    assert ref.sha256 == sha256_hex((tmp_path / "t.csv").read_bytes()) and ref.s3_version_id is None


def test_s3_tables_are_pinned_to_their_object_version(aws, boto, fitted) -> None:
    body = fitted[1].head(50).to_csv(index=False).encode()
    vid = boto["s3"].put_object(Bucket=aws.data_bucket, Key="train/t.csv", Body=body)["VersionId"]
    frame, ref = read_table(f"s3://{aws.data_bucket}/train/t.csv", boto["s3"])
    assert len(frame) == 50 and ref.s3_version_id == vid and ref.sha256 == sha256_hex(body)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("data.txt", b"a,b", "expected a .csv or .parquet"),
        ("empty.csv", b"a,b\n", "no rows"),
        ("bad.parquet", b"not parquet", "not a readable parquet"),
    ],
)
def test_bad_tables_get_a_clear_error(tmp_path, name, content, message) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(IntakeError, match=message):
        read_table(str(tmp_path / name))


def test_schema_is_derived_from_the_data(fitted) -> None:
    _, train, valid = fitted
    schema = infer_schema([train, valid], [f.name for f in CREDIT_RISK_SCHEMA.features])
    by_name = {f.name: f for f in schema.features}
    assert by_name["age"].type == "integer" and by_name["age"].minimum >= 18
    assert by_name["annual_income"].type == "number" and by_name["annual_income"].nullable
    assert by_name["purpose"].type == "category" and "car" in by_name["purpose"].categories
    assert by_name["prior_default"].type == "boolean"
    assert by_name["employment"].nullable is False


def test_schema_file_and_bad_schema(tmp_path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"input_schema": CREDIT_RISK_SCHEMA.model_dump()}))
    assert read_schema(str(tmp_path / "s.json")) == CREDIT_RISK_SCHEMA
    (tmp_path / "bad.json").write_text(json.dumps({"features": [{"name": "x", "type": "text"}]}))
    with pytest.raises(IntakeError, match="not a valid input schema"):
        read_schema(str(tmp_path / "bad.json"))


def test_pipeline_from_joblib_builds_with_parity(tmp_path, fitted) -> None:
    pipe, train, valid = fitted
    joblib.dump(pipe, tmp_path / "p.joblib")
    built = build_from_pipeline(
        load_pipeline(str(tmp_path / "p.joblib")),
        train,
        valid,
        TARGET,
        segments={"purpose": {"feature": "purpose"}},
    )
    assert built.parity["passed"] and built.parity["rows"] == len(valid)
    assert "car" in built.metrics["segments"]["purpose"]


def test_tight_parity_tolerance_is_reported(fitted) -> None:
    pipe, train, valid = fitted
    built = build_from_pipeline(pipe, train, valid, TARGET, parity_tolerance=1e-12)
    assert not built.parity["passed"] and built.parity["max_abs_diff"] > 1e-12


def test_not_a_model_and_wrong_target(tmp_path, fitted) -> None:
    joblib.dump({"not": "a model"}, tmp_path / "x.joblib")
    with pytest.raises(IntakeError, match="has no predict_proba"):
        load_pipeline(str(tmp_path / "x.joblib"))
    pipe, train, valid = fitted
    with pytest.raises(IntakeError, match="no target column 'label'"):
        build_from_pipeline(pipe, train, valid, "label")
    with pytest.raises(IntakeError, match="must be 0/1"):
        build_from_pipeline(pipe, train.assign(defaulted=train["age"]), valid, TARGET)


def test_onnx_with_reference_scores_is_parity_gated(fitted, built) -> None:
    """Given an ONNX file, its schema and validation rows carrying the source model's scores,
    the parity gate runs; without a reference column there is no validation result."""
    pipe, train, valid = fitted
    ref = pipe.predict_proba(to_model_frame(valid, CREDIT_RISK_SCHEMA))[:, 1]
    with_ref = build_from_onnx(
        built.onnx_bytes,
        CREDIT_RISK_SCHEMA,
        valid=valid.assign(ref=ref),
        train=train,
        target=TARGET,
        reference_column="ref",
    )
    assert with_ref.parity["passed"] and with_ref.metrics["overall"]["auc"] > 0.5
    assert set(with_ref.baseline) == {f.name for f in CREDIT_RISK_SCHEMA.features} | {"__score__"}
    wrong = build_from_onnx(
        built.onnx_bytes,
        CREDIT_RISK_SCHEMA,
        valid=valid.assign(ref=np.clip(ref + 0.05, 0, 1)),
        target=TARGET,
        reference_column="ref",
    )
    assert not wrong.parity["passed"]
    bare = build_from_onnx(built.onnx_bytes, CREDIT_RISK_SCHEMA)
    assert bare.parity == {} and bare.reference is None


def test_onnx_that_does_not_fit_its_schema_is_refused(built) -> None:
    other = CREDIT_RISK_SCHEMA.model_copy(update={"features": CREDIT_RISK_SCHEMA.features[:-1]})
    with pytest.raises(IntakeError, match="does not fit the schema"):
        build_from_onnx(built.onnx_bytes, other)
