"""Retraining (ferry_core/retrain/training.py): labelled data from S3 in, a measured candidate
out."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, TARGET, generate_credit_data
from ferry_core.retrain.candidate import DEFAULT_ENTRY_POINT, read_bundle
from ferry_core.retrain.training import (
    MIN_ROWS,
    CreditRiskTrainer,
    TrainingData,
    TrainingFailed,
    TrainingRequest,
    TrainingSettings,
    latest_training_object,
    load_trainer,
    read_training_data,
    run_request,
    train_candidate,
)
from ferry_core.store import sha256_hex

MODEL = "credit-risk"
FAST = {"n_estimators": 10}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_credit_data(1500, seed=5)


@pytest.fixture(scope="module")
def trained(frame: pd.DataFrame) -> Any:
    return train_candidate(CreditRiskTrainer(), TrainingData(frame, None, None, None), FAST)


def data(df: pd.DataFrame) -> TrainingData:
    return TrainingData(df, None, None, None)


def put(boto: dict[str, Any], bucket: str, key: str, body: bytes) -> str:
    return boto["s3"].put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]


def parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


class RaisingTrainer(CreditRiskTrainer):
    def fit(self, X: pd.DataFrame, y: np.ndarray, params: dict[str, Any]) -> Any:
        raise ValueError(f"cannot fit {len(X)} rows with {params}")


class UnconvertibleTrainer(CreditRiskTrainer):
    def fit(self, X: pd.DataFrame, y: np.ndarray, params: dict[str, Any]) -> Any:
        return object()  # not a pipeline: nothing skl2onnx can convert


# --- train_candidate ---------------------------------------------------------------------------


def test_a_candidate_is_trained_and_measured_on_the_validation_split(trained: Any) -> None:
    """
    Given 1,500 labelled rows
    When the credit-risk trainer fits on them
    Then the ONNX graph reproduces the pipeline (parity passed) on the 375 validation rows,
        the metrics are measured there, and the reference rows carry the source pipeline's
        scores and the labels
    """
    assert trained.parity["passed"] is True and trained.parity["rows"] == 375
    overall = trained.metrics["overall"]
    assert overall["rows"] == 375
    assert 0.6 < overall["auc"] <= 1.0
    assert {"accuracy", "brier", "log_loss", "positive_rate"} <= overall.keys()
    assert "age_band" in trained.metrics["segments"]
    ref = trained.reference
    assert {"__label__", "__reference_score__"} <= set(ref.columns)
    assert len(ref) == 375
    assert set(ref["__label__"].unique()) == {0, 1}
    assert ref["__reference_score__"].between(0, 1).all()
    assert set(trained.baseline) == {f.name for f in CREDIT_RISK_SCHEMA.features} | {"__score__"}


def test_the_split_is_deterministic(frame: pd.DataFrame, trained: Any) -> None:
    again = train_candidate(CreditRiskTrainer(), data(frame), FAST)
    assert again.reference["__label__"].tolist() == trained.reference["__label__"].tolist()
    assert again.metrics["overall"] == trained.metrics["overall"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["age", "employment"]), "lacks column.*age, employment"),
        (lambda df: df.drop(columns=[TARGET]), f"lacks column.*{TARGET}"),
        (lambda df: df.assign(**{TARGET: df[TARGET].replace(1, 2)}), "must be 0/1"),
        (
            lambda df: df.assign(**{TARGET: df[TARGET].astype(float).mask(df.index == 3)}),
            "must be 0/1 with no nulls",
        ),
        (lambda df: df.head(MIN_ROWS - 1), f"{MIN_ROWS - 1} labelled rows; at least {MIN_ROWS}"),
    ],
    ids=["missing-features", "missing-label", "label-2", "null-label", "too-few-rows"],
)
def test_unusable_training_data_is_refused(frame: pd.DataFrame, change: Any, message: str) -> None:
    with pytest.raises(TrainingFailed, match=message):
        train_candidate(CreditRiskTrainer(), data(change(frame)), FAST)


def test_a_trainer_that_raises_is_reported_with_its_cause(frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingFailed, match="trainer failed: ValueError: cannot fit") as exc:
        train_candidate(RaisingTrainer(), data(frame), FAST)
    assert isinstance(exc.value.__cause__, ValueError)


def test_a_trainer_whose_result_cannot_be_converted_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingFailed, match="could not be converted to ONNX"):
        train_candidate(UnconvertibleTrainer(), data(frame), FAST)


def test_a_trainers_own_ferry_error_passes_through(frame: pd.DataFrame) -> None:
    class Refusing(CreditRiskTrainer):
        def fit(self, X: pd.DataFrame, y: np.ndarray, params: dict[str, Any]) -> Any:
            raise TrainingFailed("the trainer's own reason")

    with pytest.raises(TrainingFailed, match=r"^the trainer's own reason$"):
        train_candidate(Refusing(), data(frame), FAST)


# --- load_trainer ------------------------------------------------------------------------------


def test_the_default_entry_point_loads_the_credit_risk_trainer() -> None:
    trainer = load_trainer(DEFAULT_ENTRY_POINT)
    assert isinstance(trainer, CreditRiskTrainer)
    assert trainer.target == TARGET


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("ferry_core.retrain.training", "is not 'module:attribute'"),
        (":CreditRiskTrainer", "is not 'module:attribute'"),
        ("ferry_core.no_such_module:Trainer", "cannot load trainer"),
        ("ferry_core.retrain.training:NoSuchTrainer", "cannot load trainer"),
        ("ferry_core.retrain.training:TRAINING_PREFIX", "has no 'schema'"),
    ],
)
def test_a_bad_entry_point_is_refused(entry_point: str, message: str) -> None:
    with pytest.raises(TrainingFailed, match=message):
        load_trainer(entry_point)


# --- reading the data from S3 ------------------------------------------------------------------


def test_csv_and_parquet_are_read_with_their_version_and_sha256(
    aws, boto, frame: pd.DataFrame
) -> None:
    """
    Given the same rows as CSV and as Parquet in the data bucket (the CSV overwritten once)
    When each is read
    Then the frame comes back with the S3 version id read and the sha256 of the bytes read
    """
    small = frame.head(300)
    csv = small.to_csv(index=False).encode()
    put(boto, aws.data_bucket, f"training/{MODEL}/a.csv", b"stale,rows\n1,2\n")
    csv_version = put(boto, aws.data_bucket, f"training/{MODEL}/a.csv", csv)
    pq_bytes = parquet(small)
    pq_version = put(boto, aws.data_bucket, f"training/{MODEL}/b.parquet", pq_bytes)

    from_csv = read_training_data(boto["s3"], f"s3://{aws.data_bucket}/training/{MODEL}/a.csv")
    from_pq = read_training_data(boto["s3"], f"s3://{aws.data_bucket}/training/{MODEL}/b.parquet")

    assert (from_csv.version_id, from_csv.sha256) == (csv_version, sha256_hex(csv))
    assert (from_pq.version_id, from_pq.sha256) == (pq_version, sha256_hex(pq_bytes))
    assert from_csv.uri == f"s3://{aws.data_bucket}/training/{MODEL}/a.csv"
    for got in (from_csv.frame, from_pq.frame):
        assert list(got.columns) == list(small.columns)
        assert len(got) == 300
        assert got[TARGET].tolist() == small[TARGET].tolist()
        assert got["annual_income"].isna().sum() == small["annual_income"].isna().sum()


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        (None, None, "does not exist"),
        ("rows.json", b'[{"age": 30}]', "neither .csv nor .parquet"),
        ("rows.parquet", b"not parquet at all", "cannot read training data"),
    ],
    ids=["missing", "json", "corrupt-parquet"],
)
def test_unreadable_training_objects_are_refused(
    aws, boto, key: str | None, body: bytes | None, message: str
) -> None:
    if key is not None:
        put(boto, aws.data_bucket, f"training/{MODEL}/{key}", body)
    uri = f"s3://{aws.data_bucket}/training/{MODEL}/{key or 'absent.csv'}"
    with pytest.raises(TrainingFailed, match=message):
        read_training_data(boto["s3"], uri)


def test_the_newest_csv_or_parquet_under_the_models_prefix_is_picked(aws, boto) -> None:
    """
    Given an older Parquet, then (a second later) a newer CSV, a newer non-data file, and
        newer files of other models (one whose name starts with this model's)
    Then the newer CSV is the training data: not the lexically last, not another model's
    """
    bucket = aws.data_bucket
    put(boto, bucket, f"training/{MODEL}/b-older.parquet", b"x")
    time.sleep(1.05)  # S3 LastModified has one-second resolution
    put(boto, bucket, f"training/{MODEL}/a-newer.csv", b"x")
    put(boto, bucket, f"training/{MODEL}/zz-notes.txt", b"x")
    put(boto, bucket, f"training/{MODEL}-v2/newest.csv", b"x")
    put(boto, bucket, "training/fraud/newest.parquet", b"x")
    assert latest_training_object(boto["s3"], bucket, MODEL) == (
        f"s3://{bucket}/training/{MODEL}/a-newer.csv"
    )


def test_no_training_data_is_refused(aws, boto) -> None:
    put(boto, aws.data_bucket, f"training/{MODEL}/README.txt", b"labels land here")
    with pytest.raises(TrainingFailed, match=f"nothing under s3://{aws.data_bucket}/training/"):
        latest_training_object(boto["s3"], aws.data_bucket, MODEL)


# --- the request ---------------------------------------------------------------------------------


def test_sagemaker_hyperparameters_become_the_request() -> None:
    """SageMaker passes every hyperparameter as a string: params as JSON, "null"/"" unset
    (an unset entry point: the model's own trainer)."""
    request = TrainingRequest.from_hyperparameters(
        {
            "model": MODEL,
            "run_id": "run-42",
            "training_data": "null",
            "entry_point": "",
            "params": json.dumps({"n_estimators": 10, "seed": 3}),
            "trigger": "drift",
        }
    )
    assert request.model == MODEL and request.run_id == "run-42"
    assert request.training_data is None
    assert request.entry_point is None
    assert request.params == {"n_estimators": 10, "seed": 3}
    assert (request.trigger, request.actor) == ("drift", "ferry-retrain")
    with pytest.raises(ValidationError):
        TrainingRequest.from_hyperparameters({"model": MODEL, "run_id": "r", "epochs": "3"})
    with pytest.raises(ValidationError):
        TrainingRequest.from_hyperparameters({"model": MODEL, "run_id": "../x"})


def test_run_request_writes_a_bundle_with_its_lineage(
    aws, boto, frame: pd.DataFrame, tmp_path
) -> None:
    """
    Given Parquet training data, a dependency lock file and a source commit in the settings
    When the training step runs
    Then the candidate bundle is written and reads back verified, with the data's URI, S3
        version and sha256, the lock's sha256, the commit and who triggered it as lineage
    """
    body = parquet(frame)
    version = put(boto, aws.data_bucket, f"training/{MODEL}/labels.parquet", body)
    uri = f"s3://{aws.data_bucket}/training/{MODEL}/labels.parquet"
    lock = tmp_path / "requirements.lock"
    lock.write_text("scikit-learn==1.5.0\n")
    settings = TrainingSettings.from_env(
        {
            "MODEL_BUCKET": aws.model_bucket,
            "DATA_BUCKET": aws.data_bucket,
            "REGISTRY_TABLE": aws.registry_table,
            "FERRY_LOCK_FILE": str(lock),
            "FERRY_SOURCE_COMMIT": "abc1234",
            "FERRY_SOURCE_DIRTY": "false",
            "UNRELATED": "ignored",
        }
    )
    request = TrainingRequest(
        model=MODEL,
        run_id="run-5",
        training_data=uri,
        params=FAST,
        actor="bob",
        trigger="drift",
        requested_by="alarm:Ferry-dev-model-credit-risk-drift",
    )

    out = run_request(boto["s3"], boto["dynamodb"], settings, request)

    assert out["candidate_uri"] == f"s3://{aws.model_bucket}/candidates/{MODEL}/run-5/"
    assert (out["training_data"], out["training_data_version"], out["rows"]) == (uri, version, 1500)
    assert out["parity_max_abs_diff"] < 1e-5
    assert out["metrics"]["rows"] == 375
    bundle = read_bundle(boto["s3"], aws.model_bucket, MODEL, "run-5")
    lineage = bundle.spec.lineage
    assert lineage.training_data_sha256 == sha256_hex(body)
    assert lineage.dependency_lock_sha256 == sha256_hex(lock.read_bytes())
    assert lineage.git_commit == "abc1234" and lineage.git_dirty is False
    # The run's author exactly (the four-eyes rule compares it with an approver's identity).
    assert lineage.trained_by == "alarm:Ferry-dev-model-credit-risk-drift"
    assert (lineage.trained_on, lineage.image_digest) == ("local", None)
    assert lineage.entry_point == DEFAULT_ENTRY_POINT and lineage.trained_at
    assert bundle.spec.training["params"] == FAST
    assert bundle.spec.metrics["parity"]["passed"] is True
