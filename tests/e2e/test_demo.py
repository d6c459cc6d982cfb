"""`ferry demo`, the README's main job, runs end to end and exits 0 only when every step held."""

from __future__ import annotations

from ferry_cli.main import app
from typer.testing import CliRunner


def test_demo_runs_every_step_and_exits_zero() -> None:
    result = CliRunner().invoke(app, ["demo", "--rows", "1500", "--estimators", "15"])
    assert result.exit_code == 0, result.output
    for step in ("Register it", "Promote v1", "Score applications", "Refuse bad requests"):
        assert step in result.output
    assert "FAILED" not in result.output
