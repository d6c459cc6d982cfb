"""The batch function's settings, read from the environment when it starts (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from ferry_core.batch.run import BatchSettings


class BatchEnvironment(BaseModel):
    """What infra/batch.py passes the batch functions (exactly these variables)."""

    model_config = ConfigDict(frozen=True)

    env: str = Field(alias="FERRY_ENV")
    model_bucket: str = Field(alias="MODEL_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    audit_table: str = Field(alias="AUDIT_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    audit_anchor_bucket: str | None = Field(default=None, alias="AUDIT_ANCHOR_BUCKET")
    registry_cache_seconds: float = Field(default=5.0, alias="REGISTRY_CACHE_SECONDS", ge=0)
    model_cache_dir: str = Field(default="/tmp/ferry-models", alias="MODEL_CACHE_DIR")
    threads: int = Field(default=1, alias="ONNX_THREADS", ge=1, le=16)
    chunk_rows: int = Field(default=65_536, alias="BATCH_CHUNK_ROWS", ge=1, le=1_048_576)
    fanout_threshold_bytes: int = Field(
        default=256 * 1024 * 1024, alias="BATCH_FANOUT_THRESHOLD_BYTES", ge=1
    )
    part_bytes: int = Field(default=64 * 1024 * 1024, alias="BATCH_PART_BYTES", ge=1)
    state_machine_arn: str | None = Field(default=None, alias="BATCH_STATE_MACHINE_ARN")
    idempotency_seconds: int = Field(default=7 * 24 * 3600, alias="IDEMPOTENCY_SECONDS", ge=60)
    capture_sample_rate: float = Field(default=0.0, alias="CAPTURE_SAMPLE_RATE", ge=0, le=1)
    capture_max_rows: int = Field(default=10_000, alias="CAPTURE_MAX_BATCH_ROWS", ge=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchEnvironment:
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k in _ALIASES})

    def batch_settings(self) -> BatchSettings:
        return BatchSettings(
            chunk_rows=self.chunk_rows,
            fanout_threshold_bytes=self.fanout_threshold_bytes,
            part_bytes=self.part_bytes,
            # CSV blocks of about a chunk: ~64 bytes a row, within [16 KiB, 4 MiB].
            csv_block_bytes=max(16_384, min(4 * 1024 * 1024, self.chunk_rows * 64)),
            capture_sample_rate=self.capture_sample_rate,
            capture_max_rows=self.capture_max_rows,
        )


_ALIASES = {f.alias for f in BatchEnvironment.model_fields.values() if f.alias}
