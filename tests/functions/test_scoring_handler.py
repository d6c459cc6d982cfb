"""The scoring handler under moto, against a real registered model, through payload-2.0 events."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, records, to_model_frame
from ferry_core.registry.writer import RegistryWriter
from ferry_local.events import LambdaContext, http_api_event
from ferry_local.handlers import load_handler

PREDICT = "/v1/models/credit-risk/predict"


@pytest.fixture
def handler(registered, monkeypatch) -> Iterator[ModuleType]:
    module = load_handler("scoring")
    module.service.cache_clear()
    yield module
    module.service.cache_clear()


def call(
    handler: ModuleType,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    **event: Any,
) -> tuple[int, dict[str, Any]]:
    raw = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
    resp = handler.lambda_handler(
        http_api_event(method, path, raw, query, routes=handler.ROUTES, **event), LambdaContext()
    )
    assert resp["headers"]["Content-Type"] == "application/json"
    return resp["statusCode"], json.loads(resp["body"])


@pytest.fixture
def instances(fitted) -> list[dict[str, Any]]:
    return records(fitted[2].head(100), CREDIT_RISK_SCHEMA)


def test_scores_match_the_source_pipeline(handler, fitted, instances) -> None:
    status, body = call(handler, "POST", PREDICT, {"instances": instances}, request_id="req-1")
    assert status == 200
    assert (body["model"], body["version"], body["request_id"]) == ("credit-risk", 1, "req-1")
    expected = fitted[0].predict_proba(to_model_frame(fitted[2].head(100), CREDIT_RISK_SCHEMA))[
        :, 1
    ]
    scores = np.array([p["score"] for p in body["predictions"]])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert [p["label"] for p in body["predictions"]] == [int(s >= 0.5) for s in scores]
    assert all(p["warnings"] == [] for p in body["predictions"])


def test_one_instance_and_a_clip_warning(handler, instances) -> None:
    status, body = call(
        handler, "POST", PREDICT, {"instances": [{**instances[0], "debt_to_income": 9.0}]}
    )
    assert status == 200
    (pred,) = body["predictions"]
    assert pred["warnings"][0]["field"] == "debt_to_income"


def test_pinned_version_and_stage(handler, instances, aws, boto, built) -> None:
    assert call(handler, "POST", PREDICT, {"instances": instances[:1]}, {"version": "1"})[0] == 200
    status, body = call(
        handler, "POST", PREDICT, {"instances": instances[:1]}, {"stage": "staging"}
    )
    assert (status, body["error"]) == (404, "model_not_found")
    RegistryWriter(boto["dynamodb"], aws.registry_table).set_stage(
        "credit-risk", "staging", 1, None, "t"
    )
    handler.service().registry._pointers.clear()
    assert (
        call(handler, "POST", PREDICT, {"instances": instances[:1]}, {"stage": "staging"})[0] == 200
    )


def test_validation_failure_lists_every_problem(handler, instances) -> None:
    bad = [
        instances[0],
        {**instances[1], "age": 150, "purpose": "yacht"},
        {**instances[2], "income": 5},
        {k: v for k, v in instances[3].items() if k != "employment"},
    ]
    status, body = call(handler, "POST", PREDICT, {"instances": bad})
    assert (status, body["error"]) == (422, "validation_failed")
    got = [(d["instance"], d["field"], d["problem"]) for d in body["details"]]
    assert got == [
        (1, "age", "out_of_range"),
        (1, "purpose", "unknown_category"),
        (2, "income", "unknown_field"),
        (3, "employment", "missing"),
    ]
    assert all(d["message"] for d in body["details"])


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "bad_request"),
        ("", 400, "bad_request"),
        ('{"instances": []}', 400, "bad_request"),
        ('{"rows": [{}]}', 400, "bad_request"),
        # strict JSON (RFC 8259): NaN, Infinity and doubles that overflow are not JSON
        ('{"instances": [{"age": NaN}]}', 400, "bad_request"),
        ('{"instances": [{"age": Infinity}]}', 400, "bad_request"),
        ('{"instances": [{"age": 1e400}]}', 400, "bad_request"),
        ('{"instances": [{"age": 1}], "extra": 1}', 400, "bad_request"),
        ('{"instances": [{"age": 1}, 7]}', 400, "bad_request"),
        ('{"instances": [{"age": 1' + "0" * 5000 + "}]}", 400, "bad_request"),
        (json.dumps({"instances": [{}] * 1001}), 400, "bad_request"),
        (json.dumps({"instances": [{"x": "y" * 6_400_000}]}), 413, "too_large"),
    ],
)
def test_client_mistakes_are_4xx_in_the_documented_shape(handler, body, status, code) -> None:
    got, resp = call(handler, "POST", PREDICT, body)
    assert (got, resp["error"]) == (status, code)
    assert set(resp) == {"error", "message", "details"} and resp["message"]


def test_base64_bodies_are_decoded_and_bad_base64_is_a_400(handler, instances) -> None:
    event = http_api_event(
        "POST",
        PREDICT,
        base64.b64encode(json.dumps({"instances": instances[:1]}).encode()).decode(),
        routes=handler.ROUTES,
    )
    event["isBase64Encoded"] = True
    assert handler.lambda_handler(event, LambdaContext())["statusCode"] == 200
    event["body"] = "%%%not base64"
    assert handler.lambda_handler(event, LambdaContext())["statusCode"] == 400


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "code"),
    [
        ("POST", "/v1/models/nope/predict", None, 404, "model_not_found"),
        ("GET", "/v1/models/nope", None, 404, "model_not_found"),
        ("GET", "/v1/models/credit-risk", {"version": "7"}, 404, "version_not_found"),
        ("GET", "/v1/models/credit-risk", {"version": "x"}, 400, "bad_request"),
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("DELETE", "/v1/models/credit-risk", None, 404, "not_found"),
    ],
)
def test_unknown_things_are_404s(handler, method, path, query, status, code) -> None:
    body = {"instances": [{}]} if method == "POST" else None
    got, resp = call(handler, method, path, body, query)
    assert (got, resp["error"]) == (status, code)


def test_metadata_routes(handler, registered) -> None:
    status, listing = call(handler, "GET", "/v1/models")
    assert status == 200
    assert listing["models"] == [
        {"name": "credit-risk", "stages": {"production": 1, "staging": None}, "latest_version": 1}
    ]
    status, card = call(handler, "GET", "/v1/models/credit-risk")
    assert status == 200 and card["artifact"]["sha256"] == registered.artifact.sha256
    assert card["input_schema"]["features"][0]["name"] == "age"
    status, doc = call(handler, "GET", "/v1/openapi.json")
    assert status == 200 and "/v1/models/{model}/predict" in doc["paths"]
    assert call(handler, "GET", "/health") == (200, {"status": "ok", "version": "0.1.0"})


def test_tampered_artifact_is_model_unavailable_not_a_crash(
    handler, aws, boto, registered, instances
) -> None:
    """Someone replaces the bytes behind version 2's record: the sha256 check refuses them."""
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    key = "models/credit-risk/v2/model.onnx"
    tampered = bytearray(
        boto["s3"]
        .get_object(Bucket=aws.model_bucket, Key="models/credit-risk/v1/model.onnx")["Body"]
        .read()
    )
    tampered[len(tampered) // 2] ^= 0xFF
    vid = boto["s3"].put_object(Bucket=aws.model_bucket, Key=key, Body=bytes(tampered))["VersionId"]
    card = registered.model_copy(
        update={
            "version": writer.allocate_version("credit-risk"),
            "artifact": registered.artifact.model_copy(
                update={"uri": f"s3://{aws.model_bucket}/{key}", "s3_version_id": vid}
            ),
        }
    )
    writer.put_version(card)
    status, body = call(handler, "POST", PREDICT, {"instances": instances[:1]}, {"version": "2"})
    assert (status, body["error"]) == (503, "model_unavailable")
    assert "integrity check failed" in body["message"]
    assert call(handler, "POST", PREDICT, {"instances": instances[:1]})[0] == 200  # v1 still serves


def test_promotion_is_seen_without_a_restart(
    handler, aws, boto, built, registered, instances, monkeypatch
) -> None:
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built

    monkeypatch.setenv("REGISTRY_CACHE_SECONDS", "0")
    handler.service.cache_clear()
    assert call(handler, "POST", PREDICT, {"instances": instances[:1]})[1]["version"] == 1
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    v2 = register_built(built, "credit-risk", boto["s3"], aws.model_bucket, writer, Lineage())
    writer.set_stage("credit-risk", "production", v2.version, 1, actor="t")
    assert call(handler, "POST", PREDICT, {"instances": instances[:1]})[1]["version"] == 2


def test_every_request_leaves_an_emf_record_with_its_model_version_and_request_id(
    handler, instances, capsys
) -> None:
    capsys.readouterr()
    call(handler, "POST", PREDICT, {"instances": instances[:3]}, request_id="req-emf")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    emf = [x for x in lines if "_aws" in x]
    assert len(emf) == 1, lines
    (blob,) = emf
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert {m["Name"] for m in directive["Metrics"]} == {"Latency", "InstancesScored"}
    assert sorted(directive["Dimensions"][0]) == ["model", "service"]
    assert (blob["model"], blob["version"], blob["request_id"]) == ("credit-risk", 1, "req-emf")
    assert blob["InstancesScored"] == [3.0] and blob["Latency"][0] > 0


def test_refusals_count_errors_by_code(handler, capsys) -> None:
    capsys.readouterr()
    call(handler, "POST", PREDICT, "{nope")
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    by_code = [b for b in emf if b.get("code") == "bad_request"]
    assert by_code and by_code[0]["Errors"] == [1.0] and by_code[0]["model"] == "credit-risk"
    assert any(b.get("Errors4xx") == [1.0] for b in emf)
