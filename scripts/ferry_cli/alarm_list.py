"""The alarms of one stack, as an on-call engineer reads them (`ferry alarms`).

Which alarms are the stack's: the stack names none of its alarms (infra/monitoring.py and
infra/batch.py leave `AlarmName` unset), so CloudFormation names each one
`{stack}-{logical id}-{random suffix}` (the local platform `{stack}-{logical id}`,
ferry_local/template.py). Every model's own alarms, which the governance function puts at
registration, are named `{stack}-model-{model}-{kind}` (ferry_core/monitoring/alarms.py; the
stack is `Ferry-{env}`). One `DescribeAlarms` with `AlarmNamePrefix="{stack}-"` therefore
returns exactly this stack's alarms and no other alarm of the account (the other stacks are
`Ferry-local`, `Ferry-dev`, `Ferry-prod` and `Ferry-pipeline`, none of which starts with another's
name and a dash). It needs only `cloudwatch:DescribeAlarms`, which every persona that reads
monitoring holds; tags would cost a `ListTagsForResource` per alarm and another permission.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# The order an on-call engineer reads them in: firing first, then the ones nobody can judge.
STATES: tuple[str, ...] = ("ALARM", "INSUFFICIENT_DATA", "OK")
COMPARISON_SYMBOL = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
MODEL_DIMENSION = "model"


@dataclass(frozen=True)
class WatchedMetric:
    """One metric an alarm reads: where it is, which series, how it is aggregated."""

    namespace: str
    metric: str
    dimensions: dict[str, str]
    statistic: str | None
    period: int | None
    id: str | None = None  # its id in the alarm's metric math, if any

    def describe(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in sorted(self.dimensions.items()))
        return f"{self.namespace} {self.metric}" + (f" {{{dims}}}" if dims else "")


@dataclass(frozen=True)
class StackAlarm:
    """One alarm: what it watches, when it fires, and where it stands now."""

    name: str
    state: str
    state_reason: str
    transitioned_at: str | None  # ISO 8601, UTC: when it last changed state
    description: str
    metrics: list[WatchedMetric] = field(default_factory=list)
    expression: str | None = None  # metric math, or a composite alarm's rule
    statistic: str | None = None  # the single metric's statistic (None for an expression)
    period: int | None = None  # seconds per evaluated datapoint
    threshold: float | None = None
    comparison: str | None = None
    evaluation_periods: int | None = None
    datapoints_to_alarm: int | None = None

    @property
    def models(self) -> list[str]:
        """The models whose metrics it watches (none for a platform alarm)."""
        return sorted(
            {m.dimensions[MODEL_DIMENSION] for m in self.metrics if MODEL_DIMENSION in m.dimensions}
        )

    def watches(self) -> str:
        """What it watches, in one short text: the expression, or the metric."""
        if self.expression is None:
            return "; ".join(m.describe() for m in self.metrics)
        used = [f"{m.id} = {m.describe()} {m.statistic}" for m in self.metrics]
        return "\n".join([self.expression, *used])

    def aggregation(self) -> str:
        """`p99 / 60s`, `expression / 60s` (the statistics are in `watches`), or empty."""
        if self.period is None:
            return self.statistic or ""
        return f"{self.statistic or 'expression'} / {self.period}s"

    def condition(self) -> str:
        """`> 0.2, 3 of 5 datapoints` (empty for a composite alarm)."""
        if self.comparison is None or self.threshold is None:
            return ""
        symbol = COMPARISON_SYMBOL.get(self.comparison, self.comparison)
        periods = self.evaluation_periods or 1
        return f"{symbol} {self.threshold:g}, {self.datapoints_to_alarm or periods} of {periods}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "models": self.models}


def stack_alarms(cloudwatch: Any, stack: str) -> list[StackAlarm]:
    """Every metric and composite alarm of `stack` (see the module docstring for how)."""
    found: list[StackAlarm] = []
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=f"{stack}-", AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    for page in pages:
        found += [metric_alarm(a) for a in page.get("MetricAlarms", [])]
        found += [composite_alarm(a) for a in page.get("CompositeAlarms", [])]
    return found


def select(
    alarms: Iterable[StackAlarm], *, state: str | None = None, model: str | None = None
) -> list[StackAlarm]:
    """The alarms in `state` that watch `model` (either may be None), ALARM first, then by name."""
    chosen = [
        a
        for a in alarms
        if (state is None or a.state == state) and (model is None or model in a.models)
    ]
    rank = {s: i for i, s in enumerate(STATES)}
    return sorted(chosen, key=lambda a: (rank.get(a.state, len(STATES)), a.name))


def metric_alarm(a: Mapping[str, Any]) -> StackAlarm:
    """A `DescribeAlarms` metric alarm: one metric, or metric math over several."""
    queries = a.get("Metrics") or []
    if queries:
        metrics = [_watched(q["MetricStat"], q["Id"]) for q in queries if q.get("MetricStat")]
        returned = next((q for q in queries if q.get("ReturnData", True)), queries[-1])
        stat = returned.get("MetricStat")
        expression = None if stat else returned.get("Expression")
        statistic = stat["Stat"] if stat else None
        period = returned.get("Period") or (stat or {}).get("Period")
        if period is None:
            period = max((m.period for m in metrics if m.period), default=None)
    else:
        statistic = a.get("ExtendedStatistic") or a.get("Statistic")
        period = a.get("Period")
        metrics = [
            WatchedMetric(a["Namespace"], a["MetricName"], _dimensions(a), statistic, _int(period))
        ]
        expression = None
    return StackAlarm(
        **_state(a),
        metrics=metrics,
        expression=expression,
        statistic=statistic,
        period=_int(period),
        threshold=a.get("Threshold"),
        comparison=a.get("ComparisonOperator"),
        evaluation_periods=_int(a.get("EvaluationPeriods")),
        datapoints_to_alarm=_int(a.get("DatapointsToAlarm")),
    )


def composite_alarm(a: Mapping[str, Any]) -> StackAlarm:
    """A composite alarm: its rule over other alarms is what it watches."""
    return StackAlarm(**_state(a), expression=a.get("AlarmRule"))


def _state(a: Mapping[str, Any]) -> dict[str, Any]:
    # AWS stamps a change of state in StateTransitionedTimestamp (StateUpdatedTimestamp moves on
    # any update, a new reason too); moto has only the latter, set on each change of state.
    when = a.get("StateTransitionedTimestamp") or a.get("StateUpdatedTimestamp")
    return {
        "name": a["AlarmName"],
        "state": a.get("StateValue", ""),
        "state_reason": a.get("StateReason", ""),
        "transitioned_at": _iso(when),
        "description": a.get("AlarmDescription", ""),
    }


def _watched(metric_stat: Mapping[str, Any], query_id: str) -> WatchedMetric:
    metric = metric_stat["Metric"]
    return WatchedMetric(
        metric["Namespace"],
        metric["MetricName"],
        _dimensions(metric),
        metric_stat.get("Stat"),
        _int(metric_stat.get("Period")),
        query_id,
    )


def _dimensions(metric: Mapping[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in metric.get("Dimensions") or []}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _iso(when: Any) -> str | None:
    if when is None:
        return None
    if isinstance(when, datetime):
        return when.astimezone(UTC).isoformat(timespec="seconds")
    return str(when)
