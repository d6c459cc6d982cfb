"""One local function's own process, as a Lambda container is: `python -m ferry_local.lambda_worker
FOLDER HANDLER`, started by `lambda_runtime.FunctionRuntime` with the function's environment.

It imports the handler on the first invocation (its cold start), then answers invocations one
at a time: a JSON line on stdin (`{"event", "context"}`) → a JSON line on the process's
original stdout (`{"payload", "errored", "logs"}`). Everything the handler writes to
`sys.stdout`/`sys.stderr` during an invocation (prints, Powertools' log and EMF lines) is that
invocation's logs; output between invocations, and any at file-descriptor level, goes to stderr.
The process ends when stdin closes (the platform stopped, or died).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ferry_local.events import LambdaContext


class _InvocationStream(io.TextIOBase):
    """`sys.stdout`/`sys.stderr` of the worker: the current invocation's buffer, else `idle`.

    Loggers bind the stream object when they are created (at import), so the object stays and
    only its destination changes per invocation."""

    def __init__(self, idle: TextIO) -> None:
        self.idle = idle
        self.buffer_: io.StringIO | None = None

    def write(self, text: str) -> int:
        return (self.buffer_ if self.buffer_ is not None else self.idle).write(text)

    def flush(self) -> None:
        if self.buffer_ is None:
            self.idle.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _ImportFailed(Exception):
    pass


def _load(folder: Path, handler: str) -> Callable[[Any, Any], Any]:
    module_path, _, function = handler.rpartition(".")
    file = folder / (module_path.replace(".", "/") + ".py")
    try:
        spec = importlib.util.spec_from_file_location(module_path, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_path] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_path, None)
        raise _ImportFailed(str(exc)) from exc
    return getattr(module, function)  # type: ignore[no-any-return]


def error_payload(exc: BaseException, request_id: str, error_type: str | None = None) -> str:
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
    )


def _answer(
    request: dict[str, Any], folder: Path, handler: str, loaded: list[Callable[[Any, Any], Any]]
) -> tuple[str, bool]:
    context = LambdaContext(**request["context"])
    try:
        if not loaded:
            loaded.append(_load(folder, handler))
        return json.dumps(loaded[0](request["event"], context)), False
    except _ImportFailed as exc:
        cause = exc.__cause__ or exc
        return error_payload(cause, context.aws_request_id, "Runtime.ImportModuleError"), True
    except Exception as exc:
        return error_payload(exc, context.aws_request_id), True


def main(folder: str, handler: str) -> None:
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # file-descriptor-level output of native code goes to stderr
    stdout, stderr = _InvocationStream(sys.__stderr__), _InvocationStream(sys.__stderr__)
    sys.stdout, sys.stderr = stdout, stderr
    loaded: list[Callable[[Any, Any], Any]] = []
    for line in sys.stdin:
        buffer = io.StringIO()
        stdout.buffer_ = stderr.buffer_ = buffer
        try:
            payload, errored = _answer(json.loads(line), Path(folder), handler, loaded)
        finally:
            stdout.buffer_ = stderr.buffer_ = None
        answer = {"payload": payload, "errored": errored, "logs": buffer.getvalue()}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
