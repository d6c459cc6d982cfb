"""The gate's thresholds and the validation function's settings and request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ferry_core.names import ModelName
from ferry_core.retrain.candidate import RUN_ID
from ferry_core.settings import FunctionSettings, ModelStoreFields


class GatePolicy(FunctionSettings):
    """The gate's thresholds; infra/config.py sets them per environment through GATE_* vars.
    Unset variables keep the defaults."""

    model_config = ConfigDict(extra="forbid")

    parity_tolerance: float = Field(default=1e-5, alias="GATE_PARITY_TOLERANCE", ge=0)
    metric_tolerance: float = Field(default=0.01, alias="GATE_METRIC_TOLERANCE", ge=0, le=1)
    segment_floor: float = Field(default=0.6, alias="GATE_SEGMENT_FLOOR", ge=0, le=1)
    segment_min_rows: int = Field(default=30, alias="GATE_SEGMENT_MIN_ROWS", ge=2)
    latency_p99_ms: float = Field(default=50.0, alias="GATE_LATENCY_P99_MS", gt=0)
    latency_runs: int = Field(default=300, alias="GATE_LATENCY_RUNS", ge=1, le=100_000)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class ValidationSettings(ModelStoreFields):
    """What the stack passes the validation function; the gate policy comes from GATE_* vars."""

    policy: GatePolicy = Field(default_factory=GatePolicy)

    @classmethod
    def variables(cls) -> frozenset[str]:
        return super().variables() | GatePolicy.variables()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        policy = GatePolicy.variables()
        own = {k: v for k, v in cls.values_from(environ).items() if k not in policy}
        return cls.model_validate({**own, "policy": GatePolicy.from_env(environ)})


class ValidationRequest(BaseModel):
    """The validation step's input, as a state machine passes it (unknown keys are a bug):
    a retraining run's candidate (`run_id`, `breaking_change`) or a registered `version`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    run_id: str | None = Field(default=None, pattern=RUN_ID.pattern)
    version: int | None = Field(default=None, ge=1, strict=True)
    breaking_change: bool = Field(default=False, strict=True)

    @model_validator(mode="after")
    def _one_subject(self) -> ValidationRequest:
        if (self.run_id is None) == (self.version is None):
            raise ValueError("give exactly one of run_id (a candidate) and version")
        if self.version is not None and self.breaking_change:
            raise ValueError("breaking_change is a retraining run's declaration, not a version's")
        return self
