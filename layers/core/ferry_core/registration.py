"""Register a built model: artifact and card to the versioned model bucket, card to the registry.

Objects are written with `If-None-Match: *` (never overwritten) and S3's own SHA-256 checksum
(the upload is verified in transit); the version id S3 returns is what the card pins.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from ferry_core.card import Artifact, Card, Lineage, Output
from ferry_core.errors import FerryError
from ferry_core.registry import RegistryWriter, card_json, now_iso
from ferry_core.store import sha256_hex


class RegistrationRefused(FerryError):
    """A candidate failed a registration gate (parity, schema); nothing was registered."""

    code = "registration_refused"


def model_prefix(name: str, version: int) -> str:
    return f"models/{name}/v{version}"


def _put(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> str | None:
    resp = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        IfNoneMatch="*",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256_hex(body))).decode(),
    )
    return resp.get("VersionId")


def register_built(
    built: Any,
    name: str,
    s3: Any,
    bucket: str,
    writer: RegistryWriter,
    lineage: Lineage,
    description: str | None = None,
) -> Card:
    """Write a `BuiltModel` as the next version of `name`; refuses one that failed parity."""
    if not built.parity.get("passed"):
        raise RegistrationRefused(
            f"ONNX-vs-sklearn parity failed: max abs diff {built.parity['max_abs_diff']:.3g} "
            f"> tolerance {built.parity['tolerance']:.3g}"
        )
    version = writer.allocate_version(name)
    prefix = model_prefix(name, version)
    model_key, ref_key = f"{prefix}/model.onnx", f"{prefix}/reference.parquet"
    model_vid = _put(s3, bucket, model_key, built.onnx_bytes, "application/octet-stream")
    buf = io.BytesIO()
    built.reference.to_parquet(buf, index=False)
    ref_bytes = buf.getvalue()
    _put(s3, bucket, ref_key, ref_bytes, "application/vnd.apache.parquet")
    card = Card(
        name=name,
        version=version,
        description=description,
        input_schema=built.schema,
        output=Output(threshold=built.threshold),
        artifact=Artifact(
            uri=f"s3://{bucket}/{model_key}",
            s3_version_id=model_vid,
            sha256=sha256_hex(built.onnx_bytes),
            size=len(built.onnx_bytes),
            reference_uri=f"s3://{bucket}/{ref_key}",
            reference_sha256=sha256_hex(ref_bytes),
        ),
        lineage=lineage.model_copy(update={"registered_at": lineage.registered_at or now_iso()}),
        metrics={**built.metrics, "parity": built.parity},
        baseline=built.baseline,
    )
    _put(s3, bucket, f"{prefix}/card.json", card_json(card), "application/json")
    writer.put_version(card)
    return card
