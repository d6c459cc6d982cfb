"""Candidate bundles: what training leaves for validation and registration to pick up.

A retraining run writes its candidate under `candidates/{model}/{run_id}/` in the model bucket
(never under `models/`, which only registered versions reach):

- `model.onnx`         the converted pipeline
- `reference.parquet`  the validation rows in the serving encoding, the source pipeline's
                       scores (`__reference_score__`) and the labels (`__label__`); absent
                       only for an ONNX file registered without its source's scores
- `trainer/`           the owner's trainer file and lock, when the model has one
                       (`trainer_files.py`): what the next retraining runs
- `candidate.json`     a `CandidateSpec`: schema, output, metrics, baselines, lineage, and the
                       sha256 of the files above

Validation reads the bundle (every file checked against the spec's sha256) and writes
`validation.json` beside it; registration copies the files to `models/{model}/v{n}/`
and builds the card from the spec and the validation report. No pickle is ever written.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_core.card import Baseline, InputSchema, Lineage, Output
from ferry_core.errors import FerryError, validation_message
from ferry_core.names import ModelName
from ferry_core.store import parse_s3_uri, sha256_hex
from ferry_core.trainer_files import TrainerFiles, TrainerMismatch, TrainerRef

CANDIDATES_PREFIX = "candidates/"
# The trainer a run uses unless it names another (ferry_core/retrain/training.py; not imported
# here: this module must stay importable without pandas and scikit-learn).
DEFAULT_ENTRY_POINT = "ferry_core.retrain.training:CreditRiskTrainer"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
MAX_BUNDLE_FILE_BYTES = 512 * 1024 * 1024


class CandidateUnavailable(FerryError):
    """A candidate bundle is missing, incomplete or does not hash to its spec."""

    code = "candidate_unavailable"


class CandidateSpec(BaseModel):
    """Everything of a future card that training knows (no version, no artifact location)."""

    model_config = ConfigDict(extra="forbid")

    name: ModelName
    run_id: str = Field(pattern=RUN_ID.pattern)
    description: str | None = None
    input_schema: InputSchema
    output: Output = Field(default_factory=Output)
    lineage: Lineage = Field(default_factory=Lineage)
    metrics: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Baseline] = Field(default_factory=dict)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_size: int = Field(ge=1)
    reference_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    training: dict[str, Any] = Field(default_factory=dict)
    trainer: TrainerRef | None = None


def bundle_prefix(model: str, run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise CandidateUnavailable(f"not a run id: {run_id[:90]!r}")
    return f"{CANDIDATES_PREFIX}{model}/{run_id}"


@dataclass
class Bundle:
    """A candidate read back from S3, every file proven to match its spec."""

    bucket: str
    prefix: str
    spec: CandidateSpec
    onnx_bytes: bytes
    reference_bytes: bytes | None
    trainer: TrainerFiles | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    def reference_table(self) -> Any:
        """The reference rows as a pyarrow Table."""
        import pyarrow.parquet as pq

        if self.reference_bytes is None:
            raise CandidateUnavailable(f"{self.uri} has no reference.parquet")
        return pq.read_table(io.BytesIO(self.reference_bytes))


def reference_parquet(reference: Any) -> bytes:
    """Parquet bytes of a reference DataFrame (pandas, where the pipeline was fitted)."""
    buf = io.BytesIO()
    reference.to_parquet(buf, index=False)
    return buf.getvalue()


def write_bundle(
    s3: Any,
    bucket: str,
    built: Any,
    name: str,
    run_id: str,
    lineage: Lineage,
    description: str | None = None,
    training: dict[str, Any] | None = None,
    trainer: TrainerFiles | None = None,
) -> Bundle:
    """Write a built model as a candidate bundle; `candidate.json` last (it marks completion).

    `built` is a `BuiltModel` (its reference a DataFrame) or an already serialized build with
    `reference_bytes` (an owner's trainer run in its own process); `trainer` travels along.
    """
    prefix = bundle_prefix(name, run_id)
    ref_bytes = getattr(built, "reference_bytes", None)
    if ref_bytes is None and getattr(built, "reference", None) is not None:
        ref_bytes = reference_parquet(built.reference)
    spec = CandidateSpec(
        name=name,
        run_id=run_id,
        description=description,
        input_schema=built.schema,
        output=getattr(built, "output", None) or Output(threshold=built.threshold),
        lineage=lineage,
        metrics={**built.metrics, "parity": built.parity} if built.parity else dict(built.metrics),
        baseline=built.baseline,
        model_sha256=sha256_hex(built.onnx_bytes),
        model_size=len(built.onnx_bytes),
        reference_sha256=None if ref_bytes is None else sha256_hex(ref_bytes),
        training=training or {},
        trainer=trainer.ref if trainer else None,
    )
    s3.put_object(Bucket=bucket, Key=f"{prefix}/model.onnx", Body=built.onnx_bytes)
    if ref_bytes is not None:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/reference.parquet", Body=ref_bytes)
    if trainer is not None:
        trainer.put(s3, bucket, prefix)
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/candidate.json",
        Body=spec.model_dump_json(indent=2).encode(),
        ContentType="application/json",
    )
    return Bundle(bucket, prefix, spec, built.onnx_bytes, ref_bytes, trainer)


def _get(s3: Any, bucket: str, key: str) -> bytes:
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        if obj.get("ContentLength", 0) > MAX_BUNDLE_FILE_BYTES:
            raise CandidateUnavailable(f"s3://{bucket}/{key} is larger than a candidate may be")
        return obj["Body"].read()
    except CandidateUnavailable:
        raise
    except s3.exceptions.NoSuchKey as exc:
        raise CandidateUnavailable(f"s3://{bucket}/{key} does not exist") from exc


def read_bundle(s3: Any, bucket: str, model: str, run_id: str) -> Bundle:
    """Read and verify a bundle: a missing file or a sha256 mismatch is `CandidateUnavailable`."""
    prefix = bundle_prefix(model, run_id)
    try:
        spec = CandidateSpec.model_validate_json(_get(s3, bucket, f"{prefix}/candidate.json"))
    except ValidationError as exc:
        raise CandidateUnavailable(
            f"{prefix}/candidate.json is not a spec: {validation_message(exc)}"
        ) from exc
    if spec.name != model or spec.run_id != run_id:
        raise CandidateUnavailable(
            f"{prefix}/candidate.json describes {spec.name}/{spec.run_id}, not {model}/{run_id}"
        )
    onnx_bytes = _get(s3, bucket, f"{prefix}/model.onnx")
    ref_bytes = None
    if spec.reference_sha256 is not None:
        ref_bytes = _get(s3, bucket, f"{prefix}/reference.parquet")
    for what, data, want in (
        ("model.onnx", onnx_bytes, spec.model_sha256),
        ("reference.parquet", ref_bytes, spec.reference_sha256),
    ):
        if data is not None and sha256_hex(data) != want:
            raise CandidateUnavailable(
                f"{prefix}/{what} does not hash to the sha256 its candidate.json records"
            )
    trainer = None
    if spec.trainer is not None:
        try:
            trainer = TrainerFiles.get(s3, bucket, prefix, spec.trainer)
        except TrainerMismatch as exc:
            raise CandidateUnavailable(exc.message) from exc
    return Bundle(bucket, prefix, spec, onnx_bytes, ref_bytes, trainer)


def bundle_from_uri(s3: Any, uri: str) -> Bundle:
    """`read_bundle` from `s3://bucket/candidates/{model}/{run_id}/`."""
    bucket, key = parse_s3_uri(uri)
    parts = key.strip("/").split("/")
    if len(parts) != 3 or f"{parts[0]}/" != CANDIDATES_PREFIX:
        raise CandidateUnavailable(f"not a candidate bundle URI: {uri[:200]!r}")
    return read_bundle(s3, bucket, parts[1], parts[2])


def write_report(s3: Any, bundle: Bundle, report: dict[str, Any]) -> str:
    """Store a validation report beside the bundle; returns its S3 URI."""
    key = f"{bundle.prefix}/validation.json"
    s3.put_object(
        Bucket=bundle.bucket,
        Key=key,
        Body=json.dumps(report, indent=2, default=str).encode(),
        ContentType="application/json",
    )
    return f"s3://{bundle.bucket}/{key}"
