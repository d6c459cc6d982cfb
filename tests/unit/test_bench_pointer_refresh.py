"""`ferry bench refresh` takes its figures: the request path with the refresh off and on, and
what one refresh costs its thread (a short run; the figures themselves are not judged)."""

from __future__ import annotations

import json

import pytest

from ferry_bench.pointer_refresh import run_refresh_bench


def test_the_refresh_bench_reports_added_latency_and_the_refresh_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_refresh_bench(seconds=1.5, as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["request"]) == {"off", "1s", "10ms"}
    assert all(doc["request"][case]["n"] > 0 for case in doc["request"])
    assert set(doc["added_us"]) == {"1s", "10ms"}
    assert doc["refresh"]["count"] > 0 and doc["refresh"]["keys"] == 2
    assert doc["pointer_hit_ns"] > 0


def test_the_refresh_bench_runs_from_the_command_line() -> None:
    from typer.testing import CliRunner

    from ferry_cli.main import app

    result = CliRunner().invoke(app, ["bench", "refresh", "--seconds", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["request"]) == {"off", "1s", "10ms"}
