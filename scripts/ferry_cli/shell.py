"""What every `ferry` command shares: the common options, one-line failures, JSON-or-table
output, and a session on the environment `--env` names (its core objects, built lazily)."""

from __future__ import annotations

import contextlib
import getpass
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from ferry_cli.environments import Environment, EnvironmentUnavailable, resolve

STAGE_CHOICES = ("production", "staging")

ENV_OPTION = typer.Option("local", "--env", help="local (the local platform), dev or prod")
JSON_OPTION = typer.Option(False, "--json", help="print JSON instead of tables")
ACTOR_OPTION = typer.Option(None, "--actor", help="who acts (default: your AWS identity or user)")
REASON_OPTION = typer.Option("", "--reason", help="why: recorded in the audit trail")


def console() -> Console:
    return Console(width=140)


def fail(command: str, message: str) -> NoReturn:
    """Print `ferry COMMAND: reason` on one line to stderr and exit 1."""
    first = " ".join(str(message).split())  # one line, whatever the error carried
    typer.echo(f"ferry {command}: {first}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def reporting(command: str) -> Iterator[None]:
    """Turn every expected failure into a one-line reason and exit status 1."""
    from ferry_core.errors import FerryError

    try:
        yield
    except typer.Exit:
        raise
    except FerryError as exc:
        fail(command, exc.message)
    except EnvironmentUnavailable as exc:
        fail(command, str(exc))
    except (ClientError, BotoCoreError) as exc:
        fail(command, f"AWS call failed: {exc}")


def emit(data: Any, as_json: bool, render: Callable[[Console], None]) -> None:
    """`data` as JSON for scripts, or `render` it as tables for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render(console())


@dataclass
class EnvironmentSession:
    """The core objects for one resolved environment (built lazily, clients shared)."""

    env: Environment
    cache_dir: str

    @cached_property
    def governance(self) -> Any:
        from ferry_core.registry.governance import connect

        return connect(
            dynamodb=self.env.client("dynamodb"),
            s3=self.env.client("s3"),
            events=self.env.client("events"),
            registry_table=self.env.output("RegistryTableName"),
            audit_table=self.env.output("AuditTableName"),
            anchor_bucket=self.env.output("AuditAnchorBucketName"),
            cache_dir=self.cache_dir,
            env=self.env.name,
            approval_required=self.env.approval_required,
        )

    @property
    def reader(self) -> Any:
        return self.governance.reader

    @property
    def audit(self) -> Any:
        return self.governance.audit

    def decide(self, model: str, version: int, approved: bool, actor: str, reason: str) -> Any:
        """Approve or reject, then resume the retraining run waiting on it."""
        from ferry_core.retrain.approval import ApprovalGate, decide

        gate = ApprovalGate(self.env.client("dynamodb"), self.env.output("RegistryTableName"))
        outcome, _ = decide(
            self.governance,
            gate,
            self.env.client("stepfunctions"),
            model,
            version,
            approved=approved,
            actor=actor,
            reason=reason,
        )
        return outcome

    def actor(self, given: str | None) -> str:
        """Who acts: as given, else the AWS identity (deployed stages) or the local user."""
        if given:
            return given
        if self.env.endpoint_url is None:  # a deployed environment: the AWS identity acting
            with contextlib.suppress(ClientError, BotoCoreError):
                return self.env.client("sts").get_caller_identity()["Arn"]
        return getpass.getuser()


@contextlib.contextmanager
def session(env_name: str) -> Iterator[EnvironmentSession]:
    """A session on `--env`, with a scratch model cache removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ferry-cli-") as cache:
        yield EnvironmentSession(resolve(env_name), cache)
