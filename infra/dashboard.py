"""The monitoring dashboard: SEARCH expressions, so it shows every model, registered at any time.

An alarm status widget lists concrete alarms only; the models' own alarms are put at
registration (not in the template), so a text widget links to them by their name prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.environment import (
    BATCH_SERVICE,
    DRIFT_SERVICE,
    FAST_PERIOD_SECONDS,
    NAMESPACE,
    SCORING_SERVICE,
)

FAST_PERIOD = Duration.seconds(FAST_PERIOD_SECONDS)
_SCORING = f'{{{NAMESPACE},model,service}} service="{SCORING_SERVICE}"'
_BATCH = f'{{{NAMESPACE},model,service}} service="{BATCH_SERVICE}"'
_DRIFT = f'{{{NAMESPACE},feature,model,service}} service="{DRIFT_SERVICE}"'


def _search(
    query: str, stat: str, label: str, period: Duration = FAST_PERIOD
) -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{query}', '{stat}', {int(period.to_seconds())})",
        label=label,
        period=period,
    )


def _scoring_widgets(latency_budget_ms: int) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title="Scoring latency (ms): p50 / p90 / p99 per model",
            left=[
                _search(f'{_SCORING} MetricName="Latency"', stat, stat)
                for stat in ("p50", "p90", "p99")
            ],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=latency_budget_ms, label="p99 budget")
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Traffic: requests and instances scored per model",
            left=[_search(f'{_SCORING} MetricName="Latency"', "SampleCount", "requests")],
            right=[_search(f'{_SCORING} MetricName="InstancesScored"', "Sum", "instances")],
            width=12,
        ),
    ]


def _error_and_batch_widgets() -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title="Errors: 4xx and 5xx per model",
            left=[
                _search(f'{_SCORING} MetricName="Errors4xx"', "Sum", "4xx"),
                _search(f'{_SCORING} MetricName="Errors5xx"', "Sum", "5xx"),
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Batch volumes: rows scored / rejected, failed files",
            left=[
                _search(f'{_BATCH} MetricName="RowsScored"', "Sum", "scored"),
                _search(f'{_BATCH} MetricName="RowsRejected"', "Sum", "rejected"),
            ],
            right=[_search(f'{_BATCH} MetricName="BatchFailures"', "Sum", "failed files")],
            width=12,
        ),
    ]


def _drift_widgets(psi: tuple[float, float], period: Duration) -> list[cloudwatch.IWidget]:
    warn, alarm = psi
    return [
        cloudwatch.GraphWidget(
            title="Drift: PSI per feature (and score)",
            left=[_search(f'{_DRIFT} MetricName="DriftPSI"', "Maximum", "PSI", period)],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=warn, label="PSI warn"),
                cloudwatch.HorizontalAnnotation(value=alarm, label="PSI alarm"),
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Drift: KS statistic per numeric feature",
            left=[_search(f'{_DRIFT} MetricName="DriftKS"', "Maximum", "KS", period)],
            width=12,
        ),
    ]


def monitoring_dashboard(
    scope: Construct,
    *,
    psi: tuple[float, float],
    latency_budget_ms: int,
    drift_period: Duration,
    alarms: Sequence[cloudwatch.IAlarm],
    model_alarm_prefix: str,
) -> cloudwatch.Dashboard:
    """Latency, traffic, errors, batch volumes, drift (PSI, KS), the stack's alarms' state and
    a link to every model's alarms."""
    dashboard = cloudwatch.Dashboard(scope, "Dashboard", default_interval=Duration.hours(24))
    dashboard.add_widgets(*_scoring_widgets(latency_budget_ms))
    dashboard.add_widgets(*_error_and_batch_widgets())
    dashboard.add_widgets(*_drift_widgets(psi, drift_period))
    dashboard.add_widgets(
        cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24)
    )
    region = Stack.of(scope).region
    dashboard.add_widgets(
        cloudwatch.TextWidget(
            markdown=f"**Model alarms** (latency, 4xx/5xx rates, drift, batch failures of every "
            f"registered model): [{model_alarm_prefix}*](https://console.aws.amazon.com/"
            f"cloudwatch/home?region={region}#alarmsV2:?search={model_alarm_prefix})",
            width=24,
            height=2,
        )
    )
    return dashboard
