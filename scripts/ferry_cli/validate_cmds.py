"""`ferry validate MODEL VERSION`: gate a registered version against the current champion.

Calls the governance API (`POST /v1/governance/validate`, signed with SigV4 as `--as NAME`
locally or with your own credentials on AWS), which starts the ValidateVersion state machine;
then waits for the result that machine records on the version (read from the registry, as
every read is) and prints the gate's checks. A version goes to production only with a passed
result against the production version live at promotion time.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import typer
from rich.console import Console

from ferry_cli.environments import Environment, resolve
from ferry_cli.shell import ENV_OPTION, JSON_OPTION, emit, fail, reporting
from ferry_cli.views import gate_table

VALIDATE_ROUTE = "/v1/governance/validate"
POLL_SECONDS = 1.0


def _credentials(environment: Environment) -> Any:
    """The local identity's credentials, else the caller's own (a deployed stage)."""
    from ferry_local.signing import credentials_of

    if environment.identity is not None:
        return credentials_of(environment.identity)
    import boto3

    return boto3.Session(region_name=environment.region).get_credentials()


def call_governance(environment: Environment, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """One signed POST to a governance route: (status, JSON answer)."""
    from ferry_local.signing import sign

    if not environment.api_url:
        raise RuntimeError(f"environment {environment.name!r} names no API URL")
    url = environment.api_url.rstrip("/") + path
    data = json.dumps(body).encode()
    headers = sign(
        "POST",
        url,
        _credentials(environment),
        environment.region,
        body=data,
        headers={"content-type": "application/json"},
    )
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"null")
        except ValueError:
            return err.code, {"message": err.reason}


def wait_for_result(
    environment: Environment, model: str, version: int, execution: str, timeout: float
) -> dict[str, Any] | None:
    """The gate result recorded on the version by `execution`, or None after `timeout`."""
    from ferry_core.registry.reader import RegistryReader

    reader = RegistryReader(
        environment.client("dynamodb"),
        environment.output("RegistryTableName"),
        pointer_ttl_seconds=0,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = reader.version_record(model, version).get("validation") or {}
        if result.get("execution") == execution:
            return result
        time.sleep(POLL_SECONDS)
    return None


def validate(
    model: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1),
    no_wait: bool = typer.Option(False, "--no-wait", help="start it and print the execution"),
    timeout: float = typer.Option(900, help="give up waiting after this many seconds"),
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Gate a registered version against the current production version and record it."""
    with reporting("validate"):
        environment = resolve(env)
        status, answer = call_governance(
            environment, VALIDATE_ROUTE, {"model": model, "version": version}
        )
        if status != 202 or not isinstance(answer, dict) or "execution" not in answer:
            problem = answer.get("message", answer) if isinstance(answer, dict) else answer
            fail("validate", f"the governance API answered {status}: {problem}")
        execution = str(answer["execution"])
        if no_wait:
            started = f"started validation of {model} v{version}: {execution}"
            emit({"execution": execution}, as_json, lambda c: c.print(started))
            return
        with Console(stderr=True).status(f"validating {model} v{version} (the gate runs)…"):
            result = wait_for_result(environment, model, version, execution, timeout)
        if result is None:
            fail("validate", f"no result recorded within {timeout:.0f} s ({execution})")
        emit(result, as_json, lambda c: _render(c, model, version, result))
    if result.get("passed") is not True:
        fail("validate", str(result.get("summary") or "the gate did not pass"))


def _render(c: Console, model: str, version: int, result: dict[str, Any]) -> None:
    against = result.get("champion_version")
    champion = f"v{against}" if against is not None else "no production version"
    c.print(gate_table(result, f"{model} v{version} against {champion}"))
    c.print(str(result.get("summary", "")))


def register_validate_command(app: typer.Typer) -> None:
    app.command("validate")(validate)
