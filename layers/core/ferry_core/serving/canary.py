"""The canary verdict: does the canary version serve as well as production did beside it?

While a canary runs, the scoring function counts every default-routed request per variant
(`CanaryRequests`, `CanaryErrors5xx`, `CanaryLatency` with dimensions model + variant). The
verdict compares the two variants over the canary's window, and also fails when any of the
model's own CloudWatch alarms (latency, 4xx/5xx rates, …) is in ALARM: an alarm during the
canary rolls it back. Too little canary traffic is no evidence of health: the verdict then
fails closed, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

NAMESPACE = "Ferry"
# Powertools adds the service as a dimension of every metric: the scoring function's name.
SCORING_SERVICE = "ferry-scoring"
VARIANTS = ("canary", "champion")


class CanaryPolicy(BaseModel):
    """Thresholds of the verdict (infra/config.py sets them per environment)."""

    model_config = ConfigDict(frozen=True)

    min_requests: int = Field(default=20, ge=1)
    max_error_rate_delta: float = Field(default=0.01, ge=0, le=1)
    max_latency_ratio: float = Field(default=1.5, ge=1)
    # Absolute slack on top of the ratio: a few ms of p99 jitter on a small sample is no signal.
    latency_slack_ms: float = Field(default=10.0, ge=0)


@dataclass
class CanaryVerdict:
    healthy: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reasons": self.reasons, "figures": self.figures}

    def summary(self) -> str:
        if self.healthy:
            return "canary healthy: " + ", ".join(
                f"{k} {v}" for k, v in self.figures.items() if not isinstance(v, dict)
            )
        return "canary unhealthy: " + "; ".join(self.reasons)


def _query(qid: str, metric: str, model: str, variant: str, stat: str, period: int) -> dict:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "model", "Value": model},
                    {"Name": "variant", "Value": variant},
                    {"Name": "service", "Value": SCORING_SERVICE},
                ],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def _window(since: datetime, now: datetime) -> tuple[datetime, datetime, int]:
    start = since.replace(second=0, microsecond=0)
    end = now + timedelta(minutes=1)
    period = max(60, int((end - start).total_seconds()) // 60 * 60)
    return start, end, period


def _values(cloudwatch: Any, queries: list[dict], start: datetime, end: datetime) -> dict:
    resp = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    return {r["Id"]: r.get("Values", []) for r in resp.get("MetricDataResults", [])}


def variant_figures(
    cloudwatch: Any, model: str, since: datetime, now: datetime | None = None
) -> dict[str, dict[str, float | None]]:
    """Requests, 5xx, error rate and latency (p99, else the mean) per variant since `since`."""
    now = now or datetime.now(UTC)
    start, end, period = _window(since, now)
    queries = []
    for v in VARIANTS:
        queries += [
            _query(f"req_{v}", "CanaryRequests", model, v, "Sum", period),
            _query(f"err_{v}", "CanaryErrors5xx", model, v, "Sum", period),
            _query(f"avg_{v}", "CanaryLatency", model, v, "Average", period),
        ]
    values = _values(cloudwatch, queries, start, end)
    try:  # percentiles in their own call: an emulator without them (moto) fails the call
        percentiles = [
            _query(f"p99_{v}", "CanaryLatency", model, v, "p99", period) for v in VARIANTS
        ]
        values |= _values(cloudwatch, percentiles, start, end)
    except (ClientError, TypeError):
        # moto as a server answers 500 (ClientError); in-process moto's serializer raises
        # TypeError on its None percentiles. AWS answers; `ferry local up` patches moto to.
        pass
    out: dict[str, dict[str, float | None]] = {}
    for v in VARIANTS:
        requests = float(sum(values.get(f"req_{v}", [])))
        errors = float(sum(values.get(f"err_{v}", [])))
        p99 = [x for x in values.get(f"p99_{v}") or [] if x is not None]
        avg = [x for x in values.get(f"avg_{v}") or [] if x is not None]
        latency: float | None = None
        stat: str | None = None
        if p99:
            latency, stat = max(p99), "p99"
        elif avg:  # an emulator without percentiles (moto): the mean, said so in the report
            latency, stat = max(avg), "average"
        out[v] = {
            "requests": requests,
            "errors_5xx": errors,
            "error_rate": errors / requests if requests else None,
            "latency_ms": latency,
            "latency_stat": stat,
        }
    return out


def alarms_firing(cloudwatch: Any, model: str, namespace: str = NAMESPACE) -> list[str]:
    """Names of the alarms in ALARM that watch one of `model`'s metrics."""
    firing: list[str] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        StateValue="ALARM", AlarmTypes=["MetricAlarm"]
    ):
        for alarm in page.get("MetricAlarms", []):
            if any(
                m.get("Namespace") == namespace
                and any(d["Name"] == "model" and d["Value"] == model for d in m["Dimensions"])
                for m in _alarm_metrics(alarm)
            ):
                firing.append(alarm["AlarmName"])
    return firing


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    if alarm.get("MetricName"):
        return [{"Namespace": alarm.get("Namespace"), "Dimensions": alarm.get("Dimensions") or []}]
    out = []
    for m in alarm.get("Metrics") or []:
        metric = (m.get("MetricStat") or {}).get("Metric")
        if metric:
            out.append(
                {"Namespace": metric.get("Namespace"), "Dimensions": metric.get("Dimensions") or []}
            )
    return out


def evaluate(
    cloudwatch: Any,
    model: str,
    since: datetime,
    policy: CanaryPolicy,
    now: datetime | None = None,
) -> CanaryVerdict:
    """The verdict on a canary running since `since` (UTC)."""
    figures = variant_figures(cloudwatch, model, since, now)
    canary, champion = figures["canary"], figures["champion"]
    reasons: list[str] = []
    firing = alarms_firing(cloudwatch, model)
    if firing:
        reasons.append(f"alarm(s) in ALARM during the canary: {', '.join(sorted(firing))}")
    if (canary["requests"] or 0) < policy.min_requests:
        reasons.append(
            f"only {canary['requests']:.0f} canary request(s), fewer than the "
            f"{policy.min_requests} needed to judge it"
        )
    else:
        c_rate = canary["error_rate"] or 0.0
        p_rate = champion["error_rate"] or 0.0
        if c_rate > p_rate + policy.max_error_rate_delta:
            reasons.append(
                f"canary 5xx rate {c_rate:.2%} vs production {p_rate:.2%} "
                f"(allowed +{policy.max_error_rate_delta:.2%})"
            )
        c_lat, p_lat = canary["latency_ms"], champion["latency_ms"]
        if c_lat is not None and p_lat is not None:
            limit = p_lat * policy.max_latency_ratio + policy.latency_slack_ms
            if c_lat > limit:
                reasons.append(
                    f"canary latency {canary['latency_stat']} {c_lat:.1f} ms vs production "
                    f"{p_lat:.1f} ms (limit {limit:.1f} ms)"
                )
    summary = {
        "canary_requests": int(canary["requests"] or 0),
        "champion_requests": int(champion["requests"] or 0),
        "canary_5xx": int(canary["errors_5xx"] or 0),
        "champion_5xx": int(champion["errors_5xx"] or 0),
    }
    return CanaryVerdict(not reasons, reasons, {**summary, "variants": figures})
