"""Where `--env dev|prod` points: a pipeline step's variables, else CloudFormation."""

from __future__ import annotations

from typing import Any

import pytest

from ferry_cli.environments import OUTPUT_ENV_PREFIX, resolve_stack
from infra.pipeline import OUTPUT_ENV_PREFIX as PIPELINE_PREFIX


class _NoCloudFormation:
    def describe_stacks(self, **_: Any) -> Any:
        raise AssertionError("a pipeline step's outputs need no CloudFormation call")


def test_a_pipeline_steps_output_variables_are_the_stacks_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given the variables the release pipeline's smoke step sets, then `--env dev` reads its
    outputs (and its API URL) from them, not from CloudFormation."""
    assert OUTPUT_ENV_PREFIX == PIPELINE_PREFIX
    monkeypatch.setenv(
        f"{OUTPUT_ENV_PREFIX}ApiUrl", "https://abc.execute-api.us-east-1.amazonaws.com/"
    )
    monkeypatch.setenv(f"{OUTPUT_ENV_PREFIX}DataBucketName", "ferry-dev-data")
    env = resolve_stack("dev", cloudformation=_NoCloudFormation())
    assert env.outputs == {
        "ApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com/",
        "DataBucketName": "ferry-dev-data",
    }
    assert env.api_url == env.outputs["ApiUrl"] and env.region == "us-east-1"


def test_without_them_the_outputs_come_from_cloudformation(monkeypatch: pytest.MonkeyPatch) -> None:
    class CloudFormation:
        def describe_stacks(self, StackName: str) -> Any:
            assert StackName == "Ferry-prod"
            return {"Stacks": [{"Outputs": [{"OutputKey": "ApiUrl", "OutputValue": "https://x/"}]}]}

    env = resolve_stack("prod", cloudformation=CloudFormation())
    assert env.outputs == {"ApiUrl": "https://x/"} and env.api_url == "https://x/"
