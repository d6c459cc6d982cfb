"""The model store: fetch an artifact by S3 URI and version id, prove its sha256, cache it.

S3 returns whatever bytes the object holds; only the sha256 recorded at registration says
they are the bytes that were validated. Every load checks it, from S3 or from the local
cache, and a mismatch is `ModelUnavailable`, never a crash and never a silent load.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ferry_core.card import Artifact
from ferry_core.errors import ModelUnavailable

MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key` into (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return bucket, key


class ModelStore:
    """Reads artifacts from S3 (a client passed in) through a local, integrity-checked cache."""

    def __init__(self, s3_client: Any, cache_dir: str | os.PathLike[str]) -> None:
        self._s3 = s3_client
        self._cache_dir = Path(cache_dir)

    def fetch(self, artifact: Artifact) -> bytes:
        """Return the artifact's bytes, proven to hash to `artifact.sha256`."""
        cached = self._cache_dir / f"{artifact.sha256}.onnx"
        if cached.is_file():
            data = cached.read_bytes()
            if sha256_hex(data) == artifact.sha256:
                return data
            cached.unlink(missing_ok=True)  # a corrupted cache entry: fetch again from S3
        data = self._download(artifact)
        digest = sha256_hex(data)
        if digest != artifact.sha256:
            raise ModelUnavailable(
                f"integrity check failed for {artifact.uri}: sha256 {digest[:12]}… "
                f"does not match the registered {artifact.sha256[:12]}…"
            )
        self._write_cache(cached, data)
        return data

    def _download(self, artifact: Artifact) -> bytes:
        try:
            bucket, key = parse_s3_uri(artifact.uri)
        except ValueError as exc:
            raise ModelUnavailable(str(exc)) from exc
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if artifact.s3_version_id:
            kwargs["VersionId"] = artifact.s3_version_id
        try:
            obj = self._s3.get_object(**kwargs)
            if obj.get("ContentLength", 0) > MAX_ARTIFACT_BYTES:
                raise ModelUnavailable(f"artifact {artifact.uri} is larger than the serving limit")
            return obj["Body"].read()
        except ModelUnavailable:
            raise
        except (
            Exception
        ) as exc:  # botocore ClientError, connection errors: all mean "not servable now"
            raise ModelUnavailable(f"cannot read artifact {artifact.uri}: {exc}") from exc

    def _write_cache(self, path: Path, data: bytes) -> None:
        """Write atomically so a concurrent reader never sees half a file."""
        try:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._cache_dir, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            Path(tmp).replace(path)
        except OSError:
            pass  # the cache is an optimisation: a read-only or full /tmp must not stop serving
