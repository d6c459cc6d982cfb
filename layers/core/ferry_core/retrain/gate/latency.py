"""The `latency` check: single-row validate + predict p99 within the budget."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.reference import CandidateUnderTest, GateInputError

LATENCY_WARMUP = 10


def check_latency(c: CandidateUnderTest, policy: GatePolicy) -> dict[str, Any]:
    """Single-row validate + predict, timed as the API runs it, after a short warm-up."""
    instance = c.typical()
    model, validator = c.model, c.validator

    def one() -> None:
        verdict = validator.check([instance])
        if not verdict.ok:
            raise GateInputError(f"the typical instance is rejected: {verdict.issues[0].message}")
        model.predict_rows(verdict.rows)

    for _ in range(min(LATENCY_WARMUP, policy.latency_runs)):
        one()
    times = np.empty(policy.latency_runs)
    for i in range(policy.latency_runs):
        start = time.perf_counter()
        one()
        times[i] = time.perf_counter() - start
    ms = times * 1000.0
    p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    passed = p99 <= policy.latency_p99_ms
    rel = "≤" if passed else ">"
    return {
        "passed": passed,
        "message": f"single-row validate+predict p99 {p99:.3f} ms {rel} budget "
        f"{policy.latency_p99_ms:g} ms over {policy.latency_runs} runs (p50 {p50:.3f} ms)",
        "runs": policy.latency_runs,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": float(ms.max()),
        "budget_p99_ms": policy.latency_p99_ms,
    }
