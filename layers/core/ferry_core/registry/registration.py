"""Register a model: artifact and card to the versioned model bucket, card to the registry.

Objects are written with `If-None-Match: *` (never overwritten) and S3's own SHA-256 checksum
(the upload is verified in transit); the version id S3 returns is what the card pins.
Registration records its own checks (parity, schema, metrics) as the card's `validation`, which
governance requires before a version may be promoted (to staging; production also needs a pass
of the validation gate against the current champion, started after registration). The parity
reference rows are stored beside the artifact (`reference.parquet`) for that gate.

A candidate bundle (a retraining run's, or one `ferry register` built on the user's machine)
is registered by the governance function through `ferry_core.retrain.register`, on these
helpers; `register_built` writes the registry only, for bootstrapping and tests.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from ferry_core.card import Artifact, Card, Lineage, Output
from ferry_core.clock import now_iso
from ferry_core.errors import FerryError
from ferry_core.registry.governance import Governance, Outcome
from ferry_core.registry.writer import RegistryWriter, card_json
from ferry_core.store import sha256_hex
from ferry_core.trainer_files import TrainerFiles, with_trainer


class RegistrationRefused(FerryError):
    """A candidate failed a registration gate (parity, schema); nothing was registered."""

    code = "registration_refused"


def model_prefix(name: str, version: int) -> str:
    return f"models/{name}/v{version}"


def put_object(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> str | None:
    """Create an object that must not exist yet, checksummed in transit; its version id."""
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


def registration_checks(built: Any) -> dict[str, Any] | None:
    """The checks registration itself ran, recorded on the card as `validation`.

    parity (ONNX vs the source model's scores on the validation rows), schema (the graph's
    inputs and outputs match the input schema: the build loads it through the serving code),
    metrics (computed on the validation rows). Without a parity reference (an ONNX file
    registered without source scores) there is no complete gate run: `None`, and governance
    refuses to promote the version until the validation pipeline records results.
    """
    return quick_checks(built.parity, built.metrics, len(built.schema.features))


def quick_checks(
    parity: dict[str, Any] | None, metrics: dict[str, Any], features: int
) -> dict[str, Any] | None:
    """`registration_checks` from what a build measured (also what a candidate spec carries)."""
    if not parity:
        return None
    overall = metrics.get("overall", {})
    checks = [
        {
            "name": "parity",
            "passed": bool(parity.get("passed")),
            "max_abs_diff": parity.get("max_abs_diff"),
            "tolerance": parity.get("tolerance"),
            "rows": parity.get("rows"),
        },
        {
            "name": "schema",
            "passed": True,
            "features": features,
            "message": "ONNX graph inputs and output match the input schema",
        },
        {
            "name": "metrics",
            "passed": bool(overall.get("rows")) and "auc" in overall,
            "rows": overall.get("rows"),
            "auc": overall.get("auc"),
        },
    ]
    return {
        "passed": all(c["passed"] for c in checks),
        "source": "registration",
        "at": now_iso(),
        "checks": checks,
    }


def refuse_failed_parity(parity: dict[str, Any] | None) -> None:
    if parity and not parity.get("passed"):
        raise RegistrationRefused(
            f"ONNX-vs-sklearn parity failed: max abs diff {parity['max_abs_diff']:.3g} "
            f"> tolerance {parity['tolerance']:.3g} on {parity.get('rows')} rows; "
            "nothing was registered"
        )


def _upload(
    built: Any,
    name: str,
    version: int,
    s3: Any,
    bucket: str,
    lineage: Lineage,
    description: str | None,
    evidence: dict[str, Any] | None = None,
    trainer: TrainerFiles | None = None,
) -> Card:
    """Write model.onnx (and reference.parquet, and the owner's trainer) and build the card
    that pins them."""
    prefix = model_prefix(name, version)
    model_key, ref_key = f"{prefix}/model.onnx", f"{prefix}/reference.parquet"
    model_vid = put_object(s3, bucket, model_key, built.onnx_bytes, "application/octet-stream")
    ref_uri = ref_sha = None
    if built.reference is not None:
        buf = io.BytesIO()
        built.reference.to_parquet(buf, index=False)
        ref_bytes = buf.getvalue()
        put_object(s3, bucket, ref_key, ref_bytes, "application/vnd.apache.parquet")
        ref_uri, ref_sha = f"s3://{bucket}/{ref_key}", sha256_hex(ref_bytes)
    if trainer is not None:
        lineage = with_trainer(lineage, trainer.ref, trainer.put(s3, bucket, prefix, put_object))
    metrics = {**built.metrics, "parity": built.parity} if built.parity else dict(built.metrics)
    validation = registration_checks(built)
    if validation is not None and evidence:
        validation["data"] = evidence
    card = Card(
        name=name,
        version=version,
        description=description,
        input_schema=built.schema,
        output=getattr(built, "output", None) or Output(threshold=built.threshold),
        artifact=Artifact(
            uri=f"s3://{bucket}/{model_key}",
            s3_version_id=model_vid,
            sha256=sha256_hex(built.onnx_bytes),
            size=len(built.onnx_bytes),
            reference_uri=ref_uri,
            reference_sha256=ref_sha,
        ),
        lineage=lineage.model_copy(update={"registered_at": lineage.registered_at or now_iso()}),
        metrics=metrics,
        baseline=built.baseline,
        validation=validation,
    )
    put_object(s3, bucket, f"{prefix}/card.json", card_json(card), "application/json")
    return card


def register_built(
    built: Any,
    name: str,
    s3: Any,
    bucket: str,
    writer: RegistryWriter,
    lineage: Lineage,
    description: str | None = None,
) -> Card:
    """Write a `BuiltModel` as the next version of `name`; refuses one that failed parity.

    Registry only (no audit entry): for bootstrapping and tests. `register` is the governed
    path, used by `ferry register`.
    """
    refuse_failed_parity(built.parity)
    card = _upload(built, name, writer.allocate_version(name), s3, bucket, lineage, description)
    writer.put_version(card)
    return card


def register(
    built: Any,
    name: str,
    s3: Any,
    bucket: str,
    governance: Governance,
    lineage: Lineage,
    actor: str,
    description: str | None = None,
    reason: str = "",
    evidence: dict[str, Any] | None = None,
    trainer: TrainerFiles | None = None,
) -> tuple[Card, Outcome]:
    """Register the next version of `name` with its `register` audit entry and event.

    Refused before anything is written when parity failed. The version number is allocated
    first (numbers are never reused, even if a later step fails). `evidence` (e.g. the
    validation data's URI and sha256) is recorded with the validation results; `trainer` (the
    owner's file and lock) is stored beside the version for retraining.
    """
    refuse_failed_parity(built.parity)
    version = governance.writer.allocate_version(name)
    lineage = lineage.model_copy(update={"registered_by": actor})  # the four-eyes rule reads it
    card = _upload(built, name, version, s3, bucket, lineage, description, evidence, trainer)
    return card, governance.register(card, actor, reason)
