"""`ferry smoke --env local` against a running local platform, as CI runs it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from ferry_cli.main import app
from ferry_cli.smoke_cmds import example_instances

MODEL = "credit-risk"


@pytest.fixture(scope="module")
def serving(local_platform: Any, register_model: Any, built: Any) -> Any:
    """The platform serving `credit-risk` in production."""
    if local_platform.request("GET", f"/v1/models/{MODEL}")[0] != 200:
        register_model(local_platform, built, MODEL)
        deadline = time.monotonic() + 60
        while local_platform.request("GET", f"/v1/models/{MODEL}")[0] != 200:
            assert time.monotonic() < deadline, f"{MODEL} registered but never served"
            time.sleep(0.5)
    return local_platform


@pytest.fixture(autouse=True)
def _its_local_json(local_platform: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(local_platform.state_dir / "local.json"))


def test_every_check_passes_on_a_healthy_local_platform(serving: Any) -> None:
    """
    Given the local platform serving credit-risk
    When `ferry smoke --env local --json` runs
    Then health, a signed prediction, a batch round trip, the unsigned refusal and the audit
        chains all pass, and it exits 0
    """
    result = CliRunner().invoke(app, ["smoke", "--env", "local", "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert list(checks) == [
        "health",
        "signed prediction",
        "batch round trip",
        "unsigned call refused",
        "audit verify",
    ]
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["batch round trip"]["detail"] == "4 in = 3 scored + 1 rejected"
    assert checks["unsigned call refused"]["detail"] == "403 Forbidden"


def test_a_model_the_stage_does_not_serve_fails_the_run(serving: Any) -> None:
    result = CliRunner().invoke(app, ["smoke", "--env", "local", "--model", "no-such-model"])
    assert result.exit_code == 1
    assert "check(s) failed: signed prediction, batch round trip" in result.output
    assert "health" not in result.output.split("failed:")[-1]


def test_example_instances_stay_inside_the_schema() -> None:
    features = [
        {"name": "age", "type": "integer", "minimum": 18, "maximum": 100},
        {"name": "income", "type": "number", "minimum": 0},
        {"name": "purpose", "type": "category", "categories": ["car", "home"]},
        {"name": "owner", "type": "boolean"},
    ]
    rows = example_instances(features, 3)
    assert all(18 <= r["age"] <= 100 and isinstance(r["age"], int) for r in rows)
    assert all(r["income"] >= 0 and r["purpose"] in ("car", "home") for r in rows)
    assert len({r["age"] for r in rows}) == 3
