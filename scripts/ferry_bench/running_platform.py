"""A running local platform serving a small real model: what the bad-input, artifact and load
properties score against.

`small_model` fits a small credit-risk model once per process; `registered_handler` serves a
model through the real scoring handler in this process, under moto; `local_platform` starts
`ferry local up` as a child process on free ports and yields its endpoints as a
`RunningPlatform` (API, AWS endpoint, stack outputs), stopped on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 240


@cache
def small_model(seed: int = 11, trees: int = 15) -> Any:
    """A small credit-risk model (about 3 s to fit and convert), built once per process.

    It declares no segment groups: the benches measure serving, not model quality, and a
    1,600-row model's youngest age band sits under the validation gate's segment floor, which
    production promotion (through the real gate) would rightly refuse."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, build, fit_credit_risk

    pipe, train, valid = fit_credit_risk(rows=1600, n_estimators=trees, seed=seed)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid)


@cache
def valid_instances(count: int = 200) -> list[dict[str, Any]]:
    """Applications the model has not seen (another seed than its training data)."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records

    return records(generate_credit_data(count, seed=2024), CREDIT_RISK_SCHEMA)


@contextlib.contextmanager
def registered_handler(built: Any, model: str = "credit-risk") -> Iterator[Any]:
    """The real scoring handler module in this process, `built` registered under moto as
    `model`'s production version (its service cache cleared before and after)."""
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_local.handlers import load_handler
    from ferry_local.moto_stack import clients, local_aws

    with tempfile.TemporaryDirectory() as tmp, local_aws(tmp) as res:
        boto = clients()
        writer = RegistryWriter(boto["dynamodb"], res.registry_table)
        card = register_built(built, model, boto["s3"], res.model_bucket, writer, Lineage())
        writer.set_stage(model, "production", card.version, None, actor="bench")
        handler = load_handler("scoring")
        handler.service.cache_clear()
        try:
            yield handler
        finally:
            handler.service.cache_clear()


@dataclass
class RunningPlatform:
    """A running local platform, as its local.json describes it (API, AWS endpoint, outputs)."""

    api_url: str
    aws_endpoint_url: str
    outputs: dict[str, Any]
    region: str
    identities: dict[str, Any] = field(default_factory=dict)  # local identities by name

    @property
    def credentials(self) -> Any:
        """The `client` identity's credentials: they sign every call to the API."""
        from ferry_local.signing import credentials_of

        client = self.identities.get("client")
        return credentials_of(client) if client else None

    def auth(self) -> Any:
        """A `requests` auth that signs as the `client` identity."""
        from ferry_local.signing import SigV4

        return SigV4(self.credentials, self.region)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> RunningPlatform:
        """From a local.json document."""
        from ferry_local.identities import load_identities

        return cls(
            info["api_url"],
            info["aws_endpoint_url"],
            info["outputs"],
            info["region"],
            load_identities(info),
        )

    def client(self, service: str, identity: str = "admin") -> Any:
        """A client of the platform's AWS endpoint acting as one of its local identities."""
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws_endpoint_url,
            region_name=self.region,
            **self.identities[identity].boto3_kwargs(),
        )

    def govern(self, identity: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/governance/{route}` signed as `identity`; its answer (raises unless 2xx)."""
        import urllib.request

        from ferry_local.signing import credentials_of, sign

        url = self.api_url.rstrip("/") + f"/v1/governance/{route}"
        data = json.dumps(body).encode()
        credentials = credentials_of(self.identities[identity])
        headers = {"content-type": "application/json"}
        headers = sign("POST", url, credentials, self.region, body=data, headers=headers)
        request = urllib.request.Request(url, data=data, method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def register(self, built: Any, name: str, production: bool = True) -> Any:
        """Register `built` as the next version of `name` as `ferry register` does (the data
        scientist uploads a candidate bundle and calls the register route); with `production`,
        the admin promotes it to production through the API."""
        from ferry_core.card import Lineage
        from ferry_core.registry.policies import wait_for_gate
        from ferry_core.registry.reader import RegistryReader
        from ferry_core.retrain.candidate import write_bundle
        from ferry_core.retrain.manual import manual_run_id

        run_id = manual_run_id()
        s3 = self.client("s3", "data-scientist")
        write_bundle(s3, self.outputs["ModelBucketName"], built, name, run_id, Lineage())
        body = {"model": name, "candidate": run_id}
        registered = self.govern("data-scientist", "register", body)
        version = registered["version"]
        table = self.outputs["RegistryTableName"]
        reader = RegistryReader(self.client("dynamodb"), table, pointer_ttl_seconds=0)
        if production:  # production takes a version only with a passed gate
            gate = wait_for_gate(reader, name, version, registered.get("execution"))
            if gate is None or gate.get("passed") is not True:
                raise RuntimeError(f"{name} v{version} did not pass the validation gate: {gate}")
            self.govern("admin", "promote/production", {"model": name, "version": version})
        return reader.card(name, version)


@contextlib.contextmanager
def local_platform() -> Iterator[RunningPlatform]:
    """`ferry local up` on free ports in a scratch state folder, stopped on exit.

    A child process, as tests/e2e/conftest.py starts it: its moto server and its in-process
    Lambda runtime stay apart from this process (which may run moto's in-process mock).
    """
    script = Path(sys.executable).parent / "ferry"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ferry_cli.main"]
    repo_root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="ferry-reliability-") as tmp:
        state = Path(tmp)
        log = (state / "ferry-local-up.log").open("ab")
        args = ["local", "up", "--api-port", "0", "--aws-port", "0", "--fresh"]
        process = subprocess.Popen(
            [*command, *args, "--state-dir", str(state)],
            cwd=repo_root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            local_json = state / "local.json"
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not local_json.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (state / "ferry-local-up.log").read_text()[-2000:]
                    raise RuntimeError(f"ferry local up did not come up:\n{tail}")
                time.sleep(0.2)
            yield RunningPlatform.from_info(json.loads(local_json.read_text()))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
