"""Where a training run says it ran (ferry_core/retrain/provenance.py): the image digest as
Lambda resolved it, or nothing; never a guess."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from ferry_core.retrain.provenance import RunEnvironment, lambda_environment, run_lineage
from ferry_core.store import sha256_hex

FUNCTION = "Ferry-prod-RetrainTraining1A2B3C4D"
DIGEST = "sha256:" + "ab" * 32
RESOLVED = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/cdk-assets@{DIGEST}"


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "train.lock"
    path.write_text("scikit-learn==1.9.1\n")
    return path


def _stubbed(response: dict | None = None, error: str | None = None) -> tuple:
    client = boto3.client("lambda", region_name="eu-west-1")
    stub = Stubber(client)
    if response is not None:
        stub.add_response("get_function", response, {"FunctionName": FUNCTION})
    if error is not None:
        stub.add_client_error("get_function", error, expected_params={"FunctionName": FUNCTION})
    stub.activate()
    return client, stub


def test_in_the_image_the_digest_lambda_resolved_is_recorded(lock: Path) -> None:
    """
    Given the function runs from the training image (its lock where the Dockerfile put it)
    When it asks Lambda about itself, by the name in its context
    Then lineage records `lambda`, the resolved image URI and its digest, and the lock's hash
    """
    client, stub = _stubbed({"Code": {"ImageUri": "repo:tag", "ResolvedImageUri": RESOLVED}})
    env = lambda_environment(client, FUNCTION, str(lock), 900.0)
    stub.assert_no_pending_responses()
    lineage = run_lineage(
        env, source_commit="abc", source_dirty=False, lock_file=str(lock), trained_by="t"
    )
    assert (lineage.trained_on, lineage.image_uri, lineage.image_digest) == (
        "lambda",
        RESOLVED,
        DIGEST,
    )
    assert lineage.dependency_lock_sha256 == sha256_hex(lock.read_bytes())
    assert (lineage.git_commit, lineage.git_dirty) == ("abc", False)


def test_outside_an_image_nothing_is_asked_and_no_digest_is_recorded(tmp_path: Path) -> None:
    """The local platform runs the repository's code: `local`, no lock hash, no digest."""
    client, stub = _stubbed()  # any call would fail the stub
    env = lambda_environment(client, FUNCTION, str(tmp_path / "absent.lock"), 900.0)
    lineage = run_lineage(
        env, source_commit=None, source_dirty=None, lock_file=None, trained_by="t"
    )
    assert (lineage.trained_on, lineage.image_uri, lineage.image_digest) == ("local", None, None)
    assert lineage.dependency_lock_sha256 is None and lineage.git_commit is None
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (None, "AccessDeniedException"),
        ({"Code": {"ImageUri": "repo:tag", "ResolvedImageUri": "repo:tag"}}, None),
        ({"Code": {"RepositoryType": "S3"}}, None),
    ],
)
def test_a_refused_or_digestless_answer_records_no_image(
    lock: Path, response: dict | None, error: str | None
) -> None:
    client, _ = _stubbed(response, error)
    env = lambda_environment(client, FUNCTION, str(lock), 900.0)
    assert (env.trained_on, env.image_uri, env.image_digest) == ("lambda", None, None)


def test_an_image_uri_without_a_digest_is_never_written_as_one() -> None:
    env = RunEnvironment("sagemaker", "repo:latest", None)
    lineage = run_lineage(
        env, source_commit=None, source_dirty=True, lock_file=None, trained_by="t"
    )
    assert (lineage.image_uri, lineage.image_digest, lineage.git_dirty) == (None, None, None)
