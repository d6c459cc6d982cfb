"""Run Lambda invocations in this process, with the real handlers: the hook into moto 5.2.5.

moto runs Lambda code only in Docker. `install(runtime)` replaces
`moto.awslambda.models.LambdaFunction._invoke_lambda` (pinned: `MOTO_VERSION`), the one method
every invocation path of moto goes through — `Invoke`, S3 notifications, SQS event source
mappings, EventBridge targets and Step Functions Task states — so all of them run the handler
in `functions/<folder>/` in this process. `tests/e2e/test_local_lambda_runtime.py` fails loudly if
a moto upgrade moves or reshapes the hook.

Each function gets what Lambda gives it: its own module instance (module-level caches are per
function, as per container), its environment variables, a `LambdaContext`, and its stdout and
stderr captured per invocation and returned as its logs (also appended to
`.ferry/logs/<function>.log`, written to moto's CloudWatch Logs, and passed to `on_logs`).

Environment and output are process-global, and invocations overlap (the HTTP API serves
concurrent requests; a handler's S3 upload triggers another function from moto's server thread
while the first still runs). A global lock would serialise the platform and deadlock on such
nested invocations, so instead `os.environ`, `sys.stdout` and `sys.stderr` are replaced, while
installed, by thread-routing proxies: the invoking thread sees the function's environment and
writes to the invocation's buffer; every other thread sees the process as before. The trade-off:
threads that a handler starts itself see the process environment and write to the process
stdout, and code that bound `os.environ` or `sys.stdout` to a name before `install()` keeps the
process-wide object.

Within one function, invocations take turns (one at a time, as in one Lambda container): a
handler's module globals hold per-invocation state (Powertools' Metrics keeps its metric set in
class attributes), which overlapping calls corrupted — about one request in 5,000 under load
came back 500 (`dictionary changed size during iteration`). Different functions still overlap,
so nested invocations cannot deadlock; what they share is Powertools' class-level metric set,
which only metrics flushed at the same instant by two functions could still mix.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from ferry_cli.events import LambdaContext

MOTO_VERSION = "5.2.5"
HOOK_TARGET = "moto.awslambda.models.LambdaFunction._invoke_lambda"
DEFAULT_HANDLER = "handler.lambda_handler"

LogSink = Callable[[str, str], None]


class _ThreadEnviron(MutableMapping[str, str]):
    """`os.environ` for the whole process, except in threads running a function invocation."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base
        self._local = threading.local()

    def _current(self) -> MutableMapping[str, str]:
        overlay = getattr(self._local, "env", None)
        return self.base if overlay is None else overlay

    @contextmanager
    def use(self, env: dict[str, str]) -> Iterator[None]:
        previous = getattr(self._local, "env", None)
        self._local.env = {**self._current(), **env}
        try:
            yield
        finally:
            self._local.env = previous

    def __getitem__(self, key: str) -> str:
        return self._current()[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._current()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def copy(self) -> dict[str, str]:
        return dict(self._current())

    def __repr__(self) -> str:
        return f"ThreadEnviron({dict(self._current())!r})"


class _ThreadStream(io.TextIOBase):
    """A text stream that writes to the invoking thread's buffer, else to the process stream."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._local = threading.local()

    @contextmanager
    def capture(self, buffer: io.StringIO) -> Iterator[None]:
        previous = getattr(self._local, "buffer", None)
        self._local.buffer = buffer
        try:
            yield
        finally:
            self._local.buffer = previous

    def write(self, text: str) -> int:
        buffer = getattr(self._local, "buffer", None)
        return (buffer if buffer is not None else self.target).write(text)

    def flush(self) -> None:
        if getattr(self._local, "buffer", None) is None:
            self.target.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return getattr(self._local, "buffer", None) is None and self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")


@dataclass
class _Function:
    name: str
    folder: Path
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_seconds: float
    module: ModuleType | None = None
    import_lock: threading.Lock = field(default_factory=threading.Lock)
    # One invocation at a time per function, as one Lambda container runs one: handlers keep
    # per-invocation state in module globals (Powertools' Metrics holds its metric set in
    # class attributes), which concurrent threads would mix and corrupt.
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
    ) -> None:
        """`base_environment` is given to every function first (the platform passes the local
        AWS endpoint and credentials there); a function's own variables win over it.

        `tmp_dir`: Lambda gives each function its own /tmp; with this set, a variable naming a
        path under /tmp (a model cache, say) is moved to `tmp_dir/<function>/…`, so functions
        and platforms do not share files that in AWS they could never share."""
        self.repo_root = Path(repo_root).resolve()
        self.on_logs = on_logs
        self.log_dir = Path(log_dir) if log_dir else self.repo_root / ".ferry" / "logs"
        self.base_environment = dict(base_environment or {})
        self.region = region
        self.account_id = account_id
        self.tmp_dir = Path(tmp_dir) if tmp_dir else None
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
    ) -> None:
        """Make `function_name` runnable: `handler` ("module.function") in `folder`.

        `folder` is relative to the repository root (`functions/scoring`) or absolute.
        """
        path = Path(folder)
        path = (path if path.is_absolute() else self.repo_root / path).resolve()
        module_file = path / (handler.rpartition(".")[0].replace(".", "/") + ".py")
        if not module_file.is_file():
            raise FileNotFoundError(f"{function_name}: no handler module {module_file}")
        self._functions[function_name] = _Function(
            function_name,
            path,
            handler,
            {k: self._own_tmp(function_name, str(v)) for k, v in environment.items()},
            memory_mb,
            timeout_seconds,
        )

    def _own_tmp(self, function_name: str, value: str) -> str:
        if self.tmp_dir is None or not (value == "/tmp" or value.startswith("/tmp/")):
            return value
        return str(self.tmp_dir / function_name / value[len("/tmp") :].lstrip("/"))

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
        buffer = io.StringIO()
        started = time.perf_counter()
        errored = False
        with _context(self._environment(fn), buffer):
            print(f"START RequestId: {request_id} Version: $LATEST")
            try:
                handler = self._handler(fn)
                context = LambdaContext(
                    function_name=fn.name,
                    memory_limit_in_mb=fn.memory_mb,
                    timeout_seconds=fn.timeout_seconds,
                    aws_request_id=request_id,
                    invoked_function_arn=(
                        f"arn:aws:lambda:{self.region}:{self.account_id}:function:{fn.name}"
                    ),
                    log_group_name=f"/aws/lambda/{fn.name}",
                    log_stream_name=f"local/{request_id}",
                )
                result = handler(event, context)
                payload = json.dumps(result).encode()
            except _ImportFailed as exc:
                errored = True
                cause = exc.__cause__ or exc
                payload = _error_payload(cause, request_id, "Runtime.ImportModuleError")
            except Exception as exc:
                errored = True
                payload = _error_payload(exc, request_id)
            seconds = time.perf_counter() - started
            if seconds > fn.timeout_seconds:
                print(
                    f"WARNING: {fn.name} ran {seconds:.1f}s, over its {fn.timeout_seconds:.0f}s "
                    "timeout; Lambda would have stopped it"
                )
            print(f"END RequestId: {request_id}")
            print(
                f"REPORT RequestId: {request_id}\tDuration: {seconds * 1000:.2f} ms\t"
                f"Memory Size: {fn.memory_mb} MB" + ("\tStatus: error" if errored else "")
                # Lambda says so too (Status: error); emf.py counts it as an AWS/Lambda Error.
            )
        logs = buffer.getvalue()
        self._publish(fn.name, logs)
        return payload, errored, logs

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
        }

    def _handler(self, fn: _Function) -> Callable[[Any, Any], Any]:
        """Import the handler module once per function (its cold start), by file path."""
        with fn.import_lock:
            if fn.module is None:
                module_path, _, _ = fn.handler.rpartition(".")
                file = fn.folder / (module_path.replace(".", "/") + ".py")
                safe = re.sub(r"\W", "_", fn.name)
                name = f"ferry_local_functions.{safe}.{module_path.replace('/', '.')}"
                try:
                    if str(fn.folder) not in sys.path:
                        sys.path.insert(0, str(fn.folder))  # sibling modules of the handler
                    spec = importlib.util.spec_from_file_location(name, file)
                    if spec is None or spec.loader is None:
                        raise ImportError(f"cannot load {file}")
                    module = importlib.util.module_from_spec(spec)
                    sys.modules[name] = module
                    spec.loader.exec_module(module)
                except Exception as exc:
                    sys.modules.pop(name, None)
                    raise _ImportFailed(str(exc)) from exc
                fn.module = module
        return getattr(fn.module, fn.handler.rpartition(".")[2])

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


class _ImportFailed(Exception):
    pass


def _error_payload(exc: BaseException, request_id: str, error_type: str | None = None) -> bytes:
    """The payload Lambda returns for an unhandled error; the traceback goes to the logs."""
    trace = traceback.format_exception(exc)
    print(f"[ERROR] {type(exc).__name__}: {exc}\n{''.join(trace)}", end="")
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": error_type or type(exc).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
    ).encode()


# ---------------------------------------------------------------- process-wide installation

_installed: dict[str, Any] = {}
_install_lock = threading.RLock()


@contextmanager
def _context(env: dict[str, str], buffer: io.StringIO) -> Iterator[None]:
    """The invoking thread sees `env` and writes to `buffer` (see the module docstring)."""
    environ, stdout, stderr = _routing()
    with environ.use(env), stdout.capture(buffer), stderr.capture(buffer):
        yield


def _routing() -> tuple[_ThreadEnviron, _ThreadStream, _ThreadStream]:
    """The proxies, re-asserted on each invocation: a test runner may swap sys.stdout between."""
    with _install_lock:
        environ = os.environ
        if not isinstance(environ, _ThreadEnviron):
            environ = _ThreadEnviron(environ)
            os.environ = environ  # type: ignore[assignment]  # noqa: B003
        streams = []
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if not isinstance(current, _ThreadStream):
                current = _ThreadStream(current)
                setattr(sys, name, current)
            streams.append(current)
        return environ, streams[0], streams[1]


def _hooked_invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
    """Replacement of `LambdaFunction._invoke_lambda`: same arguments, same return shape."""
    runtime: FunctionRuntime | None = _installed.get("runtime")
    if isinstance(event, str | bytes):
        event = json.loads(event or "{}")
    if runtime is None:  # uninstalled while moto still holds a reference
        return json.dumps({"errorMessage": "no local runtime installed"}), True, ""
    payload, errored, logs = runtime.invoke(self.function_name, {} if event is None else event)
    try:  # moto's CloudWatch Logs, as the Docker path does (best effort)
        self.logs_backend.ensure_log_group(self.logs_group_name)
        self.save_logs(logs)
    except Exception:
        traceback.print_exc()
    return payload.decode(), errored, logs


def install(runtime: FunctionRuntime) -> None:
    """Route every moto Lambda invocation in this process to `runtime` (idempotent)."""
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if "original" not in _installed:
            _installed["original"] = LambdaFunction.__dict__["_invoke_lambda"]
        _installed["runtime"] = runtime
        LambdaFunction._invoke_lambda = _hooked_invoke_lambda  # type: ignore[method-assign]
        _routing()


def uninstall() -> None:
    """Give moto back its own `_invoke_lambda`, and the process its environ and streams."""
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if "original" not in _installed:
            return
        LambdaFunction._invoke_lambda = _installed.pop("original")  # type: ignore[method-assign]
        if isinstance(os.environ, _ThreadEnviron):
            os.environ = os.environ.base  # type: ignore[assignment]  # noqa: B003
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _ThreadStream):
                setattr(sys, name, stream.target)
        _installed.clear()


def installed_runtime() -> FunctionRuntime | None:
    return _installed.get("runtime")
