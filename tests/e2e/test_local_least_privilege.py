"""Least privilege, proven by running: take one statement away from a role of the synthesized
stack and the end-to-end path that needs it fails, with an access error naming the action.

Every other end-to-end test runs with the roles as synthesized, so each one passing shows the
roles suffice; this one shows they are not larger than needed to be checked at all: the batch
function cannot write its scored output without `s3:PutObject` on `batch/scored/*`, and the
retraining workflow cannot train without `lambda:InvokeFunction` on the training function.

Runs `LocalPlatform` in this process, on a copy of the `Ferry-local` template.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from ferry_local.platform import LocalPlatform
from ferry_local.template import REPO_ROOT, SynthesizedStack, synthesize_local
from tests.e2e.conftest import PlatformClient, register_and_promote

MODEL = "credit-risk"


def _policy(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    """The statements of the default policy of the role whose logical id starts so."""
    (statements,) = [
        resource["Properties"]["PolicyDocument"]["Statement"]
        for lid, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy" and lid.startswith(f"{role_prefix}DefaultPolicy")
    ]
    return statements  # type: ignore[no-any-return]


def _without(resources: Any, needle: str) -> list[Any]:
    """The resources but those naming `needle` (an ARN and its `:*` qualified form)."""
    kept = [r for r in resources if needle not in json.dumps(r)]
    assert 0 < len(kept) < len(resources), f"{needle!r} is not one of several resources"
    return kept


def _narrowed(stack: SynthesizedStack) -> SynthesizedStack:
    """The stack with two grants taken away: the batch role's s3:PutObject on scored outputs,
    the retraining state machine's lambda:InvokeFunction on the training function."""
    template = copy.deepcopy(stack.template)
    (writes,) = [
        s
        for s in _policy(template, "BatchRole")
        if "s3:PutObject" in s["Action"] and "batch/scored/" in json.dumps(s["Resource"])
    ]
    writes["Resource"] = _without(writes["Resource"], "batch/scored/")
    (invokes,) = [
        s
        for s in _policy(template, "RetrainStateMachineRole")
        if s["Action"] == "lambda:InvokeFunction"
    ]
    invokes["Resource"] = _without(invokes["Resource"], "RetrainTraining")
    return SynthesizedStack(stack.name, stack.outdir, template, stack.assets)


def _client(platform: LocalPlatform, service: str, identity: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=platform.aws_endpoint_url,
        region_name=platform.region,
        **platform.identities[identity].boto3_kwargs(),
    )


def _wait_for_denial(caplog: pytest.LogCaptureFixture, *parts: str) -> str:
    """The platform's record of a refused request (its CloudTrail, in effect) naming `parts`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for record in caplog.records:
            message = record.getMessage()
            if record.name == "ferry.local.iam" and all(p in message for p in parts):
                return message
        time.sleep(0.5)
    raise AssertionError(f"no access denied naming {parts}")


@pytest.fixture(scope="module")
def narrowed_platform(tmp_path_factory: pytest.TempPathFactory, built: Any) -> Any:
    stack = synthesize_local(REPO_ROOT, REPO_ROOT / ".ferry" / "cdk.out")
    state = Path(tmp_path_factory.mktemp("narrowed"))
    with LocalPlatform(state_dir=state, stack=_narrowed(stack), restore=False) as platform:
        register_and_promote(PlatformClient(platform.info()), built, MODEL)
        yield platform


def test_the_batch_function_cannot_write_scored_rows_without_that_grant(
    narrowed_platform: LocalPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    """
    Given the batch role without s3:PutObject on batch/scored/*
    When the data scientist uploads a batch file
    Then the batch function's write of the scored file is refused, as its role, naming the
        action and the object, and no scored file appears
    """
    from ferry_core.batch.sample_files import applications, encode

    platform = narrowed_platform
    bucket = platform.outputs["DataBucketName"]
    s3 = _client(platform, "s3", "data-scientist")
    body = encode(applications(20, "csv"), "csv")
    s3.put_object(Bucket=bucket, Key=f"batch/incoming/{MODEL}/least.csv", Body=body)
    denial = _wait_for_denial(
        caplog,
        "is not authorized to perform: s3:PutObject on resource: "
        f"arn:aws:s3:::{bucket}/batch/scored/{MODEL}/least",
    )
    assert ":assumed-role/Ferry-local-BatchRole" in denial
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"batch/scored/{MODEL}/least")
    assert listed.get("KeyCount", 0) == 0


def test_the_retraining_workflow_cannot_train_without_invoking_the_training_function(
    narrowed_platform: LocalPlatform,
) -> None:
    """
    Given the retraining state machine's role without lambda:InvokeFunction on the training
        function (it keeps the governance and validation functions)
    When the data scientist starts a run (through the retrain route)
    Then the Train task is refused with an access error naming lambda:InvokeFunction and the
        training function, the run fails, and the training function never ran
    """
    platform = narrowed_platform
    sfn = _client(platform, "stepfunctions", "data-scientist")
    status, _, started = PlatformClient(platform.info()).request(
        "POST",
        "/v1/governance/retrain",
        {"model": MODEL, "canary_percent": 0},
        identity="data-scientist",
    )
    assert status == 202, started
    arn = started["execution"]
    deadline = time.monotonic() + 120
    while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the run is still RUNNING"
        time.sleep(0.5)
    history = json.dumps(sfn.get_execution_history(executionArn=arn)["events"], default=str)
    training = platform.outputs["TrainingFunctionName"]
    assert "not authorized to perform: lambda:InvokeFunction" in history
    assert f"function:{training}" in history
    assert desc["status"] == "FAILED"
    assert not (platform.state_dir / "logs" / f"{training}.log").exists()
