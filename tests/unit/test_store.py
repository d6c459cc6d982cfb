"""The model store proves every artifact's sha256 before it can be loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferry_core.card import Artifact
from ferry_core.errors import ModelUnavailable
from ferry_core.store import ModelStore, parse_s3_uri, sha256_hex

DATA = b"onnx bytes stand-in"


def _artifact(
    aws: Any, boto: dict[str, Any], data: bytes = DATA, key: str = "models/m/v1/model.onnx"
) -> Artifact:
    vid = boto["s3"].put_object(Bucket=aws.model_bucket, Key=key, Body=data)["VersionId"]
    return Artifact(
        uri=f"s3://{aws.model_bucket}/{key}",
        s3_version_id=vid,
        sha256=sha256_hex(DATA),
        size=len(DATA),
    )


def test_fetch_returns_verified_bytes_and_caches_them(aws, boto, tmp_path: Path) -> None:
    store = ModelStore(boto["s3"], tmp_path)
    artifact = _artifact(aws, boto)
    assert store.fetch(artifact) == DATA
    assert (tmp_path / f"{artifact.sha256}.onnx").read_bytes() == DATA
    boto["s3"].delete_bucket_policy(Bucket=aws.model_bucket)  # any call: S3 not needed again
    assert ModelStore(object(), tmp_path).fetch(artifact) == DATA  # served from cache, no S3


def test_bytes_that_do_not_match_the_registered_sha_are_refused(aws, boto, tmp_path: Path) -> None:
    artifact = _artifact(aws, boto, data=b"tampered")
    with pytest.raises(ModelUnavailable, match="integrity check failed"):
        ModelStore(boto["s3"], tmp_path).fetch(artifact)
    assert not list(tmp_path.glob("*.onnx"))  # nothing unverified is cached


def test_the_pinned_s3_version_is_read_not_the_latest(aws, boto, tmp_path: Path) -> None:
    artifact = _artifact(aws, boto)
    key = parse_s3_uri(artifact.uri)[1]
    boto["s3"].put_object(Bucket=aws.model_bucket, Key=key, Body=b"overwritten later")
    assert ModelStore(boto["s3"], tmp_path).fetch(artifact) == DATA


def test_corrupted_cache_entry_is_refetched(aws, boto, tmp_path: Path) -> None:
    artifact = _artifact(aws, boto)
    (tmp_path / f"{artifact.sha256}.onnx").write_bytes(b"bit rot")
    assert ModelStore(boto["s3"], tmp_path).fetch(artifact) == DATA


@pytest.mark.parametrize("uri", ["s3://ferry-local-models/models/none.onnx", "http://x/y", "s3://"])
def test_unreadable_artifacts_are_unavailable_not_crashes(
    aws, boto, tmp_path: Path, uri: str
) -> None:
    artifact = Artifact(uri=uri, sha256="0" * 64, size=1)
    with pytest.raises(ModelUnavailable):
        ModelStore(boto["s3"], tmp_path).fetch(artifact)


def test_unwritable_cache_does_not_stop_serving(aws, boto, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    artifact = _artifact(aws, boto)
    assert ModelStore(boto["s3"], blocker / "cache").fetch(artifact) == DATA
