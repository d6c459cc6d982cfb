"""Run the stack's Lambda functions on this machine, each in its own process, as Lambda does.

`FunctionRuntime.invoke(name, event)` is what moto's Lambda calls once `moto_hooks` routes it
here, so every invocation path (Invoke, S3 notifications, SQS event source mappings,
EventBridge targets, Step Functions tasks) runs the real handler in `functions/<folder>/`.

Each function runs in a worker process of its own (`lambda_worker`), started on its first
invocation (its cold start) and kept warm, as a Lambda container is: the process environment
is the function's environment (its own variables over what Lambda sets, plus the platform's
`base_environment`), its module state is its own, and what it writes to stdout and stderr
during an invocation comes back as that invocation's logs (also appended to
`.ferry/logs/<function>.log`, written to moto's CloudWatch Logs, and passed to `on_logs`).
Nothing of this process (its `os.environ`, `sys.stdout`, `sys.stderr`) changes while functions
run. Handlers reach AWS through the endpoint in their environment (the platform's moto
server), so a worker cannot see an in-process `mock_aws`.

With `freeze_between_invocations` a worker is stopped (SIGSTOP) once it answered and
continued (SIGCONT) for its next invocation, as Lambda freezes an execution environment: a
function's background threads then run only while it handles an invocation.

Within one function, invocations take turns (one at a time, as in one Lambda container);
different functions overlap, so an invocation that triggers another function (an S3 upload
notifying the batch function) does not wait on itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ferry_local.moto_iam import RoleCredentials, SessionCredentials

DEFAULT_HANDLER = "handler.lambda_handler"
# What a worker keeps of this process's environment: what the interpreter itself needs.
PROCESS_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "TMPDIR")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder ferry_local is in

LogSink = Callable[[str, str], None]
# Lambda's service principal: the one a function's execution role must trust.
LAMBDA_SERVICE = "lambda.amazonaws.com"
# A sandbox whose credentials expire sooner than this is replaced before the next invocation.
RENEW_BEFORE = timedelta(minutes=5)


@dataclass
class _Function:
    name: str
    folder: Path
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_seconds: float
    role_arn: str | None = None
    worker: subprocess.Popen[str] | None = None
    session: SessionCredentials | None = None  # the worker's execution-role credentials
    # One invocation at a time per function, as one Lambda container runs one.
    run_lock: threading.Lock = field(default_factory=threading.Lock)


class FunctionRuntime:
    """The functions this process can run, by their (physical) function name."""

    def __init__(
        self,
        repo_root: str | os.PathLike[str],
        on_logs: LogSink | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        base_environment: dict[str, str] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        tmp_dir: str | os.PathLike[str] | None = None,
        credentials: RoleCredentials | None = None,
    ) -> None:
        """`base_environment` is given to every function first (the platform passes the local
        AWS endpoint and credentials there); a function's own variables win over it.

        `tmp_dir`: Lambda gives each function its own /tmp; with this set, a variable naming a
        path under /tmp (a model cache, say) is moved to `tmp_dir/<function>/…`, so functions
        and platforms do not share files that in AWS they could never share.

        `credentials(role_arn, service)` issues a session of a function's execution role: each
        worker runs with its own role's credentials (not `base_environment`'s), as Lambda
        gives them, and a worker whose session is about to expire is replaced by a fresh one
        (a new sandbox) before its next invocation."""
        self.repo_root = Path(repo_root).resolve()
        self.on_logs = on_logs
        self.log_dir = Path(log_dir) if log_dir else self.repo_root / ".ferry" / "logs"
        self.base_environment = dict(base_environment or {})
        self.region = region
        self.account_id = account_id
        self.tmp_dir = Path(tmp_dir) if tmp_dir else None
        self.credentials = credentials
        # Lambda freezes an execution environment between invocations (its threads stop until
        # the next one); on, each worker is stopped (SIGSTOP) between invocations too.
        self.freeze_between_invocations = False
        self._functions: dict[str, _Function] = {}
        self._file_lock = threading.Lock()

    def register(
        self,
        function_name: str,
        folder: str | os.PathLike[str],
        environment: dict[str, str],
        handler: str = DEFAULT_HANDLER,
        *,
        memory_mb: int = 1024,
        timeout_seconds: float = 30.0,
        role_arn: str | None = None,
    ) -> None:
        """Make `function_name` runnable: `handler` ("module.function") in `folder`.

        `folder` is relative to the repository root (`functions/scoring`) or absolute;
        `role_arn` is its execution role (its worker runs with a session of it).
        """
        path = Path(folder)
        path = (path if path.is_absolute() else self.repo_root / path).resolve()
        module_file = path / (handler.rpartition(".")[0].replace(".", "/") + ".py")
        if not module_file.is_file():
            raise FileNotFoundError(f"{function_name}: no handler module {module_file}")
        if function_name in self._functions:  # new code or settings: a new container
            self._stop(self._functions[function_name])
        self._functions[function_name] = _Function(
            function_name,
            path,
            handler,
            {k: self._own_tmp(function_name, str(v)) for k, v in environment.items()},
            memory_mb,
            timeout_seconds,
            role_arn,
        )

    def _own_tmp(self, function_name: str, value: str) -> str:
        if self.tmp_dir is None or not (value == "/tmp" or value.startswith("/tmp/")):
            return value
        return str(self.tmp_dir / function_name / value[len("/tmp") :].lstrip("/"))

    def update_environment(self, function_name: str, environment: dict[str, str]) -> None:
        """New variables (UpdateFunctionConfiguration): the next invocation runs in a new
        process with them, as Lambda starts new execution environments after the change."""
        fn = self._functions.get(function_name)
        if fn is None:
            return
        with fn.run_lock:
            fn.environment = {
                k: self._own_tmp(function_name, str(v)) for k, v in environment.items()
            }
            self._stop(fn)

    def worker_pid(self, function_name: str) -> int | None:
        """The process id of the function's warm container (None while it is cold): the same
        id before and after tells that the same container answered."""
        fn = self._functions.get(function_name)
        worker = fn.worker if fn is not None else None
        return worker.pid if worker is not None and worker.poll() is None else None

    def functions(self) -> dict[str, Path]:
        """Registered function names and the folders their handlers run from."""
        return {name: fn.folder for name, fn in self._functions.items()}

    def invoke(self, function_name: str, event: Any) -> tuple[bytes, bool, str]:
        """Run one invocation: (JSON payload, errored, logs), as the Lambda service reports it."""
        fn = self._functions.get(function_name)
        if fn is None:
            message = f"no local runtime registered for function {function_name!r}"
            body = {"errorMessage": message, "errorType": "Runtime.NotRegistered"}
            return json.dumps(body).encode(), True, message
        with fn.run_lock:
            return self._invoke(fn, event)

    def _invoke(self, fn: _Function, event: Any) -> tuple[bytes, bool, str]:
        request_id = str(uuid.uuid4())
        context = {
            "function_name": fn.name,
            "memory_limit_in_mb": fn.memory_mb,
            "timeout_seconds": fn.timeout_seconds,
            "aws_request_id": request_id,
            "invoked_function_arn": (
                f"arn:aws:lambda:{self.region}:{self.account_id}:function:{fn.name}"
            ),
            "log_group_name": f"/aws/lambda/{fn.name}",
            "log_stream_name": f"local/{request_id}",
        }
        started = time.perf_counter()
        answer = self._ask(fn, {"event": event, "context": context})
        seconds = time.perf_counter() - started
        lines = [f"START RequestId: {request_id} Version: $LATEST\n", answer["logs"]]
        if seconds > fn.timeout_seconds:
            lines.append(
                f"WARNING: {fn.name} ran {seconds:.1f}s, over its {fn.timeout_seconds:.0f}s "
                "timeout; Lambda would have stopped it\n"
            )
        lines.append(f"END RequestId: {request_id}\n")
        # Lambda reports an error in the REPORT line too; emf.py counts it as AWS/Lambda Errors.
        status = "\tStatus: error" if answer["errored"] else ""
        lines.append(
            f"REPORT RequestId: {request_id}\tDuration: {seconds * 1000:.2f} ms\t"
            f"Memory Size: {fn.memory_mb} MB{status}\n"
        )
        logs = "".join(lines)
        self._publish(fn.name, logs)
        return answer["payload"].encode(), bool(answer["errored"]), logs

    def _ask(self, fn: _Function, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the function's worker (started if it is not running)."""
        worker = fn.worker
        if worker is not None and self._session_ending(fn):
            self._stop(fn)  # Lambda retires a sandbox before its credentials expire
            worker = None
        if worker is None or worker.poll() is not None:
            worker = fn.worker = self._start_worker(fn)
        stdin, stdout = _pipes(worker)
        _thaw(worker)
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            line = stdout.readline()
        except OSError:
            line = ""
        if line:
            if self.freeze_between_invocations:
                _signal(worker, signal.SIGSTOP)
            return json.loads(line)  # type: ignore[no-any-return]
        worker.wait()
        fn.worker = None
        message = f"{fn.name}: the function's process exited with status {worker.returncode}"
        body = {"errorMessage": message, "errorType": "Runtime.ExitError"}
        return {"payload": json.dumps(body), "errored": True, "logs": message + "\n"}

    def _session_ending(self, fn: _Function) -> bool:
        if fn.session is None:
            return False
        left = fn.session.expiration - datetime.now(UTC).replace(tzinfo=None)
        return left < RENEW_BEFORE

    def _start_worker(self, fn: _Function) -> subprocess.Popen[str]:
        if self.credentials is not None and fn.role_arn:
            fn.session = self.credentials(fn.role_arn, LAMBDA_SERVICE)
        kept = {k: os.environ[k] for k in PROCESS_VARIABLES if k in os.environ}
        # The function's folder first, as Lambda puts its task root on the path (a handler's
        # sibling modules import), then the platform's PYTHONPATH: code put on it (a custom
        # trainer) is in the image in AWS.
        paths = (str(fn.folder), str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", ""))
        python_path = os.pathsep.join(p for p in paths if p)
        env = {**kept, "PYTHONPATH": python_path, **self._environment(fn)}
        command = [sys.executable, "-m", "ferry_local.lambda_worker", str(fn.folder), fn.handler]
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=fn.folder,
            text=True,
            encoding="utf-8",
        )

    def close(self) -> None:
        """Stop every function's process; safe to call twice."""
        for fn in self._functions.values():
            self._stop(fn)

    @staticmethod
    def _stop(fn: _Function) -> None:
        """Stop the function's process: closing its stdin ends it (killed if it hangs)."""
        worker, fn.worker = fn.worker, None
        if worker is None:
            return
        _thaw(worker)  # a frozen process cannot see its stdin close
        for stream in (worker.stdin, worker.stdout):
            if stream is not None:
                stream.close()
        try:
            worker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def _environment(self, fn: _Function) -> dict[str, str]:
        """What Lambda sets (minus LAMBDA_TASK_ROOT, so Powertools' tracer stays off locally)."""
        return {
            **self.base_environment,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "_HANDLER": fn.handler,
            **fn.environment,
            **_credential_variables(fn.session),
        }

    def _publish(self, function_name: str, logs: str) -> None:
        with self._file_lock:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with (self.log_dir / f"{function_name}.log").open("a") as fh:
                fh.write(logs)
        if self.on_logs is not None:
            try:
                self.on_logs(function_name, logs)
            except Exception:  # a failing log consumer must not fail the invocation
                traceback.print_exc()


def _credential_variables(session: SessionCredentials | None) -> dict[str, str]:
    """The execution role's session, in the variables Lambda sets (none without a session)."""
    if session is None:
        return {}
    return {
        "AWS_ACCESS_KEY_ID": session.access_key_id,
        "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
        "AWS_SESSION_TOKEN": session.session_token,
    }


def _signal(worker: subprocess.Popen[str], signum: int) -> None:
    if worker.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)


def _thaw(worker: subprocess.Popen[str]) -> None:
    """Continue a worker frozen after its last invocation (harmless when it is not)."""
    _signal(worker, signal.SIGCONT)


def _pipes(worker: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    assert worker.stdin is not None and worker.stdout is not None
    return worker.stdin, worker.stdout
