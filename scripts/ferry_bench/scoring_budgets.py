"""Two budgets `ferry bench scoring` checks besides the handler's own latency.

Capture: the scoring handler offers every request to its capture sample; at production's
rate that must cost under 5 µs a request on average, flushes running in the background.
The gate: the validation gate's latency check (single-row validate + predict) must find the
candidate's p99 within its default budget, or every retrain would be refused. Both are
speed targets, so they are measured here, with their conditions printed, and not in tests.
"""

from __future__ import annotations

import time
from typing import Any

CAPTURE_BUDGET_US = 5.0
CAPTURE_REQUESTS = 20_000  # one-row requests offered, as the handler offers them


def production_capture_rate() -> float:
    """The share of requests production captures (infra/config.py), the rate the budget is for."""
    from infra.config import ENVIRONMENTS

    return ENVIRONMENTS["prod"].capture_sample_rate


def offer_cost(
    buffer: Any, flush_every: int, instance: dict[str, Any], prediction: dict[str, Any]
) -> dict[str, Any]:
    """Time `CAPTURE_REQUESTS` one-row offers to `buffer`; mean µs per request, and conditions.

    The buffer is the handler's own (flushing every `flush_every` rows): its background
    flushes write to the bucket meanwhile, as they do while the handler serves.
    """
    instances, predictions = [instance], [prediction]
    written = buffer.written_rows
    start = time.perf_counter()
    for _ in range(CAPTURE_REQUESTS):
        buffer.offer("credit-risk", 1, "bench", instances, predictions)
    mean_us = (time.perf_counter() - start) / CAPTURE_REQUESTS * 1e6
    buffer.flush(wait=True)
    return {
        "mean_us": mean_us,
        "requests": CAPTURE_REQUESTS,
        "sample_rate": buffer.sample_rate,
        "flush_every_rows": flush_every,
        "rows_written": buffer.written_rows - written,
        "background_flush": True,
        "budget_us": CAPTURE_BUDGET_US,
    }


def gate_latency(built: Any, s3: Any, bucket: str) -> dict[str, Any]:
    """The gate's latency check, with the default policy, on `built` written as a candidate."""
    from ferry_core.card import Lineage
    from ferry_core.retrain.candidate import write_bundle
    from ferry_core.retrain.gate.latency import check_latency
    from ferry_core.retrain.gate.policy import GatePolicy
    from ferry_core.retrain.gate.reference import CandidateUnderTest

    bundle = write_bundle(s3, bucket, built, "credit-risk", "bench-gate-latency", Lineage())
    candidate = CandidateUnderTest(bundle.spec, bundle.onnx_bytes, bundle.reference_table())
    return check_latency(candidate, GatePolicy())


def measure_budgets(
    capture: Any,
    instance: dict[str, Any],
    prediction: dict[str, Any],
    built: Any,
    s3: Any,
    bucket: str,
) -> dict[str, Any]:
    """Both budgets' figures: the handler's capture buffer set to production's rate (then
    closed), and the gate's latency check on `built`."""
    from ferry_core.settings import ScoringSettings

    capture.sample_rate = production_capture_rate()
    flush_every = ScoringSettings.from_env().capture_max_records
    figures = {
        "capture": offer_cost(capture, flush_every, instance, prediction),
        "gate_latency": gate_latency(built, s3, bucket),
    }
    capture.close()
    return figures


def budget_targets(capture: dict[str, Any], gate: dict[str, Any]) -> list[dict[str, Any]]:
    """Both budgets as rows of the bench's target table."""
    rate, cost = capture["sample_rate"], capture["mean_us"]
    budget = gate["budget_p99_ms"]
    return [
        {
            "target": f"capture.offer mean < {CAPTURE_BUDGET_US:g} µs ({rate:.0%} sampled)",
            "measured": cost,
            "limit": CAPTURE_BUDGET_US,
            "unit": "µs",
            "passed": cost < CAPTURE_BUDGET_US,
        },
        {
            "target": f"gate latency check p99 ≤ {budget:g} ms ({gate['runs']} runs)",
            "measured": gate["p99_ms"],
            "limit": budget,
            "unit": "ms",
            "passed": gate["passed"],
        },
    ]
