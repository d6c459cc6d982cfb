"""`ferry bench load`: Locust, headless and bounded in time, against the local HTTP API.

The target is the running local platform (`.ferry/local.json`, written by `ferry local up`, or
the file `FERRY_LOCAL_CONFIG` names), an `--api-url`, or, when neither answers, a
`LocalPlatform` this command starts (in a scratch state folder, so the user's own state is
untouched) and stops. Every request is signed (SigV4): as the local platform's `client`
identity when the target is a local platform, else with the caller's own AWS credentials (a
deployed stage). A 429 is the stage's throttling: the report says when the first one came.
The demo model (`credit-risk`) is built and registered first if the platform does not have
it. Locust runs in its own process (its gevent monkey-patches the process it runs in) with
`locustfile.py`: valid predict requests from the demo model's data generator plus a share of
bad ones, which count as successes only
when refused with the documented status and error code. The report is Locust's own figures
(from its CSV): requests, failures, requests/s and the p50/p95/p99 response times.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ferry_local.identities import load_identities
from ferry_local.signing import credentials_of, sign

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit-risk"
PERCENTILES = ("50%", "95%", "99%")


class LoadBenchError(Exception):
    """The load test could not run (no target, no model, Locust failed)."""


@dataclass
class Row:
    """One line of Locust's report (a request name, or `Aggregated`)."""

    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    avg_ms: float


@dataclass
class Target:
    api_url: str
    aws_endpoint_url: str | None
    outputs: dict[str, Any]
    started_here: bool
    credentials: Any = None  # botocore credentials that sign every request
    region: str = "us-east-1"
    identities: dict[str, Any] = field(default_factory=dict)  # local identities by name

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """A signed GET of `path`: (status, JSON body)."""
        return self.send("GET", path, None, self.credentials, timeout)

    def send(
        self, method: str, path: str, body: Any, credentials: Any, timeout: float = 60.0
    ) -> tuple[int, Any]:
        """A request signed with `credentials`: (status, JSON body)."""
        url = self.api_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if data is not None else {}
        headers = sign(method, url, credentials, self.region, body=data, headers=headers)
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def environment(self) -> dict[str, str]:
        """The credentials as the AWS environment variables (for Locust's process)."""
        found = self.credentials.get_frozen_credentials()
        env = {"AWS_ACCESS_KEY_ID": found.access_key, "AWS_SECRET_ACCESS_KEY": found.secret_key}
        if found.token:
            env["AWS_SESSION_TOKEN"] = found.token
        return env


def run_time_seconds(run_time: str) -> int:
    """Locust's `--run-time` (`30s`, `2m`, `1h30m`, `90`) in seconds."""
    text = run_time.strip().lower()
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise LoadBenchError(f"run time {run_time!r} is not like 30s, 2m or 1h30m")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def local_config() -> Path:
    """The running local platform's `local.json` (`FERRY_LOCAL_CONFIG` overrides)."""
    override = os.environ.get("FERRY_LOCAL_CONFIG")
    return Path(override) if override else REPO_ROOT / ".ferry" / "local.json"


def _local_target(info_file: Path, api_url: str | None = None) -> Target | None:
    """The platform a local.json advertises (if `api_url` is given: only if it is that one),
    signing as its `client` identity."""
    if not info_file.is_file():
        return None
    info = json.loads(info_file.read_text())
    if api_url is not None and info.get("api_url") != api_url:
        return None
    identities = load_identities(info)
    if "client" not in identities:
        return None
    return Target(
        info["api_url"],
        info.get("aws_endpoint_url"),
        info.get("outputs", {}),
        False,
        credentials_of(identities["client"]),
        info.get("region", "us-east-1"),
        identities,
    )


def _running_platform(info_file: Path) -> Target | None:
    """The platform `ferry local up` advertises in local.json, if it answers."""
    target = _local_target(info_file)
    if target is None:
        return None
    try:
        status, _ = target.get("/health", timeout=2)
    except (OSError, ValueError):
        return None
    return target if status == 200 else None


def _deployed(api_url: str, region: str) -> Target:
    """A deployed stage, signed with the caller's own AWS credentials."""
    import botocore.session

    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise LoadBenchError(f"no AWS credentials to sign requests to {api_url} with")
    return Target(api_url, None, {}, False, credentials, region)


@contextlib.contextmanager
def _target(api_url: str | None, region: str, log: Any) -> Iterator[Target]:
    if api_url:
        api_url = api_url.rstrip("/")
        yield _local_target(local_config(), api_url) or _deployed(api_url, region)
        return
    running = _running_platform(local_config())
    if running:
        log(f"using the running local platform at {running.api_url}")
        yield running
        return
    from ferry_local.platform import LocalPlatform

    log("no local platform running: starting one for this run")
    with (
        tempfile.TemporaryDirectory(prefix="ferry-load-") as tmp,
        LocalPlatform(REPO_ROOT, state_dir=Path(tmp), restore=False, progress=log) as p,
    ):
        credentials = credentials_of(p.identity("client"))
        yield Target(
            p.api_url,
            p.aws_endpoint_url,
            dict(p.outputs),
            True,
            credentials,
            p.region,
            dict(p.identities),
        )


def _ensure_model(target: Target, model: str, log: Any) -> None:
    """Register and promote the demo model unless the API already serves `model`."""
    status, _ = target.get(f"/v1/models/{model}")
    if status == 200:
        return
    if model != MODEL or not target.aws_endpoint_url:
        raise LoadBenchError(f"the API has no production version of {model!r} (HTTP {status})")
    import boto3

    from ferry_core.card import Lineage
    from ferry_core.onboarding.builder import build_credit_risk
    from ferry_core.retrain.candidate import write_bundle
    from ferry_core.retrain.manual import manual_run_id

    log(f"building and registering {model} (the demo model)…")
    if not {"data-scientist", "admin"} <= target.identities.keys():
        raise LoadBenchError("the platform publishes no data-scientist and admin identities")

    def govern(identity: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        credentials = credentials_of(target.identities[identity])
        status, answer = target.send("POST", f"/v1/governance/{route}", body, credentials)
        if status != 200:
            raise LoadBenchError(f"{route} as {identity} answered {status}: {answer}")
        return answer  # type: ignore[no-any-return]

    # Uploaded and registered by the data scientist, promoted by the admin, through the
    # governance API: each as their own identity.
    s3 = boto3.client(
        "s3",
        endpoint_url=target.aws_endpoint_url,
        region_name=target.region,
        **target.identities["data-scientist"].boto3_kwargs(),
    )
    run_id = manual_run_id()
    lineage = Lineage(entry_point="ferry_core.onboarding.builder:fit_credit_risk")
    write_bundle(s3, target.outputs["ModelBucketName"], build_credit_risk(), model, run_id, lineage)
    version = govern("data-scientist", "register", {"model": model, "candidate": run_id})["version"]
    govern("admin", "promote/production", {"model": model, "version": version})
    wait_until_served(target, model)


def wait_until_served(target: Target, model: str, timeout: float = 60.0) -> None:
    """The scoring function trusts a stage pointer it read (absent, too) for a few seconds."""
    deadline = time.monotonic() + timeout
    while (status := target.get(f"/v1/models/{model}")[0]) != 200:
        if time.monotonic() > deadline:
            raise LoadBenchError(f"{model} registered, but the API still answers {status}")
        time.sleep(0.5)


def _valid_rows(count: int = 500) -> list[dict[str, Any]]:
    """Applications from the demo model's generator, unseen in its training (another seed)."""
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records

    return records(generate_credit_data(count, seed=2024), CREDIT_RISK_SCHEMA)


def _read_report(prefix: Path) -> tuple[list[Row], list[dict[str, str]]]:
    stats_file = Path(f"{prefix}_stats.csv")
    if not stats_file.is_file():
        raise LoadBenchError("Locust wrote no statistics (see its output above)")
    rows: list[Row] = []
    with stats_file.open(newline="") as fh:
        for r in csv.DictReader(fh):

            def ms(key: str, r: dict[str, str] = r) -> float:
                value = r.get(key, "")
                return float(value) if value not in ("", "N/A") else 0.0

            rows.append(
                Row(
                    name=r["Name"] if r["Type"] else "Aggregated",
                    requests=int(r["Request Count"]),
                    failures=int(r["Failure Count"]),
                    rps=ms("Requests/s"),
                    p50_ms=ms("50%"),
                    p95_ms=ms("95%"),
                    p99_ms=ms("99%"),
                    max_ms=ms("Max Response Time"),
                    avg_ms=ms("Average Response Time"),
                )
            )
    failures_file = Path(f"{prefix}_failures.csv")
    failures: list[dict[str, str]] = []
    if failures_file.is_file():
        with failures_file.open(newline="") as fh:
            failures = list(csv.DictReader(fh))
    return rows, failures


def _run_locust(
    target: Target,
    workdir: Path,
    *,
    users: int,
    spawn_rate: float,
    run_time: str,
    bad_percent: int,
    instances: int,
    model: str,
) -> tuple[list[Row], list[dict[str, str]], str]:
    rows_file = workdir / "rows.json"
    rows_file.write_text(json.dumps(_valid_rows()))
    prefix = workdir / "locust"
    env = {
        **os.environ,
        **target.environment(),
        "FERRY_LOAD_REGION": target.region,
        "FERRY_LOAD_THROTTLE_FILE": str(workdir / "throttled.json"),
        "FERRY_LOAD_ROWS": str(rows_file),
        "FERRY_LOAD_MODEL": model,
        "FERRY_LOAD_INSTANCES": str(instances),
        "FERRY_LOAD_BAD_PERCENT": str(bad_percent),
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        target.api_url,
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        run_time,
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",  # failures are judged here, from the report
    ]
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=run_time_seconds(run_time) + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadBenchError("Locust did not finish in its run time plus two minutes") from exc
    if done.returncode != 0:
        raise LoadBenchError(f"Locust failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    rows, failures = _read_report(prefix)
    return rows, failures, done.stderr


def _throttling(workdir: Path, failures: list[dict[str, str]]) -> dict[str, Any]:
    """How many requests the stage throttled (429) and when the first one came."""
    noted = workdir / "throttled.json"
    found = json.loads(noted.read_text()) if noted.is_file() else {}
    throttled = sum(int(f.get("Occurrences", 0)) for f in failures if _is_429(f))
    return {"count": throttled, **{k: v for k, v in found.items() if k.startswith("first")}}


def _is_429(failure: dict[str, str]) -> bool:
    """A failure the locustfile marked as throttled (Locust wraps it in its error's repr)."""
    return "429 Too Many Requests" in str(failure.get("Error", ""))


def run_load_bench(
    *,
    users: int = 10,
    spawn_rate: float = 10.0,
    run_time: str = "30s",
    bad_percent: int = 10,
    instances: int = 1,
    api_url: str | None = None,
    region: str = "us-east-1",
    model: str = MODEL,
    as_json: bool = False,
) -> bool:
    """Run the load test and print Locust's figures; True if no request failed other than
    the stage's throttling (reported: how many 429s, and after how long and how many
    requests the first came)."""
    if users < 1 or spawn_rate <= 0 or instances < 1 or not 0 <= bad_percent <= 50:
        raise LoadBenchError(
            "users ≥ 1, spawn rate > 0, instances ≥ 1 and bad percent 0-50, please"
        )
    seconds = run_time_seconds(run_time)
    if seconds < 1:
        raise LoadBenchError("run time must be at least 1s")
    console = Console(stderr=as_json)
    log = console.log if not as_json else (lambda msg: console.print(f"[dim]{msg}[/]"))
    started = time.perf_counter()
    with _target(api_url, region, log) as target, tempfile.TemporaryDirectory() as tmp:
        _ensure_model(target, model, log)
        log(
            f"Locust: {users} users (spawn {spawn_rate}/s), {run_time}, {bad_percent}% bad "
            f"requests, {instances} instance(s) per request → {target.api_url}"
        )
        rows, failures, stderr = _run_locust(
            target,
            Path(tmp),
            users=users,
            spawn_rate=spawn_rate,
            run_time=run_time,
            bad_percent=bad_percent,
            instances=instances,
            model=model,
        )
        throttling = _throttling(Path(tmp), failures)
    total = next((r for r in rows if r.name == "Aggregated"), None)
    if total is None or total.requests == 0:
        raise LoadBenchError(f"Locust sent no request: {stderr.strip()[-1500:]}")
    failed = sum(int(f.get("Occurrences", 0)) for f in failures if not _is_429(f))
    passed = total is not None and total.requests > 0 and failed == 0
    meta = {
        "users": users,
        "spawn_rate": spawn_rate,
        "run_time_s": seconds,
        "bad_percent": bad_percent,
        "instances_per_request": instances,
        "api_url": target.api_url,
        "platform_started_here": target.started_here,
        "cpu_count": os.cpu_count(),
        "wall_s": round(time.perf_counter() - started, 1),
        "throttled": throttling,
    }
    if as_json:
        doc = {
            "meta": meta,
            "rows": [asdict(r) for r in rows],
            "failures": failures,
            "passed": passed,
        }
        print(json.dumps(doc, indent=2))
    else:
        _print_report(console, rows, failures, meta)
        verdict = "[green]no failed requests" if passed else "[red]some requests failed"
        console.print(f"{verdict}[/] [dim]({meta['wall_s']} s)[/]")
    return passed


def _print_report(
    console: Console, rows: list[Row], failures: list[dict[str, str]], meta: dict[str, Any]
) -> None:
    table = Table(
        "request",
        "# reqs",
        "# fails",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        title=(
            f"load: {meta['users']} users, {meta['run_time_s']} s, "
            f"{meta['bad_percent']}% bad requests, {meta['instances_per_request']} instance(s)"
        ),
        caption="Locust's figures; a bad request passes when refused with its documented error",
    )
    for r in sorted(rows, key=lambda r: (r.name == "Aggregated", r.name)):
        style = "bold" if r.name == "Aggregated" else None
        table.add_row(
            r.name,
            f"{r.requests:,}",
            f"{r.failures:,}",
            f"{r.rps:,.1f}",
            f"{r.p50_ms:,.0f}",
            f"{r.p95_ms:,.0f}",
            f"{r.p99_ms:,.0f}",
            f"{r.max_ms:,.0f}",
            style=style,
        )
    console.print(table)
    if failures:
        f = Table("request", "error", "occurrences", title="failures")
        for item in failures:
            f.add_row(item.get("Name", ""), item.get("Error", ""), item.get("Occurrences", ""))
        console.print(f)
    throttled = meta["throttled"]
    if throttled.get("count"):
        after_s = throttled.get("first_after_s", "?")
        after_requests = throttled.get("first_after_requests", "?")
        console.print(
            f"throttled: {throttled['count']:,} requests got 429; the first after {after_s} s "
            f"and {after_requests} requests (the stage's burst, then its rate)"
        )
    else:
        console.print("throttled: none (the stage's rate and burst were not reached)")
