"""The local platform for end-to-end tests: `ferry local up` in a child process, once per session.

Tests drive it only through its public surfaces: the HTTP API, the AWS endpoint (boto3 with
`endpoint_url`), the command line and the files it writes (`local.json`, logs, state). A child
process keeps its moto server apart from the in-process moto (`mock_aws`) other tests use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from ferry_local.identities import Identity, load_identities
from ferry_local.signing import credentials_of, sign

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 240
TRAINERS = (
    REPO_ROOT / "tests" / "e2e" / "fixtures" / "trainers"
)  # a first synth on a busy 2-core machine takes ~40 s of it


@dataclass
class PlatformClient:
    """A local platform as its `local.json` describes it: its API, endpoint and identities."""

    info: dict[str, Any]
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, kw_only=True)

    @property
    def api_url(self) -> str:
        return self.info["api_url"]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.info["outputs"]

    def identity(self, name: str) -> Identity:
        """One of the platform's local identities (`client`, `data-scientist`, …)."""
        return load_identities(self.info)[name]

    def client(self, service: str, identity: str = "admin") -> Any:
        """A boto3 client of the local endpoint acting as `identity`."""
        if (service, identity) not in self._clients:
            self._clients[service, identity] = boto3.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.info["aws_endpoint_url"],
                region_name=self.info["region"],
                **self.identity(identity).boto3_kwargs(),
            )
        return self._clients[service, identity]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        identity: str | None = "client",
    ) -> tuple[int, dict[str, str], Any]:
        """(status, lower-cased headers, JSON body or text) of one HTTP request, signed as
        `identity` (None: unsigned)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if identity is not None:
            headers = sign(
                method,
                self.api_url + path,
                credentials_of(self.identity(identity)),
                self.info["region"],
                body=data,
                headers=headers,
            )
        req = urllib.request.Request(
            self.api_url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, hdrs, payload = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            status, hdrs, payload = err.code, dict(err.headers), err.read()
        hdrs = {k.lower(): v for k, v in hdrs.items()}
        try:
            return status, hdrs, json.loads(payload)
        except ValueError:
            return status, hdrs, payload.decode(errors="replace")


@dataclass
class RunningPlatform(PlatformClient):
    """A `ferry local up` process and what it published in its `local.json`."""

    process: subprocess.Popen[bytes]
    state_dir: Path

    def stop(self) -> int:
        """SIGTERM, as a terminal's Ctrl-C or a supervisor would; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def ferry_command() -> list[str]:
    script = Path(sys.executable).parent / "ferry"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ferry_cli.main"]


def start_platform(state_dir: Path, *extra: str) -> RunningPlatform:
    """`ferry local up` on free ports with its own state dir; waits for its local.json."""
    state_dir.mkdir(parents=True, exist_ok=True)
    local_json = state_dir / "local.json"
    local_json.unlink(missing_ok=True)
    log = (state_dir / "ferry-local-up.log").open("ab")
    command = [*ferry_command(), "local", "up", "--api-port", "0", "--aws-port", "0"]
    process = subprocess.Popen(
        [*command, "--state-dir", str(state_dir), *extra],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "COLUMNS": "200",
            # The retraining tests' trainers (tests/e2e/fixtures/trainers), importable by the
            # training function as a user's own trainer module would be in its image.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(TRAINERS), os.environ.get("PYTHONPATH", "")) if p
            ),
        },
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not local_json.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = (state_dir / "ferry-local-up.log").read_text()[-3000:]
            pytest.fail(f"ferry local up did not come up (exit {process.poll()}):\n{output}")
        time.sleep(0.2)
    return RunningPlatform(json.loads(local_json.read_text()), process=process, state_dir=state_dir)


@pytest.fixture(scope="session")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """One `ferry local up` for the whole session, stopped (and snapshotted) at the end."""
    platform = start_platform(tmp_path_factory.mktemp("ferry-local"))
    try:
        yield platform
    finally:
        status = platform.stop()
    log = (platform.state_dir / "ferry-local-up.log").read_text()
    assert status == 0, f"ferry local up exited {status} on SIGTERM:\n{log[-3000:]}"
    assert (platform.state_dir / "state" / "manifest.json").exists(), "no snapshot on stop"
    assert not (platform.state_dir / "local.json").exists(), "local.json left behind"


@pytest.fixture(scope="session")
def run_ferry() -> Any:
    """`run_ferry(platform, *args)`: the `ferry` command with `--env local` against `platform`."""

    def run(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FERRY_LOCAL_CONFIG": str(platform.state_dir / "local.json")}
        return subprocess.run(
            [*ferry_command(), *args, "--env", "local"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    return run


@pytest.fixture(scope="session")
def register_model() -> Any:
    """`register_model(platform, built, name)`: see `register_and_promote`."""
    return register_and_promote


@pytest.fixture(scope="session")
def serve_model() -> Any:
    """`serve_model(platform, built, name)`: see `_serve_model`."""
    return _serve_model


def _serve_model(platform: RunningPlatform, built: Any, name: str) -> None:
    """`name` in production and answering on the HTTP API: registered here unless a test did
    already (the session's platform is shared)."""
    if platform.request("GET", f"/v1/models/{name}")[0] != 200:
        register_and_promote(platform, built, name)
    deadline = time.monotonic() + 15  # the scorer trusts a stage pointer for a few seconds
    while platform.request("GET", f"/v1/models/{name}")[0] != 200:
        assert time.monotonic() < deadline, f"{name} is not served after registration"
        time.sleep(0.5)


def register_and_promote(
    platform: PlatformClient, built: Any, name: str, production: bool = True
) -> Any:
    """Register `built` as `name` as `ferry register` does it (the data scientist uploads a
    candidate bundle and calls the register route), wait for the validation gate that the
    registration started, and promote it to production (the approver, through the promote
    route; not with `production=False`); returns its card."""
    from ferry_core.card import Lineage
    from ferry_core.registry.policies import wait_for_gate
    from ferry_core.registry.reader import RegistryReader
    from ferry_core.retrain.candidate import write_bundle
    from ferry_core.retrain.manual import manual_run_id

    outputs = platform.outputs
    run_id = manual_run_id()
    s3 = platform.client("s3", "data-scientist")
    # The platform tests' subject is serving, not model quality: the session's small model
    # declares no segment groups here (its youngest age band sits under the gate's floor,
    # which the real gate below would rightly refuse for production).
    served = dataclasses.replace(
        built,
        metrics={k: v for k, v in built.metrics.items() if not k.startswith("segment")},
    )
    write_bundle(s3, outputs["ModelBucketName"], served, name, run_id, Lineage())
    body = {"model": name, "candidate": run_id}
    status, _, registered = platform.request(
        "POST", "/v1/governance/register", body, identity="data-scientist"
    )
    assert status == 200, registered
    version = registered["version"]
    reader = RegistryReader(
        platform.client("dynamodb", "admin"), outputs["RegistryTableName"], pointer_ttl_seconds=0
    )
    if not production:
        return reader.card(name, version)
    gate = wait_for_gate(reader, name, version, registered.get("execution"))
    assert gate is not None and gate.get("passed") is True, gate
    promote = {"model": name, "version": version, "reason": "tests"}
    status, _, promoted = platform.request(
        "POST", "/v1/governance/promote/production", promote, identity="approver"
    )
    assert status == 200, promoted
    return reader.card(name, version)
