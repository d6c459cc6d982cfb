"""What every `ferry` command shares: the common options, one-line failures, JSON-or-table
output, and a session on the environment `--env` names: direct reads of its registry and
audit trail, and signed calls to its governance API (the only way to change either)."""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from ferry_cli.environments import Environment, EnvironmentUnavailable, resolve
from ferry_cli.governance_api import GovernanceApi

STAGE_CHOICES = ("production", "staging")

ENV_OPTION = typer.Option("local", "--env", help="local (the local platform), dev or prod")
JSON_OPTION = typer.Option(False, "--json", help="print JSON instead of tables")
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
    """One resolved environment: its registry and audit trail to read (clients shared, built
    lazily), and its governance API to change them as the caller."""

    env: Environment

    @cached_property
    def reader(self) -> Any:
        from ferry_core.registry.reader import RegistryReader

        return RegistryReader(
            self.env.client("dynamodb"), self.env.output("RegistryTableName"), pointer_ttl_seconds=0
        )

    @cached_property
    def audit(self) -> Any:
        from ferry_core.audit.anchors import AnchorStore
        from ferry_core.audit.chain import AuditLog

        anchors = AnchorStore(self.env.client("s3"), self.env.output("AuditAnchorBucketName"))
        return AuditLog(self.env.client("dynamodb"), self.env.output("AuditTableName"), anchors)

    @cached_property
    def api(self) -> GovernanceApi:
        return GovernanceApi(self.env)

    def caller(self) -> str:
        """Who the caller's credentials are (the training run's author on a manual
        registration): their AWS principal, else the local user name."""
        with contextlib.suppress(ClientError, BotoCoreError):
            return self.env.client("sts").get_caller_identity()["Arn"]
        return getpass.getuser()


@contextlib.contextmanager
def session(env_name: str) -> Iterator[EnvironmentSession]:
    """A session on `--env`."""
    yield EnvironmentSession(resolve(env_name))
