"""The local Lambda runtime and its hook into moto: every invocation path runs the handler.

If a moto upgrade moves or reshapes `LambdaFunction._invoke_lambda`, the first two tests fail
and say so; the round trips below prove the hook through boto3 → moto → hook → the function's
own process → handler.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import os
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import moto
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaFunction

from ferry_local import moto_hooks
from ferry_local.lambda_runtime import FunctionRuntime
from ferry_local.moto_hooks import MOTO_VERSION

HANDLER = """
import json, os, time
CALLS = []

def lambda_handler(event, context):
    CALLS.append(event)
    print(json.dumps({"seen": os.environ.get("GREETING"), "fn": context.function_name}))
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if "Records" in event and os.environ.get("RECORD_FILE"):
        with open(os.environ["RECORD_FILE"], "a") as fh:
            fh.write(json.dumps(event) + "\\n")
    return {"greeting": os.environ.get("GREETING"), "calls": len(CALLS), "pid": os.getpid(),
            "remaining_ms": context.get_remaining_time_in_millis()}
"""


def test_moto_is_the_version_the_hook_was_written_for() -> None:
    assert moto.__version__ == MOTO_VERSION, (
        f"moto is {moto.__version__}, the Lambda hook was verified on {MOTO_VERSION}: re-check "
        "LambdaFunction._invoke_lambda and its callers, then update MOTO_VERSION"
    )


def test_the_hooked_method_still_exists_with_the_same_signature_and_caller() -> None:
    method = LambdaFunction.__dict__.get("_invoke_lambda")
    assert method is not None, "moto no longer has LambdaFunction._invoke_lambda"
    assert list(inspect.signature(method).parameters) == ["self", "event"]
    # LambdaFunction.invoke unpacks (payload, errored, logs) from it: the shape we return.
    source = inspect.getsource(LambdaFunction.invoke)
    assert "res, errored, logs = self._invoke_lambda(event=body)" in source


@pytest.fixture
def function_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    return folder


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[FunctionRuntime]:
    seen: list[tuple[str, str]] = []
    rt = FunctionRuntime(tmp_path, on_logs=lambda name, logs: seen.append((name, logs)))
    rt.seen = seen  # type: ignore[attr-defined]
    try:
        with moto_hooks.installed(runtime=rt):
            yield rt
    finally:
        rt.close()


def _create(name: str, env: dict[str, str]) -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    try:
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="fn-role")["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("README.txt", "runs in-process")
    boto3.client("lambda", region_name="us-east-1").create_function(
        FunctionName=name,
        Role=role,
        Runtime="python3.11",
        Handler="handler.lambda_handler",
        Code={"ZipFile": buffer.getvalue()},
        Environment={"Variables": env},
    )


def test_a_boto3_invoke_runs_the_real_handler_with_its_environment(
    runtime: FunctionRuntime, function_dir: Path
) -> None:
    with mock_aws():
        _create("greeter", {"GREETING": "hello"})
        runtime.register("greeter", function_dir, {"GREETING": "hello"}, timeout_seconds=30)
        resp = boto3.client("lambda", region_name="us-east-1").invoke(
            FunctionName="greeter", Payload=json.dumps({"n": 1}), LogType="Tail"
        )
    payload = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp
    assert payload["greeting"] == "hello" and payload["calls"] == 1
    assert 0 < payload["remaining_ms"] <= 30_000
    logs = base64.b64decode(resp["LogResult"]).decode()
    assert '{"seen": "hello", "fn": "greeter"}' in logs
    assert runtime.seen[-1][0] == "greeter"  # type: ignore[attr-defined]
    assert "GREETING" not in os.environ  # the process environment was not touched
    log_file = runtime.log_dir / "greeter.log"
    assert '"seen": "hello"' in log_file.read_text()


def test_an_exception_is_a_function_error_with_lambdas_payload(
    runtime: FunctionRuntime, function_dir: Path
) -> None:
    with mock_aws():
        _create("failing", {})
        runtime.register("failing", function_dir, {})
        resp = boto3.client("lambda", region_name="us-east-1").invoke(
            FunctionName="failing", Payload=json.dumps({"fail": True})
        )
    assert resp["FunctionError"] == "Handled"
    payload = json.loads(resp["Payload"].read())
    assert payload["errorType"] == "ValueError" and payload["errorMessage"] == "asked to fail"
    assert payload["stackTrace"]


def test_a_broken_module_is_an_import_error_not_a_crash(
    runtime: FunctionRuntime, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "handler.py").write_text("import no_such_module_anywhere\n")
    runtime.register("broken", folder, {})
    payload, errored, logs = runtime.invoke("broken", {})
    assert errored and json.loads(payload)["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_anywhere" in logs


def test_an_unregistered_function_is_reported_by_name(runtime: FunctionRuntime) -> None:
    payload, errored, _ = runtime.invoke("ghost", {})
    assert errored and "ghost" in json.loads(payload)["errorMessage"]


def test_concurrent_invocations_each_see_their_own_environment_and_logs(
    runtime: FunctionRuntime, function_dir: Path
) -> None:
    """Two functions with different variables, overlapping in time, never see each other's."""
    runtime.register("a", function_dir, {"GREETING": "from-a"})
    runtime.register("b", function_dir, {"GREETING": "from-b"})
    results: dict[str, list[Any]] = {"a": [], "b": []}

    def call(name: str) -> None:
        for _ in range(5):
            payload, errored, logs = runtime.invoke(name, {"sleep": 0.01})
            results[name].append((json.loads(payload)["greeting"], errored, logs))

    threads = [threading.Thread(target=call, args=(n,)) for n in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("a", "b"):
        assert len(results[name]) == 10
        for greeting, errored, logs in results[name]:
            assert greeting == f"from-{name}" and not errored
            assert f'"seen": "from-{name}"' in logs and "from-" + "ab"[name == "a"] not in logs


def test_each_function_has_its_own_module_like_its_own_container(
    runtime: FunctionRuntime, function_dir: Path
) -> None:
    runtime.register("one", function_dir, {})
    runtime.register("two", function_dir, {})
    calls = [json.loads(runtime.invoke(n, {})[0])["calls"] for n in ("one", "one", "two")]
    assert calls == [1, 2, 1]


def test_sqs_event_source_mapping_and_s3_notification_reach_the_handler(
    runtime: FunctionRuntime, function_dir: Path, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.jsonl"
    env = {"RECORD_FILE": str(record_file)}
    with mock_aws():
        _create("consumer", env)
        runtime.register("consumer", function_dir, env)
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        lam = boto3.client("lambda", region_name="us-east-1")
        lam.create_event_source_mapping(
            EventSourceArn=arn["QueueArn"], FunctionName="consumer", BatchSize=1
        )
        sqs.send_message(QueueUrl=url, MessageBody="job-1")

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="uploads-bucket")
        fn_arn = lam.get_function(FunctionName="consumer")["Configuration"]["FunctionArn"]
        s3.put_bucket_notification_configuration(
            Bucket="uploads-bucket",
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {"LambdaFunctionArn": fn_arn, "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
        s3.put_object(Bucket="uploads-bucket", Key="in/file.csv", Body=b"a,b\n1,2\n")
    events = [json.loads(line) for line in record_file.read_text().splitlines()]
    sources = [e["Records"][0].get("eventSource") for e in events]
    assert sources == ["aws:sqs", "aws:s3"]
    assert events[0]["Records"][0]["body"] == "job-1"
    # Keys arrive URL-encoded, as from S3 (moto also encodes "/"; handlers unquote_plus them).
    assert unquote_plus(events[1]["Records"][0]["s3"]["object"]["key"]) == "in/file.csv"


def test_each_function_runs_in_its_own_process_and_this_one_is_untouched(
    runtime: FunctionRuntime, function_dir: Path
) -> None:
    """While an invocation runs, this process keeps its own environ and streams objects."""
    runtime.register("slow", function_dir, {"GREETING": "slow"})
    runtime.register("other", function_dir, {})
    environ, stdout, stderr = os.environ, sys.stdout, sys.stderr
    seen: list[dict[str, Any]] = []
    worker = threading.Thread(
        target=lambda: seen.append(json.loads(runtime.invoke("slow", {"sleep": 0.5})[0]))
    )
    worker.start()
    while worker.is_alive():
        assert os.environ is environ and sys.stdout is stdout and sys.stderr is stderr
        assert "GREETING" not in os.environ
        worker.join(0.05)
    other = json.loads(runtime.invoke("other", {})[0])
    assert seen[0]["greeting"] == "slow"
    assert len({seen[0]["pid"], other["pid"], os.getpid()}) == 3
