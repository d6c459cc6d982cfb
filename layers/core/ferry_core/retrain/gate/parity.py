"""The `parity` check: the ONNX graph, run through the serving code, reproduces the
source pipeline's scores on the reference rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.reference import REFERENCE_SCORE, CandidateUnderTest, GateInputError


def check_parity(c: CandidateUnderTest, policy: GatePolicy) -> dict[str, Any]:
    """The ONNX graph, through the serving code, reproduces the source pipeline's scores."""
    ref = c.reference
    if ref.scores is None:
        raise GateInputError(f"the reference rows carry no {REFERENCE_SCORE} column")
    if not np.isfinite(ref.scores).all():
        raise GateInputError(f"{REFERENCE_SCORE} holds null or non-finite values")
    diff = np.abs(c.scores - ref.scores)
    worst = float(diff.max())
    over = int((diff > policy.parity_tolerance).sum())
    passed = worst <= policy.parity_tolerance
    rel = "≤" if passed else ">"
    return {
        "passed": passed,
        "message": f"ONNX vs source scores on {diff.size} rows: max abs diff {worst:.3g} {rel} "
        f"tolerance {policy.parity_tolerance:.3g}" + ("" if passed else f" ({over} row(s) over)"),
        "rows": int(diff.size),
        "max_abs_diff": worst,
        "mean_abs_diff": float(diff.mean()),
        "rows_over_tolerance": over,
        "tolerance": policy.parity_tolerance,
    }
