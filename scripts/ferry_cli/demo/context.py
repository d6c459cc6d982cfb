"""What every chapter of `ferry demo` shares: the step type, the failure of a step, and the
context (console, running platform, clients, what earlier steps made)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from rich.console import Console

MODEL = "credit-risk"
SERVICES = ("s3", "dynamodb", "events", "sqs", "stepfunctions", "cloudwatch", "lambda")

# A step: its title and what it does, returning one line of outcome (or raising StepFailed).
Step = tuple[str, Callable[[], str]]


class StepFailed(Exception):
    """A step did not hold what it claims; its message says what was seen instead."""


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


@dataclass
class DemoContext:
    """What every step can use: the console, the running platform and what earlier steps made.

    `cli` is the `ferry` Typer app itself, handed in by the `demo` command, so the story runs
    commands exactly as a user types them without importing the command line back.
    """

    console: Console
    cli: Any = None
    platform: Any = None
    aws: dict[str, Any] = field(default_factory=dict)  # the admin's clients
    acting: dict[str, dict[str, Any]] = field(default_factory=dict)  # identity → clients
    res: Any = None
    built: Any = None
    state: dict[str, Any] = field(default_factory=dict)

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: str = "",
        signed: bool = True,
        identity: str = "client",
    ) -> tuple[int, dict[str, Any]]:
        """One request to the local HTTP API, signed as `identity` (the application that
        scores, unless said otherwise), or unsigned (not `signed`)."""
        from ferry_local.signing import credentials_of, sign

        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        url = self.platform.api_url.rstrip("/") + path + (f"?{query}" if query else "")
        headers = {"content-type": "application/json"}
        if signed:
            credentials = credentials_of(self.platform.identity(identity))
            headers = sign(
                method, url, credentials, self.platform.region, body=data, headers=headers
            )
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def govern(self, identity: str, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """`POST /v1/governance/{route}` signed as `identity`: a governance change by that
        person, recorded as them."""
        return self.http("POST", f"/v1/governance/{route}", body, identity=identity)

    def ferry(self, *args: str, identity: str = "admin") -> str:
        """Run `ferry --as IDENTITY ARGS --env local`, print its output, fail the step if it
        failed."""
        from typer.testing import CliRunner

        result = CliRunner().invoke(self.cli, ["--as", identity, *args, "--env", "local"])
        self.console.print(result.output.rstrip())
        expect(
            result.exit_code == 0,
            f"`ferry --as {identity} {' '.join(args)} --env local` exited {result.exit_code}",
        )
        return result.output

    def as_identity(self, identity: str) -> dict[str, Any]:
        """A client per service acting as one of the platform's local identities."""
        import boto3

        if identity not in self.acting:
            session = boto3.Session(
                region_name=self.platform.region,
                **self.platform.identities[identity].boto3_kwargs(),
            )
            self.acting[identity] = {
                name: session.client(name, endpoint_url=self.platform.aws_endpoint_url)  # type: ignore[call-overload]
                for name in SERVICES
            }
        return self.acting[identity]

    def connect(self, platform: Any) -> None:
        """Keep the started platform, the admin's client per service and its resource names."""
        self.platform = platform
        self.acting.clear()
        self.aws = self.as_identity("admin")
        outputs = platform.outputs
        self.res = SimpleNamespace(
            model_bucket=outputs["ModelBucketName"],
            data_bucket=outputs["DataBucketName"],
            registry_table=outputs["RegistryTableName"],
            audit_table=outputs["AuditTableName"],
            anchor_bucket=outputs["AuditAnchorBucketName"],
        )
