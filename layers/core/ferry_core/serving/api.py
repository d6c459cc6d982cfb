"""The public HTTP contract (DESIGN.md §3.1): request/response models, error body, statuses.

The core raises domain errors; `HTTP_STATUS` is the one place that maps them to statuses,
`response()` the one shape of every answer, and `openapi_document()` is generated from the
same pydantic models the API uses.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ferry_core import errors
from ferry_core.names import MODEL_NAME_PATTERN

MAX_INSTANCES = 1000
# Lambda's synchronous payload limit (6 MB): the API promises bodies up to it. 1,000
# instances of 30 features take about 1.2 MB of JSON, so a lower limit broke that promise.
# A larger body never reaches the function on AWS; the check stands for base64 bodies and
# for callers other than the gateway, and answers with the same clear 413.
MAX_BODY_BYTES = 6 * 1024 * 1024

HTTP_STATUS: dict[type[errors.FerryError], int] = {
    errors.BadRequest: 400,
    errors.RouteNotFound: 404,
    errors.ModelNotFound: 404,
    errors.VersionNotFound: 404,
    errors.DriftReportNotFound: 404,
    errors.RegistryConflict: 409,
    errors.TooLarge: 413,
    errors.ValidationFailed: 422,
    errors.ModelUnavailable: 503,
}


def status_of(exc: errors.FerryError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]  # type: ignore[index]
    return 500


class _Contract(BaseModel):
    # Built on first use (the OpenAPI route), not at import: a cold start does not pay for it.
    model_config = ConfigDict(defer_build=True)


class PredictRequest(_Contract):
    """`{"instances": [{feature: value, …}, …]}`: 1 to 1,000 instances, up to 6 MB.

    A feature is keyed by its name on the model card: any text a CSV header holds (spaces,
    punctuation, non-ASCII; up to 256 characters)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    instances: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_INSTANCES, json_schema_extra={"items": {"type": "object"}}
    )


class Prediction(_Contract):
    score: float = Field(description="probability of the positive label")
    label: int = Field(description="1 when score reaches the card's threshold, else 0")
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class PredictResponse(_Contract):
    model: str
    version: int
    request_id: str
    predictions: list[Prediction]


class ErrorDetail(_Contract):
    instance: int | None = None
    field: str | None = None
    problem: str
    message: str


class ErrorBody(_Contract):
    error: Literal[
        "bad_request",
        "model_not_found",
        "version_not_found",
        "conflict",
        "too_large",
        "validation_failed",
        "model_unavailable",
        "internal_error",
        "not_found",
        "method_not_allowed",
    ]
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ModelSummary(_Contract):
    name: str
    stages: dict[str, int | None]
    latest_version: int


class ModelsResponse(_Contract):
    models: list[ModelSummary]


class Health(_Contract):
    status: Literal["ok"]
    version: str


def error_body(exc: errors.FerryError) -> dict[str, Any]:
    return {"error": exc.code, "message": exc.message, "details": exc.details}


INTERNAL_ERROR = {"error": "internal_error", "message": "internal error; see logs", "details": []}
"""The body of a 500: a bug of ours says no more than that (its stack is in the logs)."""


def response(status: int, body: Any) -> dict[str, Any]:
    """An HTTP API (payload 2.0) response: JSON body, status, content type."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": dumps(body),
        "isBase64Encoded": False,
    }


def request_body(body: str | None, is_base64: bool) -> str | bytes | None:
    """The request body as sent: API Gateway base64-encodes bodies it does not take for text."""
    if body and is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.BadRequest("the body is not valid base64-encoded JSON") from exc
    return body


def parse_predict_body(body: str | bytes | None) -> list[dict[str, Any]]:
    """The instances of a predict body (the shape of `PredictRequest`), checked by hand.

    Strict JSON (RFC 8259): `NaN`, `Infinity` and numbers that overflow a double are not JSON,
    so they are a 400 here; non-finite values reaching the validator from other sources
    (Parquet, Python callers) get `not_finite` there.
    """
    if not body:
        raise errors.BadRequest('the body must be JSON: {"instances": [{...}, ...]}')
    if len(body) > MAX_BODY_BYTES:
        raise errors.TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(f"the body is not valid JSON: {str(exc)[:120]}") from exc
    if type(data) is not dict:
        raise errors.BadRequest('the body must be a JSON object: {"instances": [...]}')
    if set(data) != {"instances"}:
        extra = sorted(set(data) - {"instances"})
        if extra:
            raise errors.BadRequest(f"unknown key(s) in the body: {', '.join(extra)[:120]}")
        raise errors.BadRequest('the body has no "instances"')
    instances = data["instances"]
    if type(instances) is not list or not instances:
        raise errors.BadRequest('"instances" must be a non-empty array of objects')
    if len(instances) > MAX_INSTANCES:
        raise errors.BadRequest(f"{len(instances)} instances; at most {MAX_INSTANCES} per request")
    for i, instance in enumerate(instances):
        if type(instance) is not dict:
            raise errors.BadRequest(f"instances.{i} must be an object of features")
    return instances


def dumps(body: Any) -> str:
    """JSON for responses (orjson: several times faster than json.dumps on score lists)."""
    return orjson.dumps(body).decode()


def match_route(
    method: str, path: str, route_keys: Iterable[str]
) -> tuple[str, dict[str, str]] | None:
    """The route key (`"POST /v1/models/{model}/predict"`) and path parameters a path matches,
    as API Gateway matches them: literal segments exactly, `{name}` one whole segment."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    for key in route_keys:
        key_method, _, template = key.partition(" ")
        if key_method not in (method, "ANY"):
            continue
        tparts = template.strip("/").split("/") if template.strip("/") else []
        if len(tparts) != len(parts):
            continue
        params: dict[str, str] = {}
        for t, p in zip(tparts, parts, strict=True):
            if t.startswith("{") and t.endswith("}") and p:
                params[t[1:-1]] = unquote(p)
            elif t != p:
                break
        else:
            return key, params
    return None


def parse_selector(query: dict[str, str] | None) -> tuple[int | None, str | None]:
    """`version=N` or `stage=production|staging` from the query string (not both)."""
    query = query or {}
    unknown = set(query) - {"version", "stage"}
    if unknown:
        raise errors.BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    version: int | None = None
    stage = query.get("stage")
    if "version" in query:
        raw = query["version"]
        # ASCII digits only, length before int(): str.isdigit() accepts "²" (int() then
        # raises) and int() refuses strings over 4,300 digits; either would be a 500.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
            raise errors.BadRequest(f"version must be a positive integer, got {raw[:20]!r}")
        version = int(raw)
    if stage is not None and stage not in ("production", "staging"):
        raise errors.BadRequest(f"stage must be production or staging, got {stage[:20]!r}")
    if version is not None and stage is not None:
        raise errors.BadRequest("give version or stage, not both")
    return version, stage


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the scoring API, built from the models above."""
    from pydantic.json_schema import models_json_schema

    models = [PredictRequest, PredictResponse, ErrorBody, ModelsResponse, Health]
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def err(desc: str) -> dict[str, Any]:
        return {"description": desc, "content": {"application/json": {"schema": ref("ErrorBody")}}}

    model_param = {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN},
    }
    version_param = {
        "name": "version",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
    }
    stage_param = {
        "name": "stage",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["production", "staging"]},
    }
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Ferry scoring API", "version": "1"},
        "paths": {
            "/v1/models/{model}/predict": {
                "post": {
                    "operationId": "predict",
                    "parameters": [model_param, version_param, stage_param],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref("PredictRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "scores",
                            "content": {"application/json": {"schema": ref("PredictResponse")}},
                        },
                        "400": err("not JSON, not the documented shape, or over 1,000 instances"),
                        "404": err("model_not_found or version_not_found"),
                        "413": err("a body over Lambda's 6 MB synchronous payload limit"),
                        "422": err("validation_failed: one detail per problem"),
                        "503": err("model_unavailable: the artifact failed its integrity check"),
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "models and stage pointers",
                            "content": {"application/json": {"schema": ref("ModelsResponse")}},
                        }
                    },
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "operationId": "getModelCard",
                    "parameters": [model_param, version_param, stage_param],
                    "responses": {
                        "200": {**ok, "description": "the model card"},
                        "400": err("bad query"),
                        "404": err("model_not_found or version_not_found"),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {"200": {**ok, "description": "this document"}},
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "alive",
                            "content": {"application/json": {"schema": ref("Health")}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": defs.get("$defs", {})},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
