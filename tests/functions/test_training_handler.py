"""The training function under moto: labelled Parquet under training/{model}/ in, a candidate
bundle under candidates/{model}/{run_id}/ out, and the figures the state machine passes on."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from types import ModuleType

import pytest
from pydantic import ValidationError

from ferry_core.onboarding.builder import generate_credit_data
from ferry_core.retrain.candidate import read_bundle
from ferry_core.retrain.training import TrainingFailed
from ferry_core.store import sha256_hex
from ferry_local.events import LambdaContext
from ferry_local.handlers import load_handler

MODEL = "credit-risk"


@pytest.fixture
def training(aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("MODEL_BUCKET", aws.model_bucket)
    monkeypatch.setenv("DATA_BUCKET", aws.data_bucket)
    monkeypatch.setenv("REGISTRY_TABLE", aws.registry_table)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ferry-training")
    module = load_handler("training")
    module.client.cache_clear()
    yield module
    module.client.cache_clear()


def emf(out: str) -> dict[str, tuple[float, str | None]]:
    """metric → (value, its model dimension), from the EMF lines the function printed."""
    got: dict[str, tuple[float, str | None]] = {}
    for line in out.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for m in directive["Metrics"]:
                value = doc[m["Name"]]
                got[m["Name"]] = (value[0] if isinstance(value, list) else value, doc.get("model"))
    return got


def test_labelled_parquet_becomes_a_candidate_bundle(
    training: ModuleType, aws, boto, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Given 1,500 labelled rows as Parquet under training/credit-risk/ in the data bucket
    When the state machine invokes the training function with the model and a run id only
    Then it trains on the newest data there, writes the bundle under candidates/, returns the
        candidate URI, the data's URI and S3 version, the row count, parity and metrics, the
        bundle reads back verified, and TrainingRuns/TrainingRows are published for the model
    """
    buf = io.BytesIO()
    generate_credit_data(1500, seed=21).to_parquet(buf, index=False)
    body = buf.getvalue()
    key = f"training/{MODEL}/2024-06-01.parquet"
    version = boto["s3"].put_object(Bucket=aws.data_bucket, Key=key, Body=body)["VersionId"]
    requester = "arn:aws:sts::123456789012:assumed-role/Ferry-local-DataScientist/alice"
    event = {
        "model": MODEL,
        "run_id": "run-11",
        "params": {"n_estimators": 10},
        "requested_by": requester,
    }

    out = training.lambda_handler(event, LambdaContext("ferry-training"))

    assert out["candidate_uri"] == f"s3://{aws.model_bucket}/candidates/{MODEL}/run-11/"
    assert out["training_data"] == f"s3://{aws.data_bucket}/{key}"
    assert out["training_data_version"] == version
    assert (out["model"], out["run_id"], out["rows"]) == (MODEL, "run-11", 1500)
    assert out["parity_max_abs_diff"] < 1e-5
    assert out["metrics"]["rows"] == 375 and 0.5 < out["metrics"]["auc"] <= 1
    json.dumps(out)  # the state machine receives it as JSON

    bundle = read_bundle(boto["s3"], aws.model_bucket, MODEL, "run-11")
    assert bundle.uri == out["candidate_uri"]
    assert bundle.spec.lineage.training_data_sha256 == sha256_hex(body)
    assert bundle.spec.lineage.trained_by == requester  # the run's author (four eyes)
    assert bundle.spec.training["rows"] == 1500
    assert bundle.spec.metrics["overall"] == out["metrics"]
    assert {"__label__", "__reference_score__"} <= set(bundle.reference_table().column_names)
    assert emf(capsys.readouterr().out) == {
        "TrainingRuns": (1.0, MODEL),
        "TrainingRows": (1500.0, MODEL),
    }


def test_an_unknown_key_in_the_event_is_refused(training: ModuleType, aws, boto) -> None:
    with pytest.raises(ValidationError, match="extra"):
        training.lambda_handler(
            {"model": MODEL, "run_id": "run-12", "rows": 10}, LambdaContext("ferry-training")
        )
    listed = boto["s3"].list_objects_v2(Bucket=aws.model_bucket, Prefix="candidates/")
    assert listed.get("KeyCount", 0) == 0


def test_no_training_data_fails_the_step_with_the_reason(training: ModuleType, aws) -> None:
    with pytest.raises(TrainingFailed, match=f"no training data.*training/{MODEL}/"):
        training.lambda_handler({"model": MODEL, "run_id": "run-13"}, LambdaContext())
