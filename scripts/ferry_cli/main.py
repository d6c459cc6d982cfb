"""The `ferry` command line (Typer + Rich). Every failure exits non-zero with a one-line reason."""

from __future__ import annotations

import typer

from ferry_cli.alarms_cmds import register_alarms_command
from ferry_cli.bench_cmds import bench_app
from ferry_cli.deploy_cmds import register_deploy_commands
from ferry_cli.drift_cmds import register_drift_commands
from ferry_cli.governance_cmds import register_commands
from ferry_cli.local_cmds import register_local_commands
from ferry_cli.retrain_cmds import register_retrain_commands
from ferry_cli.smoke_cmds import register_smoke_command
from ferry_cli.validate_cmds import register_validate_command

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Ferry: tabular models into governed production.",
)
app.add_typer(bench_app, name="bench")  # batch, scoring, load, cost, reliability


@app.callback()
def main(
    acting_as: str | None = typer.Option(
        None,
        "--as",
        metavar="IDENTITY",
        help="local identity to act as (client, data-scientist, approver, admin; "
        "default: $FERRY_IDENTITY, else admin); deployed stages use your AWS credentials",
    ),
) -> None:
    """Ferry: tabular models into governed production."""
    from ferry_cli.environments import ACTING_AS

    ACTING_AS.set(acting_as)


register_commands(app)  # register, models, show, promote, rollback, archive, approve, reject, audit
register_local_commands(app)  # local up
register_drift_commands(app)  # drift
register_retrain_commands(app)  # retrain
register_deploy_commands(app)  # deploy
register_smoke_command(app)  # smoke
register_alarms_command(app)  # alarms
register_validate_command(app)  # validate


@app.command()
def demo(
    rows: int = typer.Option(6000, help="rows of generated training data"),
    estimators: int = typer.Option(100, help="boosting rounds of the demo model"),
) -> None:
    """Build, register, promote and score a model on the local platform, end to end."""
    from ferry_cli.demo.story import run_demo

    if not run_demo(app, rows=rows, estimators=estimators):
        typer.echo("ferry demo: a step did not hold (see above)", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
