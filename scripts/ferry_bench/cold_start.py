"""Cold-start child of `ferry bench scoring`: run as a script in a fresh interpreter.

    python -P -m ferry_bench.cold_start bare|bare-boto3|handler WORKDIR

`bare`: timer, then `import numpy, onnxruntime, boto3, pydantic` and one InferenceSession.
`bare-boto3`: the same with boto3 imported before the timer (for reference).
`handler`: timer, import the scoring handler and serve its first predict request against the
moto server the parent runs (registry read, artifact fetched and sha256-checked, session).
Prints one JSON object: {"mode", "ms", "modules_before", ...}.
"""

import sys
import time

if len(sys.argv) > 1 and sys.argv[1] == "bare-boto3":
    import boto3  # noqa: F401  (before the timer, on purpose)

_T0 = time.perf_counter_ns()  # nothing else imported above this line in the bare modes
_MODULES_BEFORE = len(sys.modules)

WATCHED = ("boto3", "botocore", "numpy", "onnxruntime", "pydantic", "aws_lambda_powertools")


def _bare(workdir: str) -> dict:
    import boto3  # noqa: F401
    import numpy  # noqa: F401
    import onnxruntime
    import pydantic  # noqa: F401

    onnxruntime.InferenceSession(f"{workdir}/model.onnx", providers=["CPUExecutionProvider"])
    ms = (time.perf_counter_ns() - _T0) / 1e6
    return {"ms": ms, "modules_before": _MODULES_BEFORE}


def _handler(workdir: str) -> dict:
    """Import the handler and serve one predict request against a moto server in the parent.

    Nothing is imported before the timer (as in `bare`): boto3's import is inside both figures.
    The parent set AWS_ENDPOINT_URL, credentials, the function's environment and an empty
    MODEL_CACHE_DIR, so the first request really reads the registry and fetches the model.
    """
    import contextlib
    import importlib
    import json
    import os
    from pathlib import Path

    event = json.loads(Path(workdir, "event.json").read_text())
    from ferry_local.events import LambdaContext

    context = LambdaContext("ferry-scoring")
    modules_before = len(sys.modules)
    with Path(os.devnull).open("w") as sink, contextlib.redirect_stdout(sink):
        t1 = time.perf_counter_ns()
        handler = importlib.import_module("functions.scoring.handler")
        t2 = time.perf_counter_ns()
        resp = handler.lambda_handler(event, context)
        t3 = time.perf_counter_ns()
    if resp["statusCode"] != 200:
        raise SystemExit(f"first request failed: {resp['statusCode']} {resp['body'][:300]}")
    fetched = [p.name for p in Path(os.environ["MODEL_CACHE_DIR"]).iterdir()]
    if not fetched:
        raise SystemExit("the model was not fetched into the fresh cache dir")
    return {
        "ms": (t3 - _T0) / 1e6,
        "setup_ms": (t1 - _T0) / 1e6,
        "import_ms": (t2 - t1) / 1e6,
        "first_request_ms": (t3 - t2) / 1e6,
        "modules_before": modules_before,
        "preloaded": [m for m in WATCHED if m in sys.modules and m != "functions"],
        "fetched": fetched,
    }


def main() -> None:
    mode, workdir = sys.argv[1], sys.argv[2]
    out = _handler(workdir) if mode == "handler" else _bare(workdir)
    print(__import__("json").dumps({"mode": mode, **out}))


if __name__ == "__main__":
    main()
