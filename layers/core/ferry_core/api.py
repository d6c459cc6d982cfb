"""The public HTTP contract (DESIGN.md §3.1): request/response models, error body, statuses.

The core raises domain errors; `HTTP_STATUS` is the one place that maps them to statuses,
and `openapi_document()` is generated from the same pydantic models the API uses.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_core import errors

MAX_INSTANCES = 1000
# Lambda's synchronous payload limit is 6 MB; refuse well before it so a client always gets
# our 413 instead of a gateway error. 1,000 instances of 50 features fit in well under 1 MiB.
MAX_BODY_BYTES = 1_048_576

HTTP_STATUS: dict[type[errors.FerryError], int] = {
    errors.BadRequest: 400,
    errors.ModelNotFound: 404,
    errors.VersionNotFound: 404,
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


class PredictRequest(BaseModel):
    """`{"instances": [{feature: value, …}, …]}`: 1 to 1,000 instances."""

    model_config = ConfigDict(extra="forbid")
    instances: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_INSTANCES, json_schema_extra={"items": {"type": "object"}}
    )


class Prediction(BaseModel):
    score: float = Field(description="probability of the positive label")
    label: int = Field(description="1 when score reaches the card's threshold, else 0")
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class PredictResponse(BaseModel):
    model: str
    version: int
    request_id: str
    predictions: list[Prediction]


class ErrorDetail(BaseModel):
    instance: int | None = None
    field: str | None = None
    problem: str
    message: str


class ErrorBody(BaseModel):
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


class ModelSummary(BaseModel):
    name: str
    stages: dict[str, int | None]
    latest_version: int


class ModelsResponse(BaseModel):
    models: list[ModelSummary]


class Health(BaseModel):
    status: Literal["ok"]
    version: str


def error_body(exc: errors.FerryError) -> dict[str, Any]:
    return {"error": exc.code, "message": exc.message, "details": exc.details}


def parse_predict_body(body: str | bytes | None) -> list[Any]:
    """The instances of a predict body, or BadRequest / TooLarge saying what is wrong."""
    if body is None or body == "" or body == b"":
        raise errors.BadRequest('the body must be JSON: {"instances": [{...}, ...]}')
    if len(body) > MAX_BODY_BYTES:
        raise errors.TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, int too long
        raise errors.BadRequest(f"the body is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(data, dict) or "instances" not in data:
        raise errors.BadRequest('the body must be an object with "instances"')
    instances = data["instances"]
    if isinstance(instances, list) and len(instances) > MAX_INSTANCES:
        raise errors.TooLarge(f"{len(instances)} instances; at most {MAX_INSTANCES} per request")
    try:
        PredictRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise errors.BadRequest(f"{where}: {first['msg']}") from exc
    return instances


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
        if not raw.isdigit() or int(raw) < 1 or len(raw) > 9:
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
        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
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
                        "400": err("not JSON, or not the documented shape"),
                        "404": err("model_not_found or version_not_found"),
                        "413": err("too many instances or too large a body"),
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
