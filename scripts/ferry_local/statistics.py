"""CloudWatch statistics over a list of samples: what alarms and GetMetricStatistics report.

One definition shared by the alarm evaluator and the patch that gives moto's CloudWatch
percentiles, so an alarm and a metric query agree on every figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def statistic(values: list[float], stat: str) -> float | None:
    """A CloudWatch statistic (Sum, Average, Minimum, Maximum, SampleCount, pNN[.N]) or None."""
    if not values:
        return None
    simple: dict[str, Callable[[list[float]], float]] = {
        "Sum": math.fsum,
        "Average": lambda v: math.fsum(v) / len(v),
        "Minimum": min,
        "Maximum": max,
        "SampleCount": lambda v: float(len(v)),
    }
    if stat in simple:
        return float(simple[stat](values))
    if stat.startswith("p"):
        q = float(stat[1:])
        if not 0 <= q <= 100:
            raise ValueError(f"percentile out of range: {stat}")
        # CloudWatch's percentile is a value that q% of the samples are at or below.
        return float(np.percentile(np.asarray(values), q, method="inverted_cdf"))
    raise ValueError(f"unsupported statistic {stat!r}")
