"""Drift of captured traffic against a model version's baseline: PSI, KS, a verdict, a report.

- PSI (population stability index) per feature and for the score, over the card's baseline
  buckets: numeric features use the baseline's quantile bins plus a null bucket; categorical
  features use the declared categories plus an `(unseen)` bucket (a value the model was not
  trained on) and a null bucket. PSI = sum((a - e) * ln(a / e)) over the buckets; a bucket
  empty on both sides adds nothing, one empty on one side only is floored at `EPSILON`
  (otherwise a single unseen value would make PSI infinite).
- KS: the two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical
  CDFs) of the non-null current values against the card's `ks_reference` — 200 training
  quantiles, a deterministic stand-in for the training column that keeps raw rows off the
  card (ferry_core/monitoring/baseline.py). It is reported and published, never alarmed on by
  itself.
- Verdicts come from statistics against thresholds passed in (defaults PSI 0.1 warn, 0.2
  alarm), never from p-values: with the thousands of rows a window holds, a KS p-value calls a
  shift of no practical size significant.
- Fewer rows than `min_samples` in the window give the verdict `insufficient_data` and no
  drift metric at all, so a quiet hour can neither raise nor clear the alarm.

`run_drift` is the whole scheduled job for one model (read the capture window, compute, write
the report beside the capture); the drift function and `ferry demo` call it. numpy only.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from ferry_core.card import Card, CategoricalBaseline, NumericBaseline

DEFAULT_PSI_WARN = 0.1
DEFAULT_PSI_ALARM = 0.2
DEFAULT_MIN_SAMPLES = 500
EPSILON = 1e-4
# Served (ONNX) and baseline (source pipeline) scores agree to the parity tolerance only.
SCORE_TOLERANCE = 1e-5
SCORE = "__score__"  # the baseline key of the score (ferry_core/onboarding/builder.py)
UNSEEN = "(unseen)"
NULL = "(null)"

Status = Literal["ok", "warn", "alarm", "insufficient_data"]
_RANK: dict[str, int] = {"insufficient_data": -1, "ok": 0, "warn": 1, "alarm": 2}


@dataclass(frozen=True)
class DriftThresholds:
    """When PSI warns and alarms, and how many rows a window needs before any verdict."""

    psi_warn: float = DEFAULT_PSI_WARN
    psi_alarm: float = DEFAULT_PSI_ALARM
    min_samples: int = DEFAULT_MIN_SAMPLES

    def __post_init__(self) -> None:
        if not 0 < self.psi_warn <= self.psi_alarm:
            raise ValueError("drift thresholds need 0 < psi_warn <= psi_alarm")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")

    def status(self, psi_value: float) -> Status:
        if psi_value >= self.psi_alarm:
            return "alarm"
        return "warn" if psi_value >= self.psi_warn else "ok"


# ---------------------------------------------------------------- the statistics


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same buckets."""
    if len(expected) != len(actual):
        raise ValueError("expected and actual must have one share per bucket")
    terms = []
    for e, a in zip(expected, actual, strict=True):
        if e <= 0 and a <= 0:
            continue
        e, a = max(e, eps), max(a, eps)
        terms.append((a - e) * math.log(a / e))
    return math.fsum(terms)


def ks_statistic(
    sample: np.ndarray | Sequence[float], reference: np.ndarray | Sequence[float]
) -> float:
    """Two-sample KS statistic: the largest gap between the two empirical CDFs."""
    a = np.sort(np.asarray(sample, dtype=np.float64))
    b = np.sort(np.asarray(reference, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("KS needs at least one value on each side")
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def numeric_values(values: Iterable[Any]) -> np.ndarray:
    """Captured values as float64, null (and anything not a number) as NaN."""
    out = []
    for v in values:
        try:
            out.append(np.nan if v is None else float(v))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, dtype=np.float64)


def snap(values: np.ndarray, anchors: Sequence[float], tol: float) -> np.ndarray:
    """Each value within `tol` of an anchor becomes that anchor (the nearest one).

    Served scores come from the ONNX graph (float32), the score baseline from the source
    pipeline (float64): they agree to the parity tolerance, not exactly. A tree model's scores
    are a few tied values, and its quantile edges and KS reference sit exactly on them, so an
    error of 1e-7 would move a whole tie across an edge and fake a drift of its full share.
    """
    a = np.unique(np.asarray(anchors, dtype=np.float64))
    if a.size == 0 or values.size == 0:
        return values
    idx = np.searchsorted(a, values)
    lo, hi = a[np.clip(idx - 1, 0, a.size - 1)], a[np.clip(idx, 0, a.size - 1)]
    nearest = np.where(np.abs(values - lo) <= np.abs(values - hi), lo, hi)
    return np.where(np.abs(values - nearest) <= tol, nearest, values)


def numeric_buckets(
    values: np.ndarray, baseline: NumericBaseline, tol: float = 0.0
) -> tuple[list[str], list[float], list[float]]:
    """(labels, expected, actual) over the baseline's quantile bins plus a null bucket.

    With `tol` (the score), values that close to an edge count as on it (`snap`).
    """
    edges = np.asarray(baseline.bin_edges, dtype=np.float64)
    if tol:
        values = snap(values, baseline.bin_edges, tol)
    present = values[~np.isnan(values)]
    n = values.size
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    actual = [*(c / n for c in counts.tolist()), (n - present.size) / n]
    expected = [*(s * (1 - baseline.null_share) for s in baseline.bin_shares), baseline.null_share]
    labels = [*_bin_labels(baseline.bin_edges), NULL]
    return labels, expected, actual


def categorical_buckets(
    values: Sequence[Any], baseline: CategoricalBaseline
) -> tuple[list[str], list[float], list[float]]:
    """(labels, expected, actual) over the declared categories, `(unseen)` and `(null)`."""
    tally = dict.fromkeys(baseline.shares, 0)
    unseen = nulls = 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            nulls += 1
        elif isinstance(v, str) and v in tally:
            tally[v] += 1
        else:
            unseen += 1
    n = len(values)
    labels = [*baseline.shares, UNSEEN, NULL]
    expected = [*baseline.shares.values(), 0.0, baseline.null_share]
    actual = [*(c / n for c in tally.values()), unseen / n, nulls / n]
    return labels, expected, actual


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    e = [f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}" for x in edges]
    return [
        f"< {e[0]}",
        *(f"[{lo}, {hi})" for lo, hi in itertools.pairwise(e)),
        f">= {e[-1]}",
    ]


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Bucket:
    bucket: str
    expected: float
    actual: float


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or the score's) drift over the window."""

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    ks: float | None
    status: Status
    rows: int
    non_null: int
    buckets: list[Bucket]

    @property
    def label(self) -> str:
        return "score" if self.feature == SCORE else self.feature


@dataclass(frozen=True)
class DriftReport:
    """The drift of one model version over one window; `features` sorted by PSI, worst first."""

    model: str
    version: int
    window_start: str
    window_end: str
    generated_at: str
    rows: int
    verdict: Status
    thresholds: dict[str, float]
    features: list[FeatureDrift] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    other_version_rows: int = 0
    key: str | None = None

    @property
    def max_psi(self) -> float | None:
        return max((f.psi for f in self.features), default=None)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_psi"] = self.max_psi
        return d

    def summary(self) -> dict[str, Any]:
        """The few figures a log line or a caller needs: verdict, rows, worst features."""
        return {
            "model": self.model,
            "version": self.version,
            "verdict": self.verdict,
            "rows": self.rows,
            "max_psi": self.max_psi,
            "most_drifted": [f.label for f in self.features[:3]],
            "report": self.key,
        }

    def metric_points(self) -> list[tuple[str, float, dict[str, str]]]:
        """(metric name, value, dimensions) to publish; none but DriftRows without a verdict."""
        points = [("DriftRows", float(self.rows), {"model": self.model})]
        if self.verdict == "insufficient_data":
            return points
        points.append(("DriftMaxPSI", float(self.max_psi or 0.0), {"model": self.model}))
        for f in self.features:
            dims = {"model": self.model, "feature": f.label}
            points.append(("DriftPSI", f.psi, dims))
            if f.ks is not None:
                points.append(("DriftKS", f.ks, dims))
        return points


def drift_report(
    card: Card,
    rows: Sequence[Mapping[str, Any]],
    thresholds: DriftThresholds,
    window: tuple[float, float],
    other_version_rows: int = 0,
) -> DriftReport:
    """Compare captured rows (`{"features": {...}, "score": s, "source": ...}`) to the card."""
    n = len(rows)
    features: list[FeatureDrift] = []
    if n >= thresholds.min_samples:
        for name, baseline in card.baseline.items():
            if name == SCORE:
                column = [r.get("score") for r in rows]
            else:
                column = [(r.get("features") or {}).get(name) for r in rows]
            features.append(_feature_drift(name, baseline, column, thresholds))
        features.sort(key=lambda f: (-f.psi, f.feature))
        verdict: Status = max((f.status for f in features), key=_RANK.__getitem__, default="ok")
    else:
        verdict = "insufficient_data"
    sources: dict[str, int] = {}
    for r in rows:
        src = str(r.get("source", "unknown"))
        sources[src] = sources.get(src, 0) + 1
    return DriftReport(
        model=card.name,
        version=card.version,
        window_start=_iso(window[0]),
        window_end=_iso(window[1]),
        generated_at=_iso(time.time()),
        rows=n,
        verdict=verdict,
        thresholds=asdict(thresholds),
        features=features,
        sources=sources,
        other_version_rows=other_version_rows,
    )


def _feature_drift(
    name: str,
    baseline: NumericBaseline | CategoricalBaseline,
    column: list[Any],
    thresholds: DriftThresholds,
) -> FeatureDrift:
    ks: float | None = None
    if isinstance(baseline, NumericBaseline):
        values = numeric_values(column)
        tol = SCORE_TOLERANCE if name == SCORE else 0.0
        labels, expected, actual = numeric_buckets(values, baseline, tol)
        present = values[~np.isnan(values)]
        non_null = int(present.size)
        if non_null and baseline.ks_reference:
            if tol:
                present = snap(present, baseline.ks_reference, tol)
            ks = ks_statistic(present, baseline.ks_reference)
        kind: Literal["numeric", "categorical"] = "numeric"
    else:
        labels, expected, actual = categorical_buckets(column, baseline)
        non_null = sum(v is not None for v in column)
        kind = "categorical"
    value = psi(expected, actual)
    return FeatureDrift(
        feature=name,
        kind=kind,
        psi=value,
        ks=ks,
        status=thresholds.status(value),
        rows=len(column),
        non_null=non_null,
        buckets=[Bucket(lab, e, a) for lab, e, a in zip(labels, expected, actual, strict=True)],
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- the scheduled job


def live_models(registry: Any) -> list[str]:
    """The models with a production version: those whose live traffic drift watches."""
    return [m["name"] for m in registry.models() if m["stages"].get("production")]


def run_drift(
    s3: Any,
    bucket: str,
    registry: Any,
    model: str,
    *,
    window_hours: float,
    thresholds: DriftThresholds,
    now: float | None = None,
    version: int | None = None,
    stage: str = "production",
    max_rows: int = 500_000,
) -> DriftReport:
    """Drift of one model's live version (or `version`) over the last `window_hours`.

    Reads the capture window (ferry_core/monitoring/capture.py), keeps the rows scored by that
    version (the baseline is per version; others are only counted), writes the report as
    `capture/reports/{model}/{date}/{time}-v{n}.json` and `.../latest.json`, and returns it.
    """
    from ferry_core.monitoring.capture import read_capture, report_key, write_report

    end = time.time() if now is None else now
    start = end - window_hours * 3600
    card = registry.resolve(model, version=version, stage=None if version else stage)
    captured = read_capture(s3, bucket, model, start, end, max_rows=max_rows)
    mine = [r for r in captured if r.get("version") == card.version]
    report = drift_report(
        card, mine, thresholds, (start, end), other_version_rows=len(captured) - len(mine)
    )
    report = replace(report, key=report_key(model, card.version, end))
    write_report(s3, bucket, report.as_dict())
    return report
