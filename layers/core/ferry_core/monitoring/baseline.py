"""Baseline statistics of every feature and of the score, recorded on the card for drift.

Numeric: quantile bin edges and the share of rows per bin (what PSI compares against), plus
moments; categorical: the share of each category and of nulls. numpy only, so the drift
function can recompute the same bins on captured traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ferry_core.card import CategoricalBaseline, Feature, NumericBaseline

DEFAULT_BINS = 10
# Size of the KS reference (`NumericBaseline.ks_reference`): 200 quantiles resolve the
# training CDF to 1/400, a tenth of the smallest KS shift worth reporting, in ~4 KB a feature.
KS_REFERENCE_SIZE = 200


def ks_reference(present: np.ndarray, size: int = KS_REFERENCE_SIZE) -> list[float]:
    """Observed values at levels (i + 0.5) / size: a deterministic stand-in for the training rows.

    A two-sample KS statistic against it equals one against the training column up to
    1 / (2 * size), with no raw rows on the card and no sampling noise. Inverted-CDF quantiles
    are observed values, so a discrete feature's reference has its real atoms.
    """
    levels = (np.arange(size) + 0.5) / size
    return np.quantile(np.sort(present), levels, method="inverted_cdf").tolist()


def numeric_baseline(
    values: Sequence[Any] | np.ndarray, bins: int = DEFAULT_BINS
) -> NumericBaseline:
    """Quantile bins over the non-null values; edges are unique and open-ended at both sides."""
    arr = np.asarray(values, dtype=np.float64)
    present = arr[~np.isnan(arr)]
    count = int(arr.size)
    if present.size == 0:
        raise ValueError("cannot build a baseline from a column with no values")
    inner = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = inner.tolist()
    idx = np.searchsorted(inner, present, side="right")
    shares = np.bincount(idx, minlength=len(inner) + 1) / present.size
    qs = {f"p{q}": float(np.quantile(present, q / 100)) for q in (1, 5, 25, 50, 75, 95, 99)}
    return NumericBaseline(
        count=count,
        null_share=float(1 - present.size / count),
        mean=float(present.mean()),
        std=float(present.std()),
        min=float(present.min()),
        max=float(present.max()),
        bin_edges=edges,
        bin_shares=shares.tolist(),
        quantiles=qs,
        ks_reference=ks_reference(present),
    )


def categorical_baseline(values: Sequence[Any], categories: Sequence[str]) -> CategoricalBaseline:
    """Share of each declared category among all rows; nulls counted separately."""
    count = len(values)
    if count == 0:
        raise ValueError("cannot build a baseline from an empty column")
    tally = dict.fromkeys(categories, 0)
    nulls = 0
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            nulls += 1
        elif v in tally:
            tally[v] += 1
    return CategoricalBaseline(
        count=count, null_share=nulls / count, shares={c: n / count for c, n in tally.items()}
    )


def feature_baseline(
    feature: Feature, values: Sequence[Any]
) -> NumericBaseline | CategoricalBaseline:
    if feature.type == "category":
        return categorical_baseline(values, feature.categories or [])
    return numeric_baseline(
        np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    )
