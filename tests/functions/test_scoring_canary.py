"""The scoring handler while a canary runs: routing by share, one version a response,
and the per-variant metrics the canary verdict compares."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from ferry_core.card import Lineage
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, records
from ferry_core.registry.registration import register_built
from ferry_core.registry.writer import RegistryWriter
from ferry_local.events import LambdaContext, http_api_event
from ferry_local.handlers import load_handler

PREDICT = "/v1/models/credit-risk/predict"


@pytest.fixture(scope="module")
def other_built() -> Any:
    """A second, different model (its own bytes and sha256: no cache shared with v1)."""
    from ferry_core.onboarding.builder import build_credit_risk

    return build_credit_risk(rows=800, n_estimators=5, seed=3)


@pytest.fixture
def canary(registered: Any, aws: Any, boto: dict[str, Any], other_built: Any) -> int:
    """credit-risk v1 in production and v2 in a canary at 50 %."""
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    v2 = register_built(other_built, "credit-risk", boto["s3"], aws.model_bucket, writer, Lineage())
    boto["dynamodb"].transact_write_items(
        TransactItems=[writer.canary_put_item("credit-risk", v2.version, 50.0, "t", "run-1")]
    )
    return v2.version


@pytest.fixture
def handler(canary: int) -> Iterator[ModuleType]:
    module = load_handler("scoring")
    module.service.cache_clear()
    yield module
    module.service.cache_clear()


def _predict(handler: ModuleType, rows: list[dict[str, Any]], query: dict | None = None) -> Any:
    event = http_api_event(
        "POST", PREDICT, json.dumps({"instances": rows}), query, routes=handler.ROUTES
    )
    resp = handler.lambda_handler(event, LambdaContext())
    return resp["statusCode"], json.loads(resp["body"])


def _canary_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "CanaryRequests" in line]


def test_default_traffic_is_split_and_each_response_is_one_version(
    handler: ModuleType, canary: int, fitted: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = records(fitted[2].head(3), CREDIT_RISK_SCHEMA)
    versions = []
    for _ in range(60):
        status, body = _predict(handler, rows)
        assert status == 200
        versions.append(body["version"])
    assert set(versions) == {1, canary}  # both variants served (p of one-sided: 2**-59)
    metrics = _canary_lines(capsys.readouterr().out)
    assert len(metrics) == 60
    by_variant = {"canary": 0, "champion": 0}
    for m in metrics:
        by_variant[m["variant"]] += 1
        assert m["model"] == "credit-risk" and m["service"] == "ferry-scoring"
        assert m["CanaryErrors5xx"] == [0.0]
        assert m["version"] == (canary if m["variant"] == "canary" else 1)
    assert by_variant == {"canary": versions.count(canary), "champion": versions.count(1)}
    # The request that loaded each version reports no latency (it measured the load).
    assert sum("CanaryLatency" not in m for m in metrics) == 2


def test_a_pinned_version_or_stage_bypasses_the_canary(
    handler: ModuleType, fitted: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = records(fitted[2].head(1), CREDIT_RISK_SCHEMA)
    for _ in range(20):
        status, body = _predict(handler, rows, {"version": "1"})
        assert (status, body["version"]) == (200, 1)
    assert _canary_lines(capsys.readouterr().out) == []


def test_a_failing_canary_version_is_counted_as_canary_5xx(
    handler: ModuleType, canary: int, aws: Any, boto: dict[str, Any], fitted: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from ferry_core.registry.reader import RegistryReader

    card = RegistryReader(boto["dynamodb"], aws.registry_table).card("credit-risk", canary)
    bucket, key = card.artifact.uri[5:].split("/", 1)
    boto["s3"].delete_object(Bucket=bucket, Key=key, VersionId=card.artifact.s3_version_id)
    rows = records(fitted[2].head(1), CREDIT_RISK_SCHEMA)
    responses = [_predict(handler, rows) for _ in range(40)]
    statuses = [status for status, _ in responses]
    assert set(statuses) == {200, 503}  # every canary request fails, every champion one scores
    assert all(body["version"] == 1 for status, body in responses if status == 200)
    metrics = _canary_lines(capsys.readouterr().out)
    errors = {m["variant"]: 0 for m in metrics}
    for m in metrics:
        errors[m["variant"]] += int(m["CanaryErrors5xx"][0])
    assert errors["canary"] == statuses.count(503) and errors.get("champion", 0) == 0
