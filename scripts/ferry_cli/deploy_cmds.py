"""`ferry deploy --env dev|prod`: preflight, then the pinned CDK CLI, then `.ferry/{env}.json`.

Nothing is deployed unless every preflight check passes (ferry_cli/preflight.py); each failed
check is one line on stderr and the exit status is 1. `--check-only` (or `--dry-run`) stops
after the preflight.
"""

from __future__ import annotations

import boto3
import typer
from rich.table import Table

from ferry_cli.deployment import Approval, DeployError, run_cdk_deploy, write_environment_file
from ferry_cli.preflight import Check, preflight, stack_of
from ferry_cli.shell import console, fail
from infra.config import ENVIRONMENTS
from infra.toolchain import node_executable

APPROVAL_OPTION = typer.Option(
    "broadening", help="what the CDK asks about first: broadening (IAM) changes, any-change, never"
)
MARKS = {"ok": "[green]✔[/]", "failed": "[red]✘[/]", "skipped": "[yellow]–[/]"}


def deploy(
    env: str = typer.Option(..., "--env", help="the environment to deploy: dev or prod"),
    check_only: bool = typer.Option(
        False, "--check-only", "--dry-run", help="run the preflight checks only; deploy nothing"
    ),
    require_approval: Approval = APPROVAL_OPTION,
) -> None:
    """Deploy the environment's stack with the pinned CDK, after checking all it needs."""
    if env not in ENVIRONMENTS:
        fail(
            "deploy",
            f"--env must be {' or '.join(ENVIRONMENTS)} (the local platform is `ferry local up`)",
        )
    config = ENVIRONMENTS[env]
    node = node_executable()
    checks = preflight(config, boto3.Session(), node=node)
    console().print(_table(stack_of(config), checks))
    failed = [c for c in checks if c.status == "failed"]
    for check in failed:
        typer.echo(f"ferry deploy: {check.message}", err=True)
    if failed:
        raise typer.Exit(1)
    if check_only:
        console().print(f"preflight passed: {stack_of(config)} can be deployed")
        return
    assert node is not None  # the node check passed
    try:
        outputs = run_cdk_deploy(config, node, require_approval)
    except DeployError as exc:
        fail("deploy", str(exc))
    path = write_environment_file(config, outputs)
    console().print(f"[green]✔[/] {stack_of(config)} deployed; its endpoints are in {path}")


def _table(stack: str, checks: list[Check]) -> Table:
    table = Table(title=f"preflight of {stack}", show_header=False)
    for check in checks:
        table.add_row(MARKS[check.status], check.name, check.message)
    return table


def register_deploy_commands(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
