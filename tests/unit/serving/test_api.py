"""Request parsing and the error contract: every client mistake is a 4xx with a reason."""

from __future__ import annotations

import json

import pytest

from ferry_core import errors
from ferry_core.serving import api


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "{oops",
        "[]",
        '"instances"',
        "{}",
        '{"instances": {}}',
        '{"instances": []}',
        '{"instances": [1], "extra": true}',
        '{"instances": "abc"}',
        "\ud800",
        b"\xff\xfe",
        '{"instances": [{"a": ' + "1" * 5000 + "}]}",
        "[" * 100_000,
    ],
)
def test_malformed_bodies_are_bad_requests(body: str | bytes | None) -> None:
    with pytest.raises(errors.BadRequest):
        api.parse_predict_body(body)


def test_more_than_a_thousand_instances_is_a_bad_request() -> None:
    with pytest.raises(errors.BadRequest, match="1001 instances"):
        api.parse_predict_body(json.dumps({"instances": [{}] * 1001}))


def test_a_thousand_instances_of_thirty_features_fit_the_body_limit() -> None:
    """The API promises 1 to 1,000 instances: with 30 features that is about 1.2 MB of JSON."""
    row = {f"mean feature {i}": 12345.678901234 + i for i in range(30)}
    body = json.dumps({"instances": [row] * 1000})
    assert len(body) > 1_048_576
    assert len(api.parse_predict_body(body)) == 1000


def test_the_body_limit_is_lambdas_synchronous_payload_limit() -> None:
    assert api.MAX_BODY_BYTES == 6 * 1024 * 1024


def test_oversized_body_is_too_large_before_parsing() -> None:
    body = json.dumps({"instances": [{"x": "y" * (api.MAX_BODY_BYTES)}]})
    with pytest.raises(errors.TooLarge):
        api.parse_predict_body(body)


def test_well_formed_body_returns_instances() -> None:
    assert api.parse_predict_body('{"instances": [{"a": 1}]}') == [{"a": 1}]


def test_an_instance_that_is_not_an_object_is_a_shape_error_naming_it() -> None:
    with pytest.raises(errors.BadRequest, match=r"instances\.1"):
        api.parse_predict_body('{"instances": [{}, 5]}')


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (None, (None, None)),
        ({}, (None, None)),
        ({"version": "3"}, (3, None)),
        ({"stage": "staging"}, (None, "staging")),
        ({"stage": "production"}, (None, "production")),
    ],
)
def test_selector(query: dict[str, str] | None, expected: tuple[int | None, str | None]) -> None:
    assert api.parse_selector(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        {"version": "0"},
        {"version": "-1"},
        {"version": "1.5"},
        {"version": "abc"},
        {"version": "1,2"},
        {"version": "9" * 30},
        {"stage": "prod"},
        {"version": "1", "stage": "staging"},
        {"model": "x"},
    ],
)
def test_bad_selectors(query: dict[str, str]) -> None:
    with pytest.raises(errors.BadRequest):
        api.parse_selector(query)


def test_every_domain_error_has_a_status_and_none_is_500() -> None:
    for cls in (
        errors.BadRequest,
        errors.TooLarge,
        errors.ModelNotFound,
        errors.VersionNotFound,
        errors.ValidationFailed,
        errors.ModelUnavailable,
        errors.RegistryConflict,
    ):
        status = api.status_of(cls("x"))
        assert 400 <= status < 500 or status == 503, cls
    assert api.status_of(errors.ModelUnavailable("x")) == 503
    assert api.status_of(errors.ValidationFailed("x")) == 422


def test_error_body_shape() -> None:
    exc = errors.ValidationFailed(
        "bad", details=[{"instance": 0, "field": "a", "problem": "missing"}]
    )
    body = api.error_body(exc)
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == "validation_failed"


def test_openapi_document_is_generated_from_the_models() -> None:
    doc = api.openapi_document()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/models/{model}/predict",
        "/v1/models",
        "/v1/models/{model}",
        "/v1/openapi.json",
        "/health",
    }
    schemas = doc["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "ErrorBody"} <= set(schemas)
    assert schemas["PredictRequest"]["properties"]["instances"]["maxItems"] == api.MAX_INSTANCES
    codes = set(schemas["ErrorBody"]["properties"]["error"]["enum"])
    assert {"bad_request", "validation_failed", "model_unavailable", "too_large"} <= codes
    json.dumps(doc)  # serialisable


ROUTE_KEYS = ["POST /v1/models/{model}/predict", "GET /v1/models", "GET /v1/models/{model}"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        (
            "POST",
            "/v1/models/credit-risk/predict",
            ("POST /v1/models/{model}/predict", {"model": "credit-risk"}),
        ),
        ("GET", "/v1/models", ("GET /v1/models", {})),
        ("GET", "/v1/models/", ("GET /v1/models", {})),
        ("GET", "/v1/models/a%20b", ("GET /v1/models/{model}", {"model": "a b"})),
        ("POST", "/v1/models", None),
        ("GET", "/v1/models/x/predict", None),
        ("GET", "/v1/models//", ("GET /v1/models", {})),
        ("DELETE", "/v1/models/x", None),
    ],
)
def test_route_matching_is_api_gateways(method: str, path: str, expected: object) -> None:
    assert api.match_route(method, path, ROUTE_KEYS) == expected
