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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScoringSettings:
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k in _ALIASES})


_ALIASES = {f.alias for f in ScoringSettings.model_fields.values() if f.alias}
