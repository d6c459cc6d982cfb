"""`ferry demo`, the README's main job, runs end to end and exits 0 only when every step held."""

from __future__ import annotations

from typer.testing import CliRunner

from ferry_cli.main import app


def test_demo_runs_every_step_and_exits_zero() -> None:
    result = CliRunner().invoke(app, ["demo", "--rows", "1500", "--estimators", "15"])
    assert result.exit_code == 0, result.output
    for step in (
        "Start the local platform",
        "Register two versions",
        "Roll production back",
        "Score applications over the HTTP API",
        "Refuse bad requests",
        "Score a batch upload",
        "Send drifted traffic",
        "Drift starts retraining: validated and promoted",
        "Retrain behind an approval gate and a canary",
        "A second model, onboarded without a redeploy",
        "tumour is retrained by its owner's trainer",
        "Verify every chain from the command line",
    ):
        assert step in result.output
    assert "FAILED" not in result.output and "every step held" in result.output
    # The retraining story shows its validation report and the states it went through.
    assert "validation report" in result.output and "WaitForApproval" in result.output
