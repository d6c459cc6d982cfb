"""CloudWatch Embedded Metric Format: the metrics a function prints become CloudWatch metrics.

In AWS, CloudWatch Logs extracts metrics from EMF log lines (and the Lambda service publishes
AWS/Lambda Invocations, Errors and Duration); locally the Lambda runtime hands
each invocation's stdout to `MetricSink` (its `on_logs` callback), which parses the EMF lines,
keeps every raw value (moto's CloudWatch computes no percentiles, so the alarm evaluator reads
them from here) and forwards them to moto's CloudWatch with `put_metric_data`, so
`get_metric_statistics` and `list_metrics` answer as they would in AWS.

Spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Dimensions = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: one CloudWatch series

# CloudWatch limits that EMF shares (values per metric, dimensions per set).
MAX_VALUES_PER_METRIC = 100
MAX_DIMENSIONS_PER_SET = 30
PUT_BATCH = 500  # MetricData entries per put_metric_data call (AWS allows 1000)


@dataclass(frozen=True, slots=True)
class Datapoint:
    """One value of one metric series at one time, as CloudWatch stores it."""

    namespace: str
    name: str
    dimensions: Dimensions
    value: float
    timestamp: float  # epoch seconds
    unit: str | None = None
    storage_resolution: int = 60


def dims(mapping: Mapping[str, str] | Iterable[Mapping[str, str]]) -> Dimensions:
    """A series key from `{"model": "m"}` or CloudWatch's `[{"Name": …, "Value": …}]`."""
    if isinstance(mapping, Mapping):
        pairs = mapping.items()
    else:
        pairs = ((d["Name"], d["Value"]) for d in mapping)
    return tuple(sorted((str(k), str(v)) for k, v in pairs))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_line(line: str) -> tuple[list[Datapoint], str | None]:
    """The datapoints of one log line, or a reason why an EMF-looking line was refused.

    A line that is not a JSON object with an `_aws` key is an ordinary log line: no datapoints
    and no problem. Like CloudWatch, an invalid EMF document yields no metric at all.
    """
    line = line.strip()
    if not line.startswith("{") or '"_aws"' not in line:
        return [], None
    try:
        doc = json.loads(line)
    except ValueError:
        return [], "EMF line is not valid JSON"
    meta = doc.get("_aws") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        return [], None
    stamp = meta.get("Timestamp")
    directives = meta.get("CloudWatchMetrics")
    if not _number(stamp) or not isinstance(directives, list):
        return [], "_aws needs a numeric Timestamp and a CloudWatchMetrics list"
    points: list[Datapoint] = []
    for directive in directives:
        try:
            points += _directive_points(doc, directive, stamp / 1000.0)
        except (TypeError, ValueError, KeyError) as exc:
            return [], f"invalid metric directive: {exc}"
    return points, None


def _directive_points(doc: dict[str, Any], directive: Any, at: float) -> list[Datapoint]:
    namespace = directive["Namespace"]
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("Namespace must be a non-empty string")
    dimension_sets = directive.get("Dimensions", [[]]) or [[]]
    series: list[Dimensions] = []
    for names in dimension_sets:
        if not isinstance(names, list) or len(names) > MAX_DIMENSIONS_PER_SET:
            raise ValueError("each dimension set is a list of at most 30 names")
        missing = [n for n in names if not isinstance(doc.get(n), str)]
        if missing:
            raise ValueError(f"dimension {missing[0]!r} has no string value in the document")
        series.append(dims({n: doc[n] for n in names}))
    points: list[Datapoint] = []
    for metric in directive["Metrics"]:
        name = metric["Name"]
        raw = doc.get(name)
        values = raw if isinstance(raw, list) else [raw]
        if raw is None or len(values) > MAX_VALUES_PER_METRIC or not all(map(_number, values)):
            raise ValueError(f"metric {name!r} needs a number or a list of at most 100 numbers")
        unit = metric.get("Unit") or None
        resolution = metric.get("StorageResolution", 60)
        if resolution not in (1, 60):
            raise ValueError(f"metric {name!r}: StorageResolution must be 1 or 60")
        for key in series:
            points += [
                Datapoint(namespace, name, key, float(v), at, unit, resolution) for v in values
            ]
    return points


def parse_logs(text: str) -> tuple[list[Datapoint], list[str]]:
    """Every datapoint in a block of function output, and the problems of refused EMF lines."""
    points: list[Datapoint] = []
    problems: list[str] = []
    for line in text.splitlines():
        found, problem = parse_line(line)
        points += found
        if problem:
            problems.append(problem)
    return points, problems


_REPORT = re.compile(r"^REPORT RequestId: \S+\tDuration: ([\d.]+) ms(.*)$")


def lambda_report_points(function_name: str, text: str, at: float) -> list[Datapoint]:
    """AWS/Lambda's own metrics (Invocations, Errors, Duration by FunctionName) from the
    runtime's `REPORT` lines, as the Lambda service publishes them for every invocation."""
    key = dims({"FunctionName": function_name})
    points: list[Datapoint] = []
    for line in text.splitlines():
        m = _REPORT.match(line.strip())
        if not m:
            continue
        errored = "Status: error" in m.group(2) or "Status: timeout" in m.group(2)
        points += [
            Datapoint("AWS/Lambda", "Invocations", key, 1.0, at, "Count"),
            Datapoint("AWS/Lambda", "Errors", key, 1.0 if errored else 0.0, at, "Count"),
            Datapoint("AWS/Lambda", "Duration", key, float(m.group(1)), at, "Milliseconds"),
        ]
    return points


class MetricStore:
    """Raw values per series, time-ordered and thread-safe, pruned after `retention_seconds`."""

    def __init__(self, retention_seconds: float = 3 * 3600) -> None:
        self._retention = retention_seconds
        self._lock = threading.Lock()
        # (namespace, name, dimensions) -> parallel sorted lists of timestamps and points
        self._times: dict[tuple[str, str, Dimensions], list[float]] = defaultdict(list)
        self._points: dict[tuple[str, str, Dimensions], list[Datapoint]] = defaultdict(list)

    def add(self, points: Iterable[Datapoint]) -> None:
        with self._lock:
            for p in points:
                key = (p.namespace, p.name, p.dimensions)
                i = bisect.bisect_right(self._times[key], p.timestamp)
                self._times[key].insert(i, p.timestamp)
                self._points[key].insert(i, p)

    def values(
        self,
        namespace: str,
        name: str,
        dimensions: Dimensions,
        start: float,
        end: float,
        unit: str | None = None,
    ) -> list[float]:
        """Values of exactly this series with start <= timestamp < end (CloudWatch semantics:
        a metric is identified by its full dimension set)."""
        key = (namespace, name, dimensions)
        with self._lock:
            times = self._times.get(key, [])
            lo, hi = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
            chosen = self._points[key][lo:hi] if times else []
        return [p.value for p in chosen if unit is None or p.unit == unit]

    def series(self) -> list[tuple[str, str, Dimensions]]:
        with self._lock:
            return [k for k, v in self._times.items() if v]

    def prune(self, now: float | None = None) -> None:
        cutoff = (time.time() if now is None else now) - self._retention
        with self._lock:
            for key, times in self._times.items():
                n = bisect.bisect_left(times, cutoff)
                if n:
                    del times[:n]
                    del self._points[key][:n]


class MetricSink:
    """The runtime's `on_logs` callback: EMF lines → the store now, → CloudWatch on `flush`.

    Parsing is cheap and happens in the invoking thread, so an alarm evaluated right after an
    invocation sees its metrics; the CloudWatch calls are batched by `flush` (the evaluator's
    thread), so no request waits on them.
    """

    def __init__(self, store: MetricStore | None = None) -> None:
        self.store = store or MetricStore()
        self.problems: list[tuple[str, str]] = []  # (function, reason) of refused EMF lines
        self._pending: list[Datapoint] = []
        self._lock = threading.Lock()

    def __call__(self, function_name: str, logs: str) -> None:
        points, problems = parse_logs(logs)
        self.add(points + lambda_report_points(function_name, logs, time.time()))
        with self._lock:
            self.problems += [(function_name, p) for p in problems]
            del self.problems[:-100]

    def add(self, points: list[Datapoint]) -> None:
        """Datapoints from elsewhere (service metrics): into the store and on to CloudWatch."""
        self.store.add(points)
        with self._lock:
            self._pending += points

    def flush(self, cloudwatch: Any) -> int:
        """Put the pending datapoints into CloudWatch; returns how many were sent."""
        with self._lock:
            pending, self._pending = self._pending, []
        by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in pending:
            datum: dict[str, Any] = {
                "MetricName": p.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in p.dimensions],
                "Timestamp": datetime.fromtimestamp(p.timestamp, UTC),
                "Value": p.value,
                "StorageResolution": p.storage_resolution,
            }
            if p.unit:
                datum["Unit"] = p.unit
            by_namespace[p.namespace].append(datum)
        for namespace, data in by_namespace.items():
            for i in range(0, len(data), PUT_BATCH):
                cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + PUT_BATCH])
        return len(pending)
