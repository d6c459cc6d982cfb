"""`ferry bench load`: Locust against the running local platform, through the command line."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from ferry_bench.http_load import LoadBenchError, run_time_seconds
from ferry_cli.main import app


@pytest.fixture(scope="module")
def with_demo_model(local_platform: Any, register_model: Any, built: Any) -> Any:
    """The platform serving `credit-risk`, the model the load test's requests are for."""
    status, _, _ = local_platform.request("GET", "/v1/models/credit-risk")
    if status != 200:
        register_model(local_platform, built, "credit-risk")
        deadline = time.monotonic() + 60
        while local_platform.request("GET", "/v1/models/credit-risk")[0] != 200:
            assert time.monotonic() < deadline, "credit-risk registered but never served"
            time.sleep(0.5)
    return local_platform


@pytest.fixture(autouse=True)
def _its_local_json(local_platform: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench signs a local platform's calls with the identities its local.json holds."""
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(local_platform.state_dir / "local.json"))


def test_a_short_headless_run_reports_locusts_figures_and_no_failures(
    with_demo_model: Any,
) -> None:
    args = ["bench", "load", "--api-url", with_demo_model.api_url, "--users", "2"]
    result = CliRunner().invoke(app, [*args, "--run-time", "3s", "--bad-percent", "30", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True
    rows = {r["name"]: r for r in report["rows"]}
    total = rows["Aggregated"]
    # every request was signed; the only failures Locust may count are the stage's 429s
    throttled = report["meta"]["throttled"]
    assert total["requests"] > 10 and total["failures"] == throttled["count"]
    if throttled["count"]:
        assert throttled["first_after_requests"] > 0
    # a throttled request is answered in well under a millisecond: with many 429s in the mix,
    # Locust's median may round to 0 ms, its tail may not
    assert 0 <= total["p50_ms"] <= total["p95_ms"] <= total["p99_ms"] and total["p99_ms"] > 0
    # Locust's percentiles are its response-time buckets (two significant digits), max is exact
    assert total["p99_ms"] <= total["max_ms"] * 1.1 + 1
    assert total["rps"] > 0
    assert rows["predict: valid → 200"]["requests"] > 0
    refused = [n for n in rows if n.startswith("predict: ") and not n.endswith("→ 200")]
    assert refused, "the bad requests were sent and refused as documented"
    assert report["meta"]["platform_started_here"] is False


def test_a_model_the_api_does_not_serve_is_a_clear_error(local_platform: Any) -> None:
    args = ["bench", "load", "--api-url", local_platform.api_url, "--model", "no-such-model"]
    result = CliRunner().invoke(app, [*args, "--run-time", "1s"])
    assert result.exit_code == 1
    assert "no production version of 'no-such-model' (HTTP 404)" in result.output


def test_run_time_is_read_like_locust_reads_it() -> None:
    assert run_time_seconds("30s") == 30
    assert run_time_seconds("2m") == 120
    assert run_time_seconds("1h30m") == 5400
    assert run_time_seconds("45") == 45
    with pytest.raises(LoadBenchError):
        run_time_seconds("soon")
