"""Function settings, read from the environment when a function starts, never at import.

Every function's settings model derives from `FunctionSettings`: each field's alias is the
environment variable infra sets, and `from_env` reads exactly those variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field


class FunctionSettings(BaseModel):
    """Base of every function's settings: one field per variable, read once at start."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    @classmethod
    def variables(cls) -> frozenset[str]:
        """The environment variables this model reads (its fields' aliases)."""
        return frozenset(f.alias for f in cls.model_fields.values() if f.alias)

    @classmethod
    def values_from(cls, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The variables of `environ` (default: the process environment) this model reads."""
        env = os.environ if environ is None else environ
        names = cls.variables()
        return {k: v for k, v in env.items() if k in names}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        return cls.model_validate(cls.values_from(environ))


class EnvironmentFields(FunctionSettings):
    """The environment's name (`local`, `dev`, `prod`), for functions that report or act on it."""

    env: str = Field(alias="FERRY_ENV")


class ModelStoreFields(FunctionSettings):
    """Where model artifacts and the registry live, and how long reads are cached."""

    model_bucket: str = Field(alias="MODEL_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    model_cache_dir: str = Field(default="/tmp/ferry-models", alias="MODEL_CACHE_DIR")


class ScoringFields(ModelStoreFields):
    """How a function that scores (real-time or batch) reads the registry and runs models."""

    registry_cache_seconds: float = Field(default=5.0, alias="REGISTRY_CACHE_SECONDS", ge=0)
    threads: int = Field(default=1, alias="ONNX_THREADS", ge=1, le=16)


class ScoringSettings(EnvironmentFields, ScoringFields):
    """What the stack passes the scoring function (infra/ sets exactly these variables)."""

    # Seconds between background re-reads of the cached stage pointers (0: none, the cache's
    # TTL alone decides): how fast a promotion or rollback reaches a warm container.
    registry_refresh_seconds: float = Field(default=0.0, alias="REGISTRY_REFRESH_SECONDS", ge=0)

    # Data capture (ferry_core/monitoring/capture.py): off unless the stack sets a rate.
    data_bucket: str | None = Field(default=None, alias="DATA_BUCKET")
    capture_sample_rate: float = Field(default=0.0, alias="CAPTURE_SAMPLE_RATE", ge=0, le=1)
    capture_max_records: int = Field(default=500, alias="CAPTURE_MAX_RECORDS", ge=1)
    capture_max_age_seconds: float = Field(default=60.0, alias="CAPTURE_MAX_AGE_SECONDS", gt=0)


class DriftSettings(EnvironmentFields):
    """What the stack passes the drift function (infra/monitoring.py sets these variables)."""

    data_bucket: str = Field(alias="DATA_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    psi_warn: float = Field(default=0.1, alias="DRIFT_PSI_WARN", gt=0)
    psi_alarm: float = Field(default=0.2, alias="DRIFT_PSI_ALARM", gt=0)
    window_hours: float = Field(default=24, alias="DRIFT_WINDOW_HOURS", gt=0, le=24 * 31)
    min_samples: int = Field(default=500, alias="DRIFT_MIN_SAMPLES", ge=1)
    max_rows: int = Field(default=500_000, alias="DRIFT_MAX_ROWS", ge=1)
