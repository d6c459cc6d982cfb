"""Fixtures of the retraining tests: governance, CloudWatch and the workflow under moto, and
candidates for the gate."""

from __future__ import annotations

from typing import Any

import boto3
import numpy as np
import pytest

from ferry_core.onboarding.builder import (
    AGE_BANDS,
    CREDIT_RISK_SCHEMA,
    TARGET,
    build,
    build_credit_risk,
    credit_risk_pipeline,
    to_model_frame,
)
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


@pytest.fixture(scope="module")
def candidate() -> Any:
    """A good retrained candidate (other data, more trees) whose every age band is above 0.6."""
    return build_credit_risk(rows=1500, n_estimators=20, seed=7)


@pytest.fixture(scope="module")
def worse(fitted: tuple[Any, Any, Any]) -> Any:
    """Trained on shuffled labels: converts and scores fine, ranks applicants at random."""
    _, train, valid = fitted
    pipe = credit_risk_pipeline(CREDIT_RISK_SCHEMA, n_estimators=10, seed=11)
    labels = np.random.default_rng(0).permutation(train[TARGET].to_numpy())
    pipe.fit(to_model_frame(train, CREDIT_RISK_SCHEMA), labels)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})
