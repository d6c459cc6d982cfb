"""Batch files whose headers hold real column names (spaces, commas, non-ASCII) round-trip."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ferry_core.batch.keys import ObjectRef
from ferry_core.batch.run import BatchRunner
from ferry_core.batch.settings import BatchSettings
from ferry_core.card import Lineage
from ferry_core.monitoring.drift import DriftThresholds, drift_report
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.registration import register_built
from ferry_core.registry.writer import RegistryWriter
from ferry_core.serving.scoring import ScoringService
from ferry_core.store import ModelStore

MODEL = "breast-cancer"


@pytest.fixture
def runner(aws: Any, boto: dict[str, Any], named_built: Any, tmp_path: Path) -> BatchRunner:
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    card = register_built(named_built, MODEL, boto["s3"], aws.model_bucket, writer, Lineage())
    writer.set_stage(MODEL, "production", card.version, None, actor="tests")
    registry = RegistryReader(boto["dynamodb"], aws.registry_table)
    service = ScoringService(registry, ModelStore(boto["s3"], tmp_path / "models"))
    return BatchRunner(boto["s3"], service, BatchSettings(chunk_rows=64, csv_block_bytes=4096))


def _encode(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    return frame.to_json(orient="records", lines=True, force_ascii=False).encode()


def _decode(body: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(body))
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(body))
    return pd.read_json(io.BytesIO(body), lines=True)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_named_columns_score_and_come_back_under_their_names(
    fmt: str,
    runner: BatchRunner,
    aws: Any,
    boto: dict[str, Any],
    named_frames: tuple[Any, Any, Any],
) -> None:
    """
    Given a file of the model's rows under headers `mean radius`, `Ünïcode col`, `a,b`, with
        one row whose `a,b` is an unknown category
    When the batch run scores it
    Then rows in = scored + rejected, the rejected row names `a,b`, and the scored file's
        headers are the input's, unchanged, followed by the score columns
    """
    _, _, valid = named_frames
    frame = valid.drop(columns="target").head(50).copy()
    frame.loc[7, "a,b"] = "medium"
    key = f"batch/incoming/{MODEL}/named.{fmt}"
    boto["s3"].put_object(Bucket=aws.data_bucket, Key=key, Body=_encode(frame, fmt))

    manifest = runner.run(ObjectRef(aws.data_bucket, key))

    assert manifest["status"] == "succeeded", manifest
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_rejected"]) == (50, 49, 1)
    get = boto["s3"].get_object
    rejected = get(Bucket=aws.data_bucket, Key=manifest["outputs"]["rejected"])["Body"].read()
    (reject,) = [json.loads(line) for line in rejected.splitlines()]
    assert reject["problems"][0]["field"] == "a,b"
    scored = _decode(
        get(Bucket=aws.data_bucket, Key=f"batch/scored/{MODEL}/named.{fmt}")["Body"].read(), fmt
    )
    assert list(scored.columns)[: len(frame.columns)] == list(frame.columns)
    assert len(scored) == 49 and scored["score"].between(0, 1).all()


def test_drift_is_keyed_by_the_feature_names(
    named_built: Any, named_frames: tuple[Any, Any, Any]
) -> None:
    from ferry_core.card import Artifact, Card

    _, _, valid = named_frames
    card = Card(
        name=MODEL,
        version=1,
        input_schema=named_built.schema,
        artifact=Artifact(uri="s3://m/model.onnx", sha256="0" * 64, size=1),
        baseline=named_built.baseline,
    )
    rows = [
        {"features": r, "score": 0.5, "source": "api"}
        for r in valid.drop(columns="target").to_dict(orient="records")
    ]
    report = drift_report(card, rows, DriftThresholds(min_samples=50), (0.0, 3600.0))
    assert {f.feature for f in report.features} >= {"mean radius", "Ünïcode col", "a,b"}
