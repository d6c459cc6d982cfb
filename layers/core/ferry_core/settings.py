"""Function settings, read from the environment when a function starts, never at import."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class ScoringSettings(BaseModel):
    """What the stack passes the scoring function (infra/ sets exactly these variables)."""

    model_config = ConfigDict(frozen=True)

    env: str = Field(alias="FERRY_ENV")
    model_bucket: str = Field(alias="MODEL_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    registry_cache_seconds: float = Field(default=5.0, alias="REGISTRY_CACHE_SECONDS", ge=0)
    model_cache_dir: str = Field(default="/tmp/ferry-models", alias="MODEL_CACHE_DIR")
    threads: int = Field(default=1, alias="ONNX_THREADS", ge=1, le=16)
    # Data capture (issue 7, ferry_core/capture.py): off unless the stack sets a rate.
    data_bucket: str | None = Field(default=None, alias="DATA_BUCKET")
    capture_sample_rate: float = Field(default=0.0, alias="CAPTURE_SAMPLE_RATE", ge=0, le=1)
    capture_max_records: int = Field(default=500, alias="CAPTURE_MAX_RECORDS", ge=1)
    capture_max_age_seconds: float = Field(default=60.0, alias="CAPTURE_MAX_AGE_SECONDS", gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScoringSettings:
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k in _ALIASES})


_ALIASES = {f.alias for f in ScoringSettings.model_fields.values() if f.alias}


class DriftSettings(BaseModel):
    """What the stack passes the drift function (infra/monitoring.py sets these variables)."""

    model_config = ConfigDict(frozen=True)

    env: str = Field(alias="FERRY_ENV")
    data_bucket: str = Field(alias="DATA_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    psi_warn: float = Field(default=0.1, alias="DRIFT_PSI_WARN", gt=0)
    psi_alarm: float = Field(default=0.2, alias="DRIFT_PSI_ALARM", gt=0)
    window_hours: float = Field(default=24, alias="DRIFT_WINDOW_HOURS", gt=0, le=24 * 31)
    min_samples: int = Field(default=500, alias="DRIFT_MIN_SAMPLES", ge=1)
    max_rows: int = Field(default=500_000, alias="DRIFT_MAX_ROWS", ge=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DriftSettings:
        env = os.environ if environ is None else environ
        aliases = {f.alias for f in cls.model_fields.values() if f.alias}
        return cls.model_validate({k: v for k, v in env.items() if k in aliases})
