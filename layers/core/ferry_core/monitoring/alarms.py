"""A registered model's own CloudWatch alarms, as data, put by the governance function.

Per-model alarms cannot be synthesized once a model may be registered without a redeploy, so
they are defined here as data (`model_alarm_specs`) and put with `PutMetricAlarm` when a
model's version is registered (`ModelAlarms.ensure`, idempotent: re-registering re-puts the
same alarms). Thresholds and periods come from the stack's config through the governance
function's environment (`MODEL_ALARMS`, built by infra/environment.py), so dev and prod still
differ only in config. Every alarm is named `Ferry-{env}-model-{model}-{kind}`: one EventBridge
rule matches any model's drift alarm by that name (infra/monitoring.py). Archiving a model's
last version leaves its alarms in place: their history is part of the model's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, Json

from ferry_core.names import ModelName, is_model_name
from ferry_core.settings import FunctionSettings

AlarmKind = Literal["latency-p99", "errors-4xx", "errors-5xx", "drift", "batch-failures"]
KINDS: tuple[AlarmKind, ...] = (
    "latency-p99",
    "errors-4xx",
    "errors-5xx",
    "drift",
    "batch-failures",
)
DRIFT_METRIC = "DriftMaxPSI"  # what the drift function publishes per model (functions/drift)


def alarm_prefix(env: str) -> str:
    """The name prefix of every model alarm of one environment."""
    return f"Ferry-{env}-model-"


def alarm_name(env: str, model: str, kind: AlarmKind) -> str:
    """`Ferry-{env}-model-{model}-{kind}`."""
    return f"{alarm_prefix(env)}{model}-{kind}"


class AlarmSettings(BaseModel):
    """The stack's monitoring config the specs need (infra/config.py, as one JSON variable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(min_length=1, description="The functions' metrics namespace.")
    scoring_service: str = Field(min_length=1, description="`service` dimension of scoring.")
    batch_service: str = Field(min_length=1)
    drift_service: str = Field(min_length=1)
    latency_p99_ms: float = Field(gt=0)
    error_rate_4xx: float = Field(gt=0, le=1)
    error_rate_5xx: float = Field(gt=0, le=1)
    drift_psi: float = Field(gt=0)
    fast_period_seconds: int = Field(default=60, ge=10)
    fast_evaluation_periods: int = Field(default=5, ge=1)
    fast_datapoints_to_alarm: int = Field(default=3, ge=1)
    drift_period_seconds: int = Field(ge=60, description="The drift function's schedule.")


@dataclass(frozen=True)
class MetricStat:
    """One metric an alarm reads: namespace, name, dimensions, statistic over a period."""

    id: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    period: int

    def metric(self) -> dict[str, Any]:
        dims = [{"Name": k, "Value": v} for k, v in self.dimensions]
        return {"Namespace": self.namespace, "MetricName": self.name, "Dimensions": dims}

    def query(self) -> dict[str, Any]:
        """As a `Metrics` entry of a metric-math alarm (read, not returned)."""
        stat = {"Metric": self.metric(), "Period": self.period, "Stat": self.statistic}
        return {"Id": self.id, "MetricStat": stat, "ReturnData": False}


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: on its one metric, or on `expression` over its metrics' ids."""

    kind: AlarmKind
    description: str
    metrics: tuple[MetricStat, ...]
    threshold: float
    comparison: str
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    treat_missing: str = "notBreaching"
    expression: str | None = None
    label: str | None = None

    def request(self, name: str, actions: tuple[str, ...]) -> dict[str, Any]:
        """The `PutMetricAlarm` arguments of this alarm named `name`."""
        request: dict[str, Any] = {
            "AlarmName": name,
            "AlarmDescription": self.description,
            "ActionsEnabled": True,
            "AlarmActions": list(actions),
            "Threshold": self.threshold,
            "ComparisonOperator": self.comparison,
            "EvaluationPeriods": self.evaluation_periods,
            "DatapointsToAlarm": self.datapoints_to_alarm,
            "TreatMissingData": self.treat_missing,
        }
        if self.expression is None:
            (m,) = self.metrics
            stat_key = "ExtendedStatistic" if m.statistic.startswith("p") else "Statistic"
            return request | m.metric() | {stat_key: m.statistic, "Period": m.period}
        returned = {"Id": "rate", "Expression": self.expression, "ReturnData": True}
        if self.label:
            returned["Label"] = self.label
        return request | {"Metrics": [*(m.query() for m in self.metrics), returned]}


def model_alarm_specs(settings: AlarmSettings, model: str) -> list[AlarmSpec]:
    """p99 latency, 4xx and 5xx rates, drift and batch failures of `model`, in `KINDS` order."""
    s, fast = settings, settings.fast_period_seconds
    evaluation = {
        "evaluation_periods": s.fast_evaluation_periods,
        "datapoints_to_alarm": min(s.fast_datapoints_to_alarm, s.fast_evaluation_periods),
    }

    def metric(mid: str, name: str, service: str, stat: str, period: int = fast) -> MetricStat:
        return MetricStat(
            mid, s.namespace, name, (("model", model), ("service", service)), stat, period
        )

    requests = (
        metric("ok", "Latency", s.scoring_service, "SampleCount"),
        metric("e4", "Errors4xx", s.scoring_service, "Sum"),
        metric("e5", "Errors5xx", s.scoring_service, "Sum"),
    )
    total = "(FILL(ok, 0) + FILL(e4, 0) + FILL(e5, 0))"
    rates = [
        AlarmSpec(
            kind=f"errors-{code}",  # type: ignore[arg-type]
            description=f"{model}: share of predict requests answered {code} is too high.",
            metrics=requests,
            threshold=threshold,
            comparison="GreaterThanThreshold",
            expression=f"FILL(e{code[0]}, 0) / {total}",
            label=f"{model} {code} rate",
            **evaluation,
        )
        for code, threshold in (("4xx", s.error_rate_4xx), ("5xx", s.error_rate_5xx))
    ]
    return [
        AlarmSpec(
            kind="latency-p99",
            description=f"{model}: p99 scoring latency is over the budget (ms).",
            metrics=(metric("m1", "Latency", s.scoring_service, "p99"),),
            threshold=s.latency_p99_ms,
            comparison="GreaterThanThreshold",
            **evaluation,
        ),
        *rates,
        AlarmSpec(
            kind="drift",
            description=f"{model}: a feature's (or the score's) PSI reached the drift alarm "
            "threshold; retraining starts (`ferry drift` shows the report).",
            metrics=(
                metric("m1", DRIFT_METRIC, s.drift_service, "Maximum", s.drift_period_seconds),
            ),
            threshold=s.drift_psi,
            comparison="GreaterThanOrEqualToThreshold",
        ),
        AlarmSpec(
            kind="batch-failures",
            description=f"{model}: a batch file got a failed manifest.",
            metrics=(metric("m1", "BatchFailures", s.batch_service, "Sum"),),
            threshold=0,
            comparison="GreaterThanThreshold",
        ),
    ]


class ModelMonitors(Protocol):
    """What governance calls after a registration commits (a `ModelAlarms`, or a fake)."""

    def ensure(self, model: str) -> list[str]: ...


class ModelAlarms:
    """Puts a model's alarms in CloudWatch, every one notifying `actions` (the alarm topic)."""

    def __init__(
        self, cloudwatch: Any, settings: AlarmSettings, env: str, actions: tuple[str, ...]
    ) -> None:
        self._cloudwatch = cloudwatch
        self._settings = settings
        self._env = env
        self._actions = actions

    def names(self, model: str) -> list[str]:
        return [alarm_name(self._env, model, kind) for kind in KINDS]

    def ensure(self, model: str) -> list[str]:
        """Put every alarm of `model` (the same ones each time); returns their names."""
        if not is_model_name(model):
            raise ValueError(f"not a model name: {model!r}")
        names = []
        for spec in model_alarm_specs(self._settings, model):
            name = alarm_name(self._env, model, spec.kind)
            self._cloudwatch.put_metric_alarm(**spec.request(name, self._actions))
            names.append(name)
        return names


class _RegisteredDetail(BaseModel):
    model: ModelName


class RegisteredEvent(BaseModel):
    """A registry event saying a version was registered (EventBridge → governance function).

    The function puts the model's alarms again on it, so a model registered by any path that
    publishes the event is monitored, and a put that failed at registration is repaired.
    """

    model_config = ConfigDict(extra="ignore", validate_by_alias=True)

    source: Literal["ferry.registry"]
    detail_type: Literal["Model Version Registered"] = Field(alias="detail-type")
    detail: _RegisteredDetail


class ModelAlarmFields(FunctionSettings):
    """The governance function's alarm settings; without them it puts no model alarms."""

    model_alarms: Json[AlarmSettings] | None = Field(default=None, alias="MODEL_ALARMS")
    alarm_topic_arn: str | None = Field(default=None, alias="ALARM_TOPIC_ARN")

    def model_monitors(self, cloudwatch: Any, env: str) -> ModelAlarms | None:
        """The `ModelAlarms` these settings describe, or None when the stack set none."""
        if self.model_alarms is None:
            return None
        actions = (self.alarm_topic_arn,) if self.alarm_topic_arn else ()
        return ModelAlarms(cloudwatch, self.model_alarms, env, actions)
