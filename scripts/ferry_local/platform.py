"""`LocalPlatform`: the whole Ferry stack on this machine (DESIGN.md §4), as a context manager.

    with LocalPlatform() as platform:
        platform.api_url            # the HTTP API, e.g. http://127.0.0.1:53121
        platform.aws_endpoint_url   # moto: point boto3 here (endpoint_url=...)
        platform.outputs            # the stack outputs: bucket and table names, ...

Start: synthesize `Ferry-local` (cached), start moto's server on 127.0.0.1, install
`moto_hooks` (Lambda invocations go to the local runtime, each function in its own process
with a session of its own execution role), create the template's resources (roles with their
policies, state machines, rules and alarms too) as the platform's own principal
(`principals.py`), restore the last snapshot, switch IAM enforcement on (every later request
is authorized against its caller's policies, `moto_iam.py`), start the HTTP API and the alarm
evaluator, and write `.ferry/local.json` (with the persona identities, never the platform's). Stop:
snapshot S3 objects (every version, with their version ids) and DynamoDB items to
`.ferry/state/`, stop the functions' processes, then shut everything down.

Not snapshotted: queue messages, executions, metrics and alarm states (they are transient in
the platform's story; a restart begins with empty queues and alarms in INSUFFICIENT_DATA).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferry_local import moto_hooks, moto_iam
from ferry_local.alarms import LocalMonitoring
from ferry_local.emf import MetricSink
from ferry_local.http_api import JWKS_PATH, LocalHttpApi, routes_from_template, stage_of
from ferry_local.identities import Identity, create_identities
from ferry_local.lambda_runtime import FunctionRuntime
from ferry_local.moto_hooks import MOTO_VERSION
from ferry_local.principals import Principals
from ferry_local.resources import BuildReport, EndpointClients, create_resources
from ferry_local.template import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    FAKE_CREDENTIALS,
    REPO_ROOT,
    Resolver,
    SynthesizedStack,
    synthesize_local,
)
from ferry_local.workflows import alarm_definitions

SNAPSHOT_FORMAT = 1


class PlatformError(Exception):
    """The local platform could not start (or restore its state)."""


class LocalPlatform:
    """The local platform; `start()`/`stop()` or `with LocalPlatform(...) as p:`."""

    def __init__(
        self,
        repo_root: Path = REPO_ROOT,
        *,
        state_dir: Path | None = None,
        cache_dir: Path | None = None,
        host: str = "127.0.0.1",
        api_port: int = 0,
        aws_port: int = 0,
        stack: SynthesizedStack | None = None,
        restore: bool = True,
        export_env: bool = False,
        alarm_interval: float = 5.0,
        alarm_time_scale: float = 1.0,
        progress: Callable[[str], None] | None = None,
        enforce_iam: bool = True,
    ) -> None:
        """`state_dir` (default `.ferry/`) holds local.json, state/ and logs/; `cache_dir`
        (default `.ferry/cdk.out`) the synthesized template, shared by every state dir.

        `export_env` also points this process's boto3 (AWS_ENDPOINT_URL, fake credentials) at
        the platform while it runs: right for `ferry local up`, wrong for a test process whose
        other tests use moto's in-process mock. Functions always get it in their environment.
        `stack` runs another synthesized stack instead of `Ferry-local` (tests).
        `enforce_iam` (the default, as in AWS) authorizes every AWS request made after the
        resources exist against its caller's policies; off, moto accepts any signed request
        (for measuring what the checks cost, not for proving anything).
        """
        self.repo_root = Path(repo_root)
        self.state_dir = Path(state_dir) if state_dir else self.repo_root / ".ferry"
        self.cache_dir = Path(cache_dir) if cache_dir else self.repo_root / ".ferry" / "cdk.out"
        self.host = host
        self.api_port = api_port
        self.aws_port = aws_port
        self.stack = stack
        self.restore = restore
        self.export_env = export_env
        self.alarm_interval = alarm_interval
        self.alarm_time_scale = alarm_time_scale
        self.progress = progress or (lambda _message: None)
        self.enforce_iam = enforce_iam
        self.region = DEFAULT_REGION
        self.account_id = DEFAULT_ACCOUNT
        self.report = BuildReport()
        self.outputs: dict[str, Any] = {}
        self.identities: dict[str, Identity] = {}
        self.restored: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self._moto: Any = None
        self._api: LocalHttpApi | None = None
        self._monitoring: Any = None
        self._pollers: list[Any] = []
        self._saved_env: dict[str, str | None] = {}
        self._hooked = False
        self.runtime: FunctionRuntime | None = None
        self.resolver: Resolver | None = None
        self.clients: EndpointClients | None = None
        self.principals: Principals | None = None

    # -- public surface -----------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        if self._api is None:
            raise PlatformError("the platform is not running")
        return self._api.url

    @property
    def aws_endpoint_url(self) -> str:
        if self._moto is None:
            raise PlatformError("the platform is not running")
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def local_json(self) -> Path:
        return self.state_dir / "local.json"

    @property
    def snapshot_dir(self) -> Path:
        return self.state_dir / "state"

    def identity(self, name: str) -> Identity:
        """A local identity by persona name (`client`, `data-scientist`, `approver`, `admin`)."""
        try:
            return self.identities[name]
        except KeyError:
            known = ", ".join(sorted(self.identities)) or "none"
            raise PlatformError(f"no local identity {name!r} (the stack defines {known})") from None

    def info(self) -> dict[str, Any]:
        """The `.ferry/local.json` document (DESIGN.md §4)."""
        return {
            "api_url": self.api_url,
            "aws_endpoint_url": self.aws_endpoint_url,
            "region": self.region,
            "stack": self.stack.name if self.stack else "Ferry-local",
            "outputs": self.outputs,
            "identities": {name: i.to_json() for name, i in self.identities.items()},
            **self._jwt_info(),
        }

    def _jwt_info(self) -> dict[str, Any]:
        """The issuers the platform stands in for (JWT authorizers), with their signing keys,
        so tests and the command line can mint tokens; absent when every route uses IAM."""
        assert self._api is not None
        issuers = self._api.stage.issuers
        if not issuers:
            return {}
        return {
            "jwt": {
                "jwks_url": self.api_url + JWKS_PATH,
                "issuers": {name: i.private_jwk() for name, i in issuers.items()},
            }
        }

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> LocalPlatform:
        try:
            self._start()
        except BaseException:
            self.stop(snapshot=False)
            raise
        return self

    def _start(self) -> None:
        from moto.moto_api._internal.models import moto_api_backend
        from moto.server import ThreadedMotoServer

        with self._timed("synth"):
            if self.stack is None:
                self.progress("synthesizing Ferry-local (cached when infra/ is unchanged)")
                self.stack = synthesize_local(self.repo_root, self.cache_dir)
        with self._timed("moto"):
            moto_api_backend.reset()  # one platform per process: start from nothing
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per AWS call
            self._moto = ThreadedMotoServer(ip_address=self.host, port=self.aws_port, verbose=False)
            self._moto.start()
            # moto's Step Functions interpreter calls Lambda at localhost:$MOTO_PORT.
            self._set_env({"MOTO_PORT": str(self._moto.get_host_and_port()[1])})
            if self.export_env:
                self._set_env(
                    {
                        **FAKE_CREDENTIALS,
                        "AWS_ENDPOINT_URL": self.aws_endpoint_url,
                        "AWS_DEFAULT_REGION": self.region,
                    }
                )
        sink = MetricSink()
        self.principals = Principals(self.account_id, self.region)
        self.runtime = FunctionRuntime(
            self.repo_root,
            on_logs=sink,
            log_dir=self.state_dir / "logs",
            # A function's credentials are its own role's session (`credentials` below).
            base_environment={"AWS_ENDPOINT_URL": self.aws_endpoint_url},
            region=self.region,
            account_id=self.account_id,
            tmp_dir=self.state_dir / "tmp",
            credentials=self.principals.session,
        )
        moto_hooks.install(runtime=self.runtime)
        self._hooked = True
        moto_iam.set_role_credentials(self.principals.session)
        self.clients = EndpointClients(
            self.aws_endpoint_url, self.region, session=self.principals.platform_session
        )
        self.resolver = Resolver(
            self.stack.template,
            stack_name=self.stack.name,
            region=self.region,
            account_id=self.account_id,
        )
        with self._timed("resources"):
            self.progress("creating the stack's resources in moto")
            self.outputs = create_resources(
                self.stack.template,
                self.resolver,
                self.clients,
                runtime=self.runtime,
                stack=self.stack,
                repo_root=self.repo_root,
                report=self.report,
            )
        for warning in self.report.warnings:
            self.progress(f"WARNING: {warning}")
        with self._timed("identities"):
            self.identities = create_identities(self.clients["sts"], self.outputs)
        if self.restore:
            with self._timed("restore"):
                self.restored = self._restore()
        # From here on every AWS request is authorized against its caller's policies.
        moto_iam.enforcing(self.enforce_iam)
        with self._timed("http_api"):
            routes = routes_from_template(self.resolver)
            self._api = LocalHttpApi(
                routes,
                self.runtime.invoke,
                stage=stage_of(self.resolver),
                host=self.host,
                port=self.api_port,
                access_log=self.state_dir / "logs" / "http-api.log",
            )
            self._api.start()
            self.outputs = self._localize_outputs(self.outputs)
        if self.runtime is not None and self.clients is not None:
            from ferry_local.pollers import start_pollers

            self._pollers = start_pollers(
                self.clients, self.runtime, self.region, role_clients=self.role_clients
            )
        self._monitoring = LocalMonitoring(
            self.clients,
            sink,
            interval=self.alarm_interval,
            time_scale=self.alarm_time_scale,
            role_clients=self.role_clients,
        ).start()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.local_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.info(), indent=2) + "\n")
        tmp.replace(self.local_json)

    def _localize_outputs(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Outputs that name the HTTP API's AWS URL name the local API instead."""
        assert self.resolver is not None
        api_ids = [
            self.resolver.physical_id(lid)
            for lid, r in self.resolver.resources.items()
            if r["Type"] == "AWS::ApiGatewayV2::Api"
        ]
        local: dict[str, Any] = {}
        for key, value in outputs.items():
            for api_id in api_ids:
                prefix = f"https://{api_id}.execute-api."
                if isinstance(value, str) and value.startswith(prefix):
                    value = self.api_url + "/" + value.split("/", 3)[3]
            local[key] = value
        return local

    def role_clients(self, role_arn: str, service: str) -> EndpointClients:
        """Clients signed with a session of `role_arn` as `service` holds it (an SQS event
        source mapping polls as its function's role; an EventBridge target is reached as the
        target's role)."""
        assert self.principals is not None
        principals = self.principals
        return EndpointClients(
            self.aws_endpoint_url,
            self.region,
            session=lambda: principals.session(role_arn, service),
        )

    # -- stop ----------------------------------------------------------------------------------

    def stop(self, snapshot: bool = True) -> None:
        """Snapshot (unless told not to), then stop everything started; safe to call twice."""
        for poller in self._pollers:
            poller.stop()
        for poller in self._pollers:
            poller.join(timeout=5)
        self._pollers = []
        if self._monitoring is not None:
            self._monitoring.stop()
            self._monitoring = None
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._moto is not None:
            if snapshot and self.resolver is not None:
                self.snapshot()
            self._moto.stop()
            self._moto = None
        moto_iam.restore_settings()  # this process's moto checks nothing again, hooks or not
        if self._hooked:
            moto_hooks.uninstall(runtime=self.runtime)
            self._hooked = False
        if self.runtime is not None:
            self.runtime.close()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self.local_json.unlink(missing_ok=True)

    # -- state ----------------------------------------------------------------------------------

    def snapshot(self) -> Path:
        """Write every bucket's objects (all versions) and every table's items to state/."""
        from moto.s3.models import s3_backends

        assert self.clients is not None
        work = self.state_dir / "state.tmp"
        shutil.rmtree(work, ignore_errors=True)
        (work / "s3").mkdir(parents=True)
        (work / "dynamodb").mkdir(parents=True)
        manifest: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "moto": MOTO_VERSION,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "buckets": {},
            "tables": {},
            # Objects name their SSE-KMS key; a restart recreates each key under a new id.
            "kms_keys": self._kms_keys(),
        }
        backend = s3_backends[self.account_id]["aws"]
        for name, bucket in backend.buckets.items():
            # Each key's versions, pickled as moto holds them: version ids survive the restart
            # (a model card names its artifact's S3 version id).
            versions = list(bucket.keys._iterlists())
            (work / "s3" / f"{name}.pickle").write_bytes(pickle.dumps(versions))
            manifest["buckets"][name] = sum(len(v) for _, v in versions)
        ddb = self.clients["dynamodb"]
        for table in _paginate(ddb, "list_tables", "TableNames"):
            items = _paginate(ddb, "scan", "Items", TableName=table)
            (work / "dynamodb" / f"{table}.pickle").write_bytes(pickle.dumps(items))
            manifest["tables"][table] = len(items)
        alarms = alarm_definitions(self.clients["cloudwatch"])
        (work / "alarms.json").write_text(json.dumps(alarms, indent=1, default=str))
        manifest["alarms"] = len(alarms)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = self.state_dir / "state.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.snapshot_dir.exists():
            self.snapshot_dir.rename(old)
        work.rename(self.snapshot_dir)
        shutil.rmtree(old, ignore_errors=True)
        return self.snapshot_dir

    def _restore(self) -> dict[str, int]:
        """Load the last snapshot into the freshly created buckets and tables."""
        from moto.s3.models import s3_backends

        manifest_file = self.snapshot_dir / "manifest.json"
        if not manifest_file.exists():
            return {}
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != SNAPSHOT_FORMAT or manifest.get("moto") != MOTO_VERSION:
            raise PlatformError(
                f"{self.snapshot_dir} was saved by moto {manifest.get('moto')} (format "
                f"{manifest.get('format')}); this platform runs moto {MOTO_VERSION}. Move it "
                "away (or start with --fresh) to begin with empty buckets and tables."
            )
        assert self.clients is not None
        restored: dict[str, int] = {}
        backend = s3_backends[self.account_id]["aws"]
        renamed_keys = _renamed(manifest.get("kms_keys", {}), self._kms_keys())
        for name in manifest["buckets"]:
            if name not in backend.buckets:
                self.progress(f"snapshot bucket {name} is not in the stack any more; not restored")
                continue
            keys = backend.buckets[name].keys
            versions = pickle.loads((self.snapshot_dir / "s3" / f"{name}.pickle").read_bytes())
            for key, key_versions in versions:
                for version in key_versions:
                    kms = getattr(version, "kms_key_id", None)
                    version.kms_key_id = renamed_keys.get(kms, kms)
                keys.setlist(key, key_versions)
            restored[f"s3://{name}"] = sum(len(v) for _, v in versions)
        ddb = self.clients["dynamodb"]
        existing = set(_paginate(ddb, "list_tables", "TableNames"))
        for table in manifest["tables"]:
            if table not in existing:
                self.progress(f"snapshot table {table} is not in the stack any more; not restored")
                continue
            items = pickle.loads((self.snapshot_dir / "dynamodb" / f"{table}.pickle").read_bytes())
            for i in range(0, len(items), 25):
                requests = [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]
                pending: dict[str, Any] = {table: requests}
                while pending:
                    pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems")
            restored[f"dynamodb:{table}"] = len(items)
        restored["alarms"] = self._restore_alarms()
        return restored

    def _restore_alarms(self) -> int:
        """Put back the snapshot's alarms the stack did not create again (every model's, put
        by the governance function at registration: on AWS they outlive any restart)."""
        saved = self.snapshot_dir / "alarms.json"
        if not saved.exists():
            return 0
        assert self.clients is not None
        cloudwatch = self.clients["cloudwatch"]
        existing = {a["AlarmName"] for a in alarm_definitions(cloudwatch)}
        missing = [a for a in json.loads(saved.read_text()) if a["AlarmName"] not in existing]
        for alarm in missing:
            cloudwatch.put_metric_alarm(**alarm)
        return len(missing)

    def _kms_keys(self) -> dict[str, dict[str, str]]:
        """Each KMS key of the stack by logical id: its id and ARN in this run."""
        assert self.resolver is not None
        return {
            lid: {"id": self.resolver.physical_id(lid), "arn": self.resolver.arn(lid)}
            for lid, r in self.resolver.resources.items()
            if r["Type"] == "AWS::KMS::Key"
        }

    # -- helpers --------------------------------------------------------------------------------

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _timed(self, name: str) -> _Timer:
        return _Timer(self.timings, name)


class _Timer:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = time.perf_counter() - self.started


def _renamed(before: dict[str, dict[str, str]], now: dict[str, dict[str, str]]) -> dict[str, str]:
    """A restored object's key id or ARN from the last run → the same key's in this one."""
    renamed = {}
    for lid, old in before.items():
        if lid in now:
            renamed[old["id"]] = now[lid]["id"]
            renamed[old["arn"]] = now[lid]["arn"]
    return renamed


def _paginate(client: Any, method: str, key: str, **kwargs: Any) -> list[Any]:
    return [item for page in client.get_paginator(method).paginate(**kwargs) for item in page[key]]
