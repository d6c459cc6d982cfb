"""The `segments` check: every named segment group with enough rows of both classes
reaches its AUC floor.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.reference import (
    CandidateUnderTest,
    GateInputError,
    number_text,
    roc_auc,
)
from ferry_core.serving.inference import MISSING_CATEGORY


def segment_groups(definition: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> dict:
    """Group masks of one segment definition: numeric bands by `edges` (lower bound included),
    else one group per value of the feature (nulls in no group)."""
    feature = definition.get("feature")
    if feature not in columns:
        raise GateInputError(f"segment feature {feature!r} is not a column of the reference")
    col = columns[feature]
    groups: dict[str, np.ndarray] = {}
    if "edges" in definition:
        edges = [float(e) for e in definition["edges"]]
        for lo, hi in itertools.pairwise(edges):
            label = (
                f"{number_text(lo)}-{number_text(hi - 1)}"
                if hi.is_integer()
                else f"{number_text(lo)}-{number_text(hi)}"
            )
            with np.errstate(invalid="ignore"):
                groups[label] = (col >= lo) & (col < hi)
    elif col.dtype == object:
        for value in sorted({v for v in col.tolist() if v != MISSING_CATEGORY}):
            groups[value] = col == value
    else:
        for value in sorted(set(col[np.isfinite(col)].tolist())):
            groups[number_text(value)] = col == value
    return groups


def check_segments(c: CandidateUnderTest, policy: GatePolicy) -> dict[str, Any]:
    """Each named segment group with enough rows of both classes must reach its AUC floor."""
    definitions = c.spec.metrics.get("segment_definitions") or {}
    if not definitions:
        return {"passed": True, "message": "no segments defined", "segments": {}}
    y = c.reference.require_labels()
    scores = c.scores
    results: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    skipped = 0
    for seg, definition in definitions.items():
        floor = float(definition.get("floor", policy.segment_floor))
        results[seg] = {}
        for group, mask in segment_groups(definition, c.reference.columns).items():
            n, pos = int(mask.sum()), int(y[mask].sum())
            entry: dict[str, Any] = {"rows": n, "positives": pos, "floor": floor}
            if n < policy.segment_min_rows:
                entry.update(status="skipped", reason=f"{n} rows < {policy.segment_min_rows}")
            elif pos in (0, n):
                entry.update(status="skipped", reason="one class only")
            else:
                auc = roc_auc(y[mask], scores[mask])
                ok = auc is not None and auc >= floor
                entry.update(auc=auc, status="passed" if ok else "failed")
                if not ok:
                    failed.append(f"{seg}={group} AUC {auc:.3f} < {floor:g}")
            skipped += entry["status"] == "skipped"
            results[seg][group] = entry
    groups = sum(len(g) for g in results.values())
    if failed:
        message = f"{len(failed)} segment group(s) below their AUC floor: " + "; ".join(failed)
    else:
        message = (
            f"{groups - skipped} segment group(s) at or above their AUC floor, "
            f"{skipped} skipped (fewer than {policy.segment_min_rows} rows or one class)"
        )
    return {
        "passed": not failed,
        "message": message,
        "groups": groups,
        "failed": len(failed),
        "skipped": skipped,
        "min_rows": policy.segment_min_rows,
        "segments": results,
    }
