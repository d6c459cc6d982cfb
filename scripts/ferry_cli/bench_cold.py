"""Cold-start child of `ferry bench scoring`: run as a script in a fresh interpreter.

    python -P bench_cold.py bare|bare-boto3|handler WORKDIR

(-P keeps this folder off sys.path: its functions.py would shadow the repo's functions/.)

`bare`: timer, then `import numpy, onnxruntime, boto3, pydantic` and one InferenceSession.
`bare-boto3`: the same with boto3 imported before the timer (the handler child's moto has).
`handler`: moto started and the registered model replayed into it from WORKDIR (untimed),
then timer, import the scoring handler and serve its first predict request.
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
    import base64
    import contextlib
    import importlib
    import json
    import os
    import tempfile
    from pathlib import Path

    import boto3
    from moto import mock_aws

    repo_root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo_root))
    from ferry_cli.events import LambdaContext, http_api_event
    from ferry_cli.local_aws import FAKE_CREDENTIALS, LocalResources, create_resources

    manifest = json.loads(Path(workdir, "manifest.json").read_text())
    res = LocalResources()
    cache = tempfile.mkdtemp(prefix="ferry-cold-cache-")  # fresh and empty: the fetch happens
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.update(res.environment(cache))
    with mock_aws():
        create_resources(res)
        s3 = boto3.client("s3")
        renamed: dict[str, str] = {}
        for obj in manifest["objects"]:
            resp = s3.put_object(
                Bucket=res.model_bucket,
                Key=obj["key"],
                Body=base64.b64decode(obj["body"]),
                ContentType=obj["content_type"],
            )
            renamed[obj["version_id"]] = resp["VersionId"]
        items_json = json.dumps(manifest["items"])
        for old, new in renamed.items():  # the cards pin the parent's S3 version ids
            items_json = items_json.replace(old, new)
        ddb = boto3.client("dynamodb")
        for item in json.loads(items_json):
            ddb.put_item(TableName=res.registry_table, Item=item)
        # The handler must build its own boto3 session and load its service models itself.
        boto3.DEFAULT_SESSION = None
        event = http_api_event(
            "POST", manifest["path"], json.dumps({"instances": manifest["instances"]})
        )
        context = LambdaContext("ferry-scoring")
        preloaded = [m for m in WATCHED if m in sys.modules]
        modules_before = len(sys.modules)
        assert "ferry_core" not in sys.modules and "functions" not in sys.modules
        with Path(os.devnull).open("w") as sink, contextlib.redirect_stdout(sink):
            t0 = time.perf_counter_ns()
            handler = importlib.import_module("functions.scoring.handler")
            t1 = time.perf_counter_ns()
            resp = handler.lambda_handler(event, context)
            t2 = time.perf_counter_ns()
    if resp["statusCode"] != 200:
        raise SystemExit(f"first request failed: {resp['statusCode']} {resp['body'][:300]}")
    fetched = [p.name for p in Path(cache).iterdir()]
    if not fetched:
        raise SystemExit("the model was not fetched into the fresh cache dir")
    return {
        "ms": (t2 - t0) / 1e6,
        "import_ms": (t1 - t0) / 1e6,
        "first_request_ms": (t2 - t1) / 1e6,
        "modules_before": modules_before,
        "preloaded": preloaded,
        "fetched": fetched,
    }


def main() -> None:
    mode, workdir = sys.argv[1], sys.argv[2]
    out = _handler(workdir) if mode == "handler" else _bare(workdir)
    print(__import__("json").dumps({"mode": mode, **out}))


if __name__ == "__main__":
    main()
