"""moto's GetMetricData answers percentiles once the local platform's extension is installed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pytest
from moto import mock_aws

from ferry_local import moto_hooks


@pytest.fixture
def cloudwatch() -> Iterator[object]:
    with mock_aws(), moto_hooks.installed():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def _query(stat: str) -> dict:
    return {
        "Id": "q" + stat.replace(".", "_").lower(),
        "MetricStat": {
            "Metric": {"Namespace": "T", "MetricName": "Latency"},
            "Period": 60,
            "Stat": stat,
        },
    }


def test_p99_and_p50_are_the_inverted_cdf_of_the_datapoints(cloudwatch: object) -> None:
    values = [float(v) for v in range(1, 201)]
    now = datetime.now(UTC)
    for start in range(0, len(values), 20):
        cloudwatch.put_metric_data(  # type: ignore[attr-defined]
            Namespace="T",
            MetricData=[
                {"MetricName": "Latency", "Value": v, "Timestamp": now}
                for v in values[start : start + 20]
            ],
        )
    resp = cloudwatch.get_metric_data(  # type: ignore[attr-defined]
        MetricDataQueries=[_query("p99"), _query("p50"), _query("Average")],
        StartTime=now - timedelta(minutes=2),
        EndTime=now + timedelta(minutes=2),
    )
    got = {r["Id"]: sum(r["Values"]) for r in resp["MetricDataResults"]}
    assert got["qp99"] == float(np.percentile(values, 99, method="inverted_cdf")) == 198.0
    assert got["qp50"] == 100.0
    assert got["qaverage"] == pytest.approx(100.5)
