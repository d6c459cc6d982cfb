"""Percentile statistics for moto's GetMetricData, as CloudWatch answers them.

moto 5.2.5 computes Sum/Average/Minimum/Maximum/SampleCount only; a query for `p99` answers
HTTP 500. Code that asks CloudWatch for percentiles (the canary verdict,
ferry_core/serving/canary.py) would then see a different service locally than in AWS. `install()`
extends moto's `Statistics.get_statistics_for_type` with pNN[.N], computed over the raw
datapoints with the evaluator's own definition (`alarms.statistic`), so a local query gets the
figure AWS would give; anything else is left to moto.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.cloudwatch import models

from ferry_cli.local.alarms import statistic

_ORIGINAL: Callable[..., Any] | None = None


def _with_percentiles(self: Any, stat: str) -> Any:
    if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
        return statistic([float(v) for v in self.metric_single_values_list], stat)
    assert _ORIGINAL is not None
    return _ORIGINAL(self, stat)


def install() -> None:
    global _ORIGINAL
    if _ORIGINAL is None:
        _ORIGINAL = models.Statistics.get_statistics_for_type
        models.Statistics.get_statistics_for_type = _with_percentiles  # type: ignore[method-assign]


def uninstall() -> None:
    global _ORIGINAL
    if _ORIGINAL is not None:
        models.Statistics.get_statistics_for_type = _ORIGINAL  # type: ignore[method-assign]
        _ORIGINAL = None
