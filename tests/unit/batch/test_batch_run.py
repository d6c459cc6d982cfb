"""A batch run under moto: real files in; scored, rejected and manifest out; no row lost."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ferry_core.batch.keys import ObjectRef
from ferry_core.batch.run import BatchRunner
from ferry_core.batch.sample_files import applications, encode
from ferry_core.batch.settings import BatchSettings
from ferry_core.registry.reader import RegistryReader
from ferry_core.serving.scoring import ScoringService
from ferry_core.store import ModelStore

N = 600


@pytest.fixture
def service(registered: Any, aws: Any, boto: dict[str, Any], tmp_path: Path) -> ScoringService:
    registry = RegistryReader(boto["dynamodb"], aws.registry_table)
    return ScoringService(registry, ModelStore(boto["s3"], tmp_path / "models"))


@pytest.fixture
def runner(service: ScoringService, boto: dict[str, Any]) -> BatchRunner:
    return BatchRunner(boto["s3"], service, BatchSettings(chunk_rows=128, csv_block_bytes=4096))


def upload(boto: dict[str, Any], bucket: str, key: str, body: bytes, **extra: Any) -> ObjectRef:
    boto["s3"].put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return ObjectRef(bucket, key)


def read(boto: dict[str, Any], bucket: str, key: str) -> bytes:
    return boto["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()


def scored_rows(fmt: str, body: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return pacsv.read_csv(io.BytesIO(body)).to_pylist()
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(body)).to_pylist()
    return [json.loads(line) for line in body.decode().splitlines()]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_row_is_scored_or_rejected_with_the_api_problem(
    fmt: str, runner: BatchRunner, service: ScoringService, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given a file of applications with ~2% malformed rows of every kind its format allows
    When the batch run scores it
    Then the manifest succeeds with rows_in = rows_scored + rows_rejected; each malformed row is
        rejected (row number, raw row, the API's problem code) and every other row is scored
        exactly as the real-time API scores it
    """
    rows = applications(N, fmt, share=0.03)
    obj = upload(
        boto, aws.data_bucket, f"batch/incoming/credit-risk/2024/apps.{fmt}", encode(rows, fmt)
    )

    manifest = runner.run(obj)

    assert manifest["status"] == "succeeded", manifest
    assert (manifest["rows_in"], manifest["model"]["version"]) == (N, 1)
    assert manifest["rows_scored"] + manifest["rows_rejected"] == N
    stored = json.loads(read(boto, aws.data_bucket, "batch/manifests/credit-risk/2024/apps.json"))
    assert stored == manifest
    assert stored["input"]["sha256"] and stored["input"]["etag"]

    rejects = [
        json.loads(x)
        for x in read(boto, aws.data_bucket, manifest["outputs"]["rejected"]).splitlines()
    ]
    expected = {i + 1: r.expect for i, r in enumerate(rows) if r.expect}
    assert {r["row"]: r["problems"][0]["problem"] for r in rejects} == expected
    assert len({r.kind for r in rows if r.kind}) >= 5

    scored = scored_rows(
        fmt, read(boto, aws.data_bucket, f"batch/scored/credit-risk/2024/apps.{fmt}")
    )
    assert sorted(s["row"] for s in scored) == [i + 1 for i, r in enumerate(rows) if not r.expect]
    assert {s["model_version"] for s in scored} == {1}
    valid = [r.record for r in rows if not r.expect]
    realtime = [p["score"] for k in range(0, len(valid), 500)
                for p in service.predict("credit-risk", valid[k:k + 500]).predictions]  # fmt: skip
    np.testing.assert_allclose([s["score"] for s in scored], realtime, atol=1e-6)
    assert [s["label"] for s in scored] == [int(x >= 0.5) for x in realtime]


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("batch/incoming/no-such-model/a.csv", b"age\n1\n", "no model named"),
        ("batch/incoming/credit-risk/empty.csv", b"", "the file is empty"),
        ("batch/incoming/credit-risk/header.csv", b"age,colour\n1,red\n", "colour"),
        ("batch/incoming/credit-risk/noheader.csv", b"age,loan_amount\n", "missing required"),
        ("batch/incoming/credit-risk/rows.jsonl", b"", "no data rows"),
        ("batch/incoming/credit-risk/bad.parquet", b"PAR1 not really", "Parquet"),
        ("batch/incoming/credit-risk@7/a.csv", b"age\n1\n", "no version 7"),
        ("batch/incoming/credit-risk/a.txt", b"age\n1\n", "file type"),
        ("batch/incoming/Bad_Name/a.csv", b"age\n1\n", "not a model name"),
    ],
)
def test_a_file_that_cannot_be_scored_gets_a_failed_manifest_with_the_reason(
    key: str, body: bytes, reason: str, runner: BatchRunner, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given an unknown model or version, an empty or corrupt file, a header off the schema, or
        a name batch scoring cannot route
    When it is run
    Then a manifest with status failed says why, and no scored or rejected file is left
    """
    manifest = runner.run(upload(boto, aws.data_bucket, key, body))

    assert manifest["status"] == "failed"
    assert reason in manifest["reason"]
    stored = json.loads(read(boto, aws.data_bucket, manifest["outputs"]["manifest"]))
    assert stored["status"] == "failed" and stored["reason"] == manifest["reason"]
    listed = boto["s3"].list_objects_v2(Bucket=aws.data_bucket, Prefix="batch/scored/")
    assert listed.get("KeyCount", 0) == 0


def test_version_pinned_by_prefix_or_tag(
    runner: BatchRunner, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given uploads pinned by an @version prefix and by the ferry-model-version tag
    When they run
    Then the manifest says which version was used and how it was chosen
    """
    body = encode(applications(20, "csv", share=0), "csv")
    by_prefix = runner.run(
        upload(boto, aws.data_bucket, "batch/incoming/credit-risk@1/p.csv", body)
    )
    by_tag = runner.run(
        upload(
            boto,
            aws.data_bucket,
            "batch/incoming/credit-risk/t.csv",
            body,
            Tagging="ferry-model-version=1",
        )
    )
    by_default = runner.run(upload(boto, aws.data_bucket, "batch/incoming/credit-risk/d.csv", body))
    bad_tag = runner.run(
        upload(
            boto,
            aws.data_bucket,
            "batch/incoming/credit-risk/x.csv",
            body,
            Tagging="ferry-model-version=abc",
        )
    )
    assert by_prefix["model"] == {"name": "credit-risk", "version": 1, "selected_by": "prefix"}
    assert by_tag["model"]["selected_by"] == "tag"
    assert by_default["model"]["selected_by"] == "production"
    assert by_prefix["outputs"]["scored"] == "batch/scored/credit-risk/p.csv"
    assert bad_tag["status"] == "failed" and "ferry-model-version" in bad_tag["reason"]


def test_a_redelivery_of_a_finished_upload_rewrites_nothing(
    runner: BatchRunner, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given an upload already scored
    When the same object version is run again (an at-least-once redelivery)
    Then the stored manifest comes back and no output is written again
    """
    obj = upload(
        boto,
        aws.data_bucket,
        "batch/incoming/credit-risk/r.csv",
        encode(applications(50, "csv"), "csv"),
    )
    first = runner.run(obj)
    versions = boto["s3"].list_object_versions(Bucket=aws.data_bucket, Prefix="batch/")["Versions"]

    again = runner.run(obj)

    assert again == {**first, "duplicate": True}
    assert (
        boto["s3"].list_object_versions(Bucket=aws.data_bucket, Prefix="batch/")["Versions"]
        == versions
    )


def test_a_new_upload_at_the_same_key_is_scored_again(
    runner: BatchRunner, aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given a scored file, then a new, corrupt upload at the same key
    When the new version runs
    Then its manifest is failed and the old version's results are no longer beside it
    """
    key = "batch/incoming/credit-risk/same.csv"
    assert (
        runner.run(upload(boto, aws.data_bucket, key, encode(applications(30, "csv"), "csv")))[
            "status"
        ]
        == "succeeded"
    )
    failed = runner.run(upload(boto, aws.data_bucket, key, b"not,a,header\n"))
    assert failed["status"] == "failed"
    with pytest.raises(boto["s3"].exceptions.NoSuchKey):
        boto["s3"].get_object(Bucket=aws.data_bucket, Key="batch/scored/credit-risk/same.csv")
