"""Batch rows reach the capture prefix: a sample of each committed run, capped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ferry_core.batch.keys import ObjectRef
from ferry_core.batch.run import BatchRunner
from ferry_core.batch.sample_files import applications, encode
from ferry_core.batch.settings import BatchSettings
from ferry_core.monitoring.capture import ROWS_PREFIX, read_capture
from ferry_core.registry.reader import RegistryReader
from ferry_core.serving.scoring import ScoringService
from ferry_core.store import ModelStore


@pytest.fixture
def service(registered: Any, aws: Any, boto: dict[str, Any], tmp_path: Path) -> ScoringService:
    registry = RegistryReader(boto["dynamodb"], aws.registry_table)
    return ScoringService(registry, ModelStore(boto["s3"], tmp_path / "models"))


def _runner(service: ScoringService, boto: dict[str, Any], rate: float, cap: int) -> BatchRunner:
    settings = BatchSettings(
        chunk_rows=128, csv_block_bytes=4096, capture_sample_rate=rate, capture_max_rows=cap
    )
    return BatchRunner(boto["s3"], service, settings)


def _captured(boto: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    listed = boto["s3"].list_objects_v2(Bucket=bucket, Prefix=f"{ROWS_PREFIX}credit-risk/")
    rows = []
    for obj in listed.get("Contents", []):
        body = boto["s3"].get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        rows += [json.loads(line) for line in body.splitlines()]
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_committed_run_leaves_a_capped_sample_of_its_scored_rows(
    fmt: str, service: ScoringService, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given 600 applications (some malformed) and capture at 50 % capped at 100 rows a file
    When the run commits
    Then 100 scored rows are captured with source "batch", the run as their reference, the
        scored version, the score and label the scored file has, and the drift reader reads
        them as it reads real-time capture
    """
    rows = applications(600, fmt, share=0.03)
    key = f"batch/incoming/credit-risk/cap.{fmt}"
    boto["s3"].put_object(Bucket=aws.data_bucket, Key=key, Body=encode(rows, fmt))
    manifest = _runner(service, boto, 0.5, 100).run(ObjectRef(aws.data_bucket, key))
    assert manifest["status"] == "succeeded"
    captured = _captured(boto, aws.data_bucket)
    assert len(captured) == 100
    assert {c["source"] for c in captured} == {"batch"}
    assert {c["version"] for c in captured} == {1}
    assert all(0.0 <= c["score"] <= 1.0 and c["label"] in (0, 1) for c in captured)
    assert all(c["label"] == int(c["score"] >= 0.5) for c in captured)
    assert all(set(c["features"]) >= {"age", "employment", "purpose"} for c in captured)
    now = time.time()
    read = read_capture(boto["s3"], aws.data_bucket, "credit-risk", now - 3600, now + 60)
    assert len(read) == 100


def test_no_sample_without_a_rate_and_none_from_a_failed_run(
    service: ScoringService, aws: Any, boto: dict[str, Any]
) -> None:
    good = "batch/incoming/credit-risk/a.csv"
    boto["s3"].put_object(
        Bucket=aws.data_bucket, Key=good, Body=encode(applications(200, "csv"), "csv")
    )
    assert _runner(service, boto, 0.0, 100).run(ObjectRef(aws.data_bucket, good))["status"] == (
        "succeeded"
    )
    assert _captured(boto, aws.data_bucket) == []
    bad = "batch/incoming/no-such-model/b.csv"  # the run fails: nothing captured
    boto["s3"].put_object(
        Bucket=aws.data_bucket, Key=bad, Body=encode(applications(200, "csv"), "csv")
    )
    assert _runner(service, boto, 1.0, 100).run(ObjectRef(aws.data_bucket, bad))["status"] == (
        "failed"
    )
    listed = boto["s3"].list_objects_v2(Bucket=aws.data_bucket, Prefix=ROWS_PREFIX)
    assert listed.get("KeyCount", 0) == 0
