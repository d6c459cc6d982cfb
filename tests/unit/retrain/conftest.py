"""Fixtures of the retraining tests: governance, CloudWatch and the workflow under moto, and
candidates for the gate."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from ferry_core.registry.governance import Governance, connect
from ferry_core.retrain.workflow import Workflow
from ferry_local.moto_stack import REGION


@pytest.fixture
def gov(aws, boto, tmp_path) -> Governance:
    return connect(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=None,
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=aws.anchor_bucket,
        cache_dir=str(tmp_path / "gov-cache"),
        env="local",
    )


@pytest.fixture
def cloudwatch(aws) -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def wf(gov: Governance, aws, boto, cloudwatch) -> Workflow:
    return Workflow(
        gov,
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        cloudwatch=cloudwatch,
        registry_table=aws.registry_table,
        model_bucket=aws.model_bucket,
    )
