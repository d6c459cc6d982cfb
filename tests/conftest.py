"""Shared fixtures: fake credentials, tiny real models (a champion, a better and a worse
candidate), and the stack's resources under moto.

Models are real: a small gradient-boosting pipeline trained on generated credit data and
converted to ONNX, built once per session (about two seconds).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry_local.moto_stack import (
    FAKE_CREDENTIALS,
    StackResources,
    clients,
    local_aws,
    stack_resources,
)
from infra.toolchain import use_project_node

os.environ.update(FAKE_CREDENTIALS)
use_project_node()  # before anything imports aws_cdk
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Ferry")


@pytest.fixture(scope="session")
def fitted() -> tuple[Any, Any, Any]:
    """(sklearn pipeline, train frame, validation frame) of a small credit-risk model."""
    from ferry_core.onboarding.builder import fit_credit_risk

    return fit_credit_risk(rows=1600, n_estimators=15, seed=11)


@pytest.fixture(scope="session")
def built(fitted: tuple[Any, Any, Any]) -> Any:
    """The fitted model converted and measured, as registration receives it."""
    from ferry_core.onboarding.builder import AGE_BANDS, CREDIT_RISK_SCHEMA, build

    pipe, train, valid = fitted
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


@pytest.fixture(scope="session")
def stack() -> StackResources:
    """The synthesized `Ferry-local` stack's names and environments (synthesized once per
    source fingerprint, cached under .ferry/cdk.out)."""
    return stack_resources()


@pytest.fixture
def aws(stack: StackResources, tmp_path: Path) -> Iterator[StackResources]:
    """moto with the stack's buckets, tables and queues, created from the template, and the
    scoring function's environment (as the template sets it) in this process."""
    with local_aws(tmp_path / "tmp") as res:
        yield res


@pytest.fixture
def boto(aws: StackResources) -> dict[str, Any]:
    return clients()


@pytest.fixture
def registered(aws: StackResources, boto: dict[str, Any], built: Any) -> Any:
    """credit-risk v1 registered and promoted to production; returns its card."""
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter

    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    card = register_built(built, "credit-risk", boto["s3"], aws.model_bucket, writer, Lineage())
    writer.set_stage("credit-risk", "production", card.version, None, actor="tests")
    return card


@pytest.fixture
def governed(aws: StackResources, boto: dict[str, Any], tmp_path: Path) -> Any:
    """`governed(**connect_kwargs)`: a `Governance` on the moto stack's tables and buckets."""
    from ferry_core.registry.governance import connect

    def make(**kwargs: Any) -> Any:
        return connect(
            dynamodb=boto["dynamodb"],
            s3=boto["s3"],
            events=kwargs.pop("events", None),
            registry_table=aws.registry_table,
            audit_table=aws.audit_table,
            anchor_bucket=aws.anchor_bucket,
            cache_dir=str(tmp_path / "gov-cache"),
            **kwargs,
        )

    return make


@pytest.fixture
def validate_machine(aws: StackResources) -> tuple[Any, str]:
    """(Step Functions client, ARN) of a machine in moto standing for ValidateVersion: only
    its start is exercised (its real definition runs in tests/e2e/test_validate_version.py)."""
    import json

    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    arn = sfn.create_state_machine(
        name="Ferry-local-ValidateVersion",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/ferry-local",
    )["stateMachineArn"]
    return sfn, arn


@pytest.fixture(scope="session")
def gate_pass() -> Any:
    """`gate_pass(gov, model, version)`: record a passed gate result for `version` against the
    production version live now, as the ValidateVersion machine's record step does, for tests
    whose subject is a stage move rather than the gate (the gate itself runs for real in
    tests/unit/registry/test_governance_policies.py and tests/e2e/test_validate_version.py)."""

    def record(gov: Any, model: str, version: int) -> None:
        pointer = gov.reader.fresh_pointer(model, "production")
        result = {
            "passed": True,
            "source": "validation",
            "champion_version": pointer.version if pointer else None,
            "summary": "passed (recorded by the test: its subject is not the gate)",
            "checks": [],
        }
        gov.record_validation(model, version, result, actor="tests")

    return record


@pytest.fixture(scope="session")
def candidate() -> Any:
    """A good retrained candidate (other data, more trees) whose every age band is above 0.6."""
    from ferry_core.onboarding.builder import build_credit_risk

    return build_credit_risk(rows=1500, n_estimators=20, seed=7)


@pytest.fixture(scope="session")
def worse(fitted: tuple[Any, Any, Any]) -> Any:
    """Trained on shuffled labels: converts and scores fine, ranks applicants at random."""
    import numpy as np

    from ferry_core.onboarding.builder import (
        AGE_BANDS,
        CREDIT_RISK_SCHEMA,
        TARGET,
        build,
        credit_risk_pipeline,
        to_model_frame,
    )

    _, train, valid = fitted
    pipe = credit_risk_pipeline(CREDIT_RISK_SCHEMA, n_estimators=10, seed=11)
    labels = np.random.default_rng(0).permutation(train[TARGET].to_numpy())
    pipe.fit(to_model_frame(train, CREDIT_RISK_SCHEMA), labels)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


@pytest.fixture(scope="session")
def named_frames() -> tuple[Any, Any, Any]:
    """(pipeline, train, valid) of scikit-learn's breast-cancer data (30 features, bundled, no
    download) with column names as they come in real data: `mean radius` (made whole-valued,
    still a float column), `Ünïcode col`, and `a,b` (a category: quoted in a CSV header)."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = load_breast_cancer(as_frame=True).frame
    frame = frame.rename(columns={"mean texture": "Ünïcode col", "mean area": "a,b"})
    frame["mean radius"] = frame["mean radius"].round().astype(float)
    frame["a,b"] = np.where(frame["a,b"] > 600, "large", "small")
    numeric = [c for c in frame.columns if c not in ("target", "a,b")]
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["a,b"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    train, valid = frame.iloc[:420].reset_index(drop=True), frame.iloc[420:].reset_index(drop=True)
    pipe.fit(train.drop(columns="target"), train["target"])
    return pipe, train, valid


@pytest.fixture(scope="session")
def named_built(named_frames: tuple[Any, Any, Any]) -> Any:
    """The named-columns model through the Python intake, as `ferry register` builds it."""
    from ferry_core.onboarding.intake import build_from_pipeline

    pipe, train, valid = named_frames
    return build_from_pipeline(pipe, train, valid, "target")
