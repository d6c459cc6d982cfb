"""`ferry bench scoring` and `ferry bench batch` run through the command line in a small
configuration, so neither can break silently.

Their speed targets are theirs to check at full size: a run this small may miss one (the
command then exits 1 and says so), which is no failure here. What is asserted is that the run
completed and printed every figure with its conditions.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.bench_cli import run_bench

MISSED = "a target was missed"


def bench(*args: str) -> dict[str, Any]:
    """Run `ferry bench <args> --json` in a fresh process (a bench sets process-wide AWS
    variables); its JSON once it completed."""
    done = run_bench(*args, "--json", timeout=180)
    completed = done.returncode == 0 or (done.returncode == 1 and MISSED in done.stderr)
    assert completed, f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    doc = json.loads(done.stdout)
    assert (done.returncode == 0) is all(t["passed"] for t in doc["targets"])
    return doc


def assert_targets(targets: list[dict[str, Any]], names: list[str]) -> None:
    """Every target named, with its measured figure, its limit and its verdict."""
    for name in names:
        (found,) = [t for t in targets if t["target"].startswith(name)]
        assert isinstance(found["measured"], int | float) and found["limit"] > 0
        assert isinstance(found["passed"], bool)


def test_bench_scoring_prints_every_figure_with_its_conditions() -> None:
    """Given 30 calls per case and one cold start per mode, the scoring bench prints warm
    latencies of each case, the capture and gate budgets, the cold starts and each target."""
    doc = bench("scoring", "--iterations", "30", "--cold-runs", "1")
    meta = doc["meta"]
    assert (meta["iterations"], meta["cold_runs"]) == (30, 1)
    assert {"model", "estimators", "cpu_count", "python", "onnxruntime"} <= set(meta)
    assert 0 <= meta["capture_sample_rate"] <= 1
    kinds = ("ort", "handler", "handler_capture_off", "sklearn")
    assert set(doc["warm"]) == {f"{k}/{n}" for k in kinds for n in (1, 100)}
    for figures in doc["warm"].values():
        assert figures["n"] == 30 and 0 < figures["p50_us"] <= figures["p99_us"]
    capture = doc["capture"]
    assert (capture["requests"], capture["sample_rate"], capture["budget_us"]) == (20_000, 0.1, 5)
    assert capture["flush_every_rows"] > 0 and capture["background_flush"] is True
    assert capture["rows_written"] > 0 and capture["mean_us"] > 0
    assert set(capture["handler_mean_on_minus_off_us"]) == {"1", "100"}
    gate = doc["gate_latency"]
    assert (gate["runs"], gate["budget_p99_ms"]) == (300, 50)
    assert 0 < gate["p50_ms"] <= gate["p99_ms"] <= gate["max_ms"]
    assert set(doc["cold"]["median_ms"]) == {"handler", "bare", "bare-boto3"}
    assert_targets(
        doc["targets"],
        [
            "handler p50 ≤ 8× raw ORT p50 (1)",
            "handler p50 < 1/5 sklearn p50 (100)",
            "handler p99 < 1 ms (1)",
            "handler p99 < 3 ms (100)",
            "cold handler ≤ 1.5× bare",
            "capture.offer mean < 5 µs (10% sampled)",
            "gate latency check p99 ≤ 50 ms (300 runs)",
        ],
    )


def test_bench_batch_prints_every_figure_with_its_conditions() -> None:
    """Given 20,000 rows in chunks of 4,096 and a 10-tree model, the batch bench scores every
    row end to end and prints rows/s against raw onnxruntime and the peak RSS."""
    doc = bench("batch", "--rows", "20000", "--chunk-rows", "4096", "--estimators", "10")
    assert (doc["rows"], doc["chunk_rows"], doc["estimators"]) == (20_000, 4096, 10)
    assert doc["file_bytes"] > 0 and doc["cpu_count"] >= 1 and doc["python"]
    assert doc["manifest_ok"] is True  # every row scored or rejected, the run succeeded
    assert doc["end_to_end_rows_per_second"] > 0 and doc["raw_onnxruntime_rows_per_second"] > 0
    assert 0 < doc["rss_before_run_bytes"] <= doc["peak_rss_bytes"]
    assert doc["ratio"] > 0
    assert_targets(doc["targets"], ["end to end ≥ 40%", "peak RSS of the batch process < 1 GiB"])
