"""Registration writes an immutable, pinned, hash-recorded version."""

from __future__ import annotations

import dataclasses
import json

import pytest
from botocore.exceptions import ClientError

from ferry_core.card import Card, Lineage
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.registration import RegistrationRefused, register_built
from ferry_core.registry.writer import RegistryWriter
from ferry_core.store import parse_s3_uri, sha256_hex


def test_register_writes_artifact_card_and_reference(aws, boto, built) -> None:
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    card = register_built(
        built, "credit-risk", boto["s3"], aws.model_bucket, writer, Lineage(git_commit="abc")
    )
    assert card.version == 1
    bucket, key = parse_s3_uri(card.artifact.uri)
    assert key == "models/credit-risk/v1/model.onnx"
    obj = boto["s3"].get_object(Bucket=bucket, Key=key, VersionId=card.artifact.s3_version_id)
    assert sha256_hex(obj["Body"].read()) == card.artifact.sha256
    stored = json.loads(
        boto["s3"].get_object(Bucket=bucket, Key="models/credit-risk/v1/card.json")["Body"].read()
    )
    assert Card.model_validate(stored) == card
    assert RegistryReader(boto["dynamodb"], aws.registry_table).card("credit-risk", 1) == card
    ref_key = parse_s3_uri(card.artifact.reference_uri)[1]
    ref = boto["s3"].get_object(Bucket=bucket, Key=ref_key)["Body"].read()
    assert sha256_hex(ref) == card.artifact.reference_sha256
    assert card.metrics["parity"]["passed"] and card.lineage.registered_at


def test_second_registration_is_a_new_version(aws, boto, built) -> None:
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    args = ("credit-risk", boto["s3"], aws.model_bucket, writer, Lineage())
    assert [register_built(built, *args).version for _ in range(2)] == [1, 2]


def test_parity_failure_is_refused_and_nothing_is_written(aws, boto, built) -> None:
    bad = dataclasses.replace(built, parity={**built.parity, "passed": False, "max_abs_diff": 0.3})
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    with pytest.raises(RegistrationRefused, match="parity"):
        register_built(bad, "credit-risk", boto["s3"], aws.model_bucket, writer, Lineage())
    assert "Contents" not in boto["s3"].list_objects_v2(Bucket=aws.model_bucket)


def test_artifacts_are_never_overwritten(aws, boto, built) -> None:
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    register_built(built, "credit-risk", boto["s3"], aws.model_bucket, writer, Lineage())
    with pytest.raises(ClientError, match="PreconditionFailed"):
        boto["s3"].put_object(
            Bucket=aws.model_bucket,
            Key="models/credit-risk/v1/model.onnx",
            Body=b"x",
            IfNoneMatch="*",
        )
