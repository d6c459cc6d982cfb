"""`ferry smoke --env local|dev|prod`: is this stage up, and does it refuse what it must?

Five checks, each as the identity whose job it is: locally, the platform's identities; on a
deployed stage, a session of the stack's role for that persona (its `Identity*RoleArn`
outputs), assumed with the caller's credentials, so a release pipeline's smoke step needs only
sts:AssumeRole on them. A caller who may not assume them runs every check as itself.

1. health: a signed `GET /health` (`client`) answers 200;
2. prediction: a signed predict of one instance built from the model card's input schema
   (`client`) answers 200 with one prediction;
3. batch: a CSV of valid rows and one row of the wrong type uploaded under
   `batch/incoming/{model}/` (`data-scientist`) gets its manifest, with
   rows in = rows scored + rows rejected and each count as sent;
4. refusal: the same predict unsigned is refused with API Gateway's 403 `Forbidden`;
5. audit: every model's hash-chained audit trail verifies (`admin`, `ferry audit verify`).

A table (or `--json`), and exit status 1 if any check failed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from rich.table import Table

from ferry_cli.environments import Environment, local_config_path, resolve
from ferry_cli.shell import ENV_OPTION, JSON_OPTION, EnvironmentSession, console, reporting

VALID_ROWS = 3


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


class Smoke:
    """The stage under test and how each persona reaches it."""

    def __init__(self, env: Environment, model: str, timeout: float) -> None:
        self.env = env
        self.model = model
        self.timeout = timeout
        self._identities: dict[str, Any] = {}
        if env.endpoint_url is not None:
            from ferry_local.identities import load_identities

            self._identities = load_identities(json.loads(local_config_path().read_text()))
        else:
            self._identities = _assumed_personas(env)

    def as_persona(self, persona: str) -> Environment:
        """The environment acting as `persona` (the caller themself if it has no personas)."""
        if not self._identities:
            return self.env
        return dataclasses.replace(self.env, identity=self._identities[persona], _clients={})

    def credentials(self, persona: str) -> Any:
        from ferry_local.signing import credentials_of

        if self._identities:
            return credentials_of(self._identities[persona])
        import boto3

        return boto3.Session(region_name=self.env.region).get_credentials()

    def call(
        self, method: str, path: str, body: Any = None, persona: str | None = "client"
    ) -> tuple[int, Any]:
        """One call to the HTTP API, signed as `persona` (None: unsigned)."""
        from ferry_local.signing import sign

        if not self.env.api_url:
            raise RuntimeError(f"environment {self.env.name!r} names no API URL")
        url = self.env.api_url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if persona is not None:
            credentials = self.credentials(persona)
            headers = sign(method, url, credentials, self.env.region, body=data, headers=headers)
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    # -- the checks ---------------------------------------------------------------------------

    def health(self) -> str:
        status, body = self.call("GET", "/health")
        _expect(status == 200, f"GET /health answered {status}: {body}")
        return "200"

    def prediction(self) -> str:
        instance = example_instances(self.features(), 1)[0]
        status, body = self.call(
            "POST", f"/v1/models/{self.model}/predict", {"instances": [instance]}
        )
        _expect(status == 200, f"predict answered {status}: {body}")
        _expect(len(body.get("predictions", [])) == 1, f"not one prediction: {body}")
        return f"200, v{body['version']}"

    def refusal(self) -> str:
        instance = example_instances(self.features(), 1)[0]
        path = f"/v1/models/{self.model}/predict"
        status, body = self.call("POST", path, {"instances": [instance]}, persona=None)
        _expect(
            (status, body) == (403, {"message": "Forbidden"}),
            f"an unsigned predict answered {status}: {body}",
        )
        return "403 Forbidden"

    def batch(self) -> str:
        features = self.features()
        s3 = self.as_persona("data-scientist").client("s3")
        bucket = self.env.output("DataBucketName")
        path = f"smoke/{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        rows = example_instances(features, VALID_ROWS)
        numeric = next(f["name"] for f in features if f["type"] in ("number", "integer"))
        rows.append({**rows[0], numeric: "not a number"})
        body = io.StringIO()
        writer = csv.DictWriter(body, fieldnames=[f["name"] for f in features])
        writer.writeheader()
        writer.writerows(rows)
        key = f"batch/incoming/{self.model}/{path}.csv"
        s3.put_object(Bucket=bucket, Key=key, Body=body.getvalue().encode())
        manifest = self._manifest(s3, bucket, f"batch/manifests/{self.model}/{path}.json")
        counts = (manifest["rows_in"], manifest["rows_scored"], manifest["rows_rejected"])
        _expect(manifest["status"] == "succeeded", f"the run {manifest['status']}: {manifest}")
        _expect(counts[0] == counts[1] + counts[2], f"rows in ≠ scored + rejected: {counts}")
        _expect(counts == (VALID_ROWS + 1, VALID_ROWS, 1), f"rows in/scored/rejected {counts}")
        return f"{counts[0]} in = {counts[1]} scored + {counts[2]} rejected"

    def audit(self) -> str:
        from ferry_core.audit.chain import verify_all

        reports = verify_all(EnvironmentSession(self.as_persona("admin")).audit, None)
        bad = [r for r in reports if not r.ok]
        _expect(not bad, f"{bad[0].model}: {bad[0].first_problem}" if bad else "")
        return f"{len(reports)} chain(s) intact"

    # -- helpers ------------------------------------------------------------------------------

    def features(self) -> list[dict[str, Any]]:
        status, card = self.call("GET", f"/v1/models/{self.model}")
        _expect(status == 200, f"GET /v1/models/{self.model} answered {status}: {card}")
        return card["input_schema"]["features"]

    def _manifest(self, s3: Any, bucket: str, key: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                if manifest["status"] not in ("in_progress", "ready"):
                    return manifest
            except s3.exceptions.NoSuchKey:
                pass
            _expect(time.monotonic() < deadline, f"no finished manifest after {self.timeout:g} s")
            time.sleep(1.0)


class CheckFailed(Exception):
    """A smoke check saw something other than what it wants."""


def _assumed_personas(env: Environment) -> dict[str, Any]:
    """A session of each persona role the deployed stack names, assumed with the caller's
    credentials; none when the caller may not assume them all (it then acts as itself)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ferry_local.identities import create_identities

    try:
        sts = boto3.client("sts", region_name=env.region)
        return create_identities(sts, env.outputs, seconds=900, prefix="ferry-smoke-")
    except (BotoCoreError, ClientError):
        return {}


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def example_instances(features: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` valid instances of an input schema (DESIGN.md 3.2), inside every range."""
    rows = []
    for i in range(count):
        row: dict[str, Any] = {}
        for f in features:
            kind = f["type"]
            if kind == "category":
                row[f["name"]] = f["categories"][i % len(f["categories"])]
            elif kind == "boolean":
                row[f["name"]] = i % 2 == 0
            else:
                low, high = f.get("minimum", 0), f.get("maximum", (f.get("minimum", 0) or 0) + 10)
                value = low + (high - low) * (i + 1) / (count + 1)
                row[f["name"]] = int(value) if kind == "integer" else round(value, 4)
        rows.append(row)
    return rows


def run_checks(smoke: Smoke) -> list[Check]:
    steps: list[tuple[str, Callable[[], str]]] = [
        ("health", smoke.health),
        ("signed prediction", smoke.prediction),
        ("batch round trip", smoke.batch),
        ("unsigned call refused", smoke.refusal),
        ("audit verify", smoke.audit),
    ]
    checks = []
    for name, step in steps:
        started = time.perf_counter()
        try:
            ok, detail = True, step()
        except Exception as exc:  # every failure is a failed check, never a crash
            ok, detail = False, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        checks.append(Check(name, ok, detail, round(time.perf_counter() - started, 2)))
    return checks


def smoke(
    env: str = ENV_OPTION,
    model: str = typer.Option("credit-risk", help="a model the stage serves in production"),
    timeout: float = typer.Option(180.0, help="seconds to wait for the batch manifest"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a stage end to end: health, a signed prediction, a batch file, an unsigned call
    refused, the audit chains. Exit status 1 if any check fails."""
    with reporting("smoke"):
        checks = run_checks(Smoke(resolve(env), model, timeout))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
    else:
        table = Table("check", "result", "detail", "s", title=f"ferry smoke ({env}, {model})")
        for c in checks:
            verdict = "[green]ok" if c.ok else "[red]FAILED"
            table.add_row(c.name, verdict, c.detail, f"{c.seconds:.2f}")
        console().print(table)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        typer.echo(f"ferry smoke: {len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


def register_smoke_command(app: typer.Typer) -> None:
    app.command("smoke")(smoke)
