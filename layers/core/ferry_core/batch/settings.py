"""The batch function's settings: the environment infra/batch.py sets, and the sizes it implies."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ferry_core.batch import formats
from ferry_core.settings import EnvironmentFields, ScoringFields


@dataclass(frozen=True)
class BatchSettings:
    """Sizes that bound memory and time (infra/config.py sets them per environment)."""

    chunk_rows: int = 65_536
    fanout_threshold_bytes: int = 256 * 1024 * 1024
    part_bytes: int = 64 * 1024 * 1024
    csv_block_bytes: int = formats.CSV_BLOCK_BYTES
    # This share of scored rows goes to capture/rows/ for the drift function, at most
    # `capture_max_rows` a file (drift needs a sample, not a copy of every upload).
    capture_sample_rate: float = 0.0
    capture_max_rows: int = 10_000


class BatchEnvironment(EnvironmentFields, ScoringFields):
    """What infra/batch.py passes the batch functions (exactly these variables)."""

    audit_table: str = Field(alias="AUDIT_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    audit_anchor_bucket: str | None = Field(default=None, alias="AUDIT_ANCHOR_BUCKET")
    # The bus a committed run's `Batch Run Recorded` event goes to (ferry_core.registry.events).
    event_bus: str = Field(default="default", alias="EVENT_BUS_NAME")
    chunk_rows: int = Field(default=65_536, alias="BATCH_CHUNK_ROWS", ge=1, le=1_048_576)
    fanout_threshold_bytes: int = Field(
        default=256 * 1024 * 1024, alias="BATCH_FANOUT_THRESHOLD_BYTES", ge=1
    )
    part_bytes: int = Field(default=64 * 1024 * 1024, alias="BATCH_PART_BYTES", ge=1)
    state_machine_arn: str | None = Field(default=None, alias="BATCH_STATE_MACHINE_ARN")
    idempotency_seconds: int = Field(default=7 * 24 * 3600, alias="IDEMPOTENCY_SECONDS", ge=60)
    capture_sample_rate: float = Field(default=0.0, alias="CAPTURE_SAMPLE_RATE", ge=0, le=1)
    capture_max_rows: int = Field(default=10_000, alias="CAPTURE_MAX_BATCH_ROWS", ge=0)

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
