"""`ferry bench cost` through the command line at tiny sizes, so it cannot break silently.

No figure is held to a speed: what is asserted is that every dollar figure is there with its
conditions, the plot is written, and earlier output can be priced again without measuring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.bench_cli import run_bench

PLATFORMS = {
    "Lambda x86_64 + HTTP API",
    "Lambda arm64 + HTTP API",
    "SageMaker Serverless",
    "SageMaker real-time ml.t3.medium",
    "SageMaker real-time ml.m5.large",
}


def cost(*args: str) -> dict[str, Any]:
    """`ferry bench cost <args> --json`, its JSON once it completed."""
    done = run_bench("cost", *args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_bench_cost_prices_measured_figures_with_their_conditions(tmp_path: Path) -> None:
    """Given 30 handler calls per size, a 5-tree model and 5,000 batch rows, the cost bench
    prices predictions and rows on every platform, plots the month and names the crossings."""
    plot = tmp_path / "cost.png"
    args = ["--iterations", "30", "--estimators", "5", "--rows", "5000", "--plot", str(plot)]
    doc = cost(*args, "--requests-per-month", "1000000", "--requests-per-month", "1e9")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["prices"]["region"] and doc["prices"]["as_of"]
    assert all(p["source"].startswith("https://") for p in doc["prices"]["table"].values())
    sizing = doc["conditions"]["sizing"]
    assert sizing["config"] == "infra/config.py" and sizing["scoring_memory_mb"] >= 128
    assert "arm64" in doc["conditions"]["arm64"]
    online = doc["measured"]["online"]["conditions"]
    assert online["iterations"] == 30 and online["machine"] and online["emulator"]
    batch = doc["measured"]["batch"]
    assert batch["rows_per_second"] > 0 and batch["conditions"]["rows"] == 5000
    figures = doc["figures"]
    for n in ("1", "100"):
        per = figures["per_million_predictions"][n]
        assert per["billed_ms"] >= 1 and per["request_bytes"] > 0 and per["response_bytes"] > 0
        assert set(per["usd"]) == PLATFORMS - {p for p in PLATFORMS if "real-time" in p}
        assert all(v > 0 for v in per["usd"].values())
    assert list(figures["monthly_usd_one_instance_requests"]) == ["1e+06", "1e+09"]
    for row in figures["monthly_usd_one_instance_requests"].values():
        assert set(row) >= PLATFORMS
    assert set(figures["batch_per_million_rows"]) == {"x86_64", "arm64"}
    for c in figures["crossings"]:
        assert c["cheaper_below"] in PLATFORMS and c["cheaper_above"] in PLATFORMS

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(doc))
    again = cost("--from", str(earlier), "--env", "dev")
    assert again["measured"]["online"]["warm"] == doc["measured"]["online"]["warm"]
    assert again["measured"]["online"]["conditions"]["source"].startswith("earlier output")
    assert again["conditions"]["sizing"]["environment"] == "dev"
