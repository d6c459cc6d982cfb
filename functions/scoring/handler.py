"""Scoring API: parse the HTTP API (payload 2.0) event, call the core, shape the response.

Everything a route does is in `ferry_core`; this module owns only the HTTP shape, the
Powertools observability and the one mapping of domain errors to responses.
"""

from __future__ import annotations

import json
import time
import warnings
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from ferry_core import __version__, api, errors
from ferry_core.registry import RegistryReader
from ferry_core.scoring import ScoringService
from ferry_core.settings import ScoringSettings
from ferry_core.store import ModelStore

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))
app = APIGatewayHttpResolver()
# Metadata routes publish no metric; Powertools would warn on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")


@cache
def service() -> ScoringService:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = ScoringSettings.from_env()
    registry = RegistryReader(boto3.client("dynamodb"), s.registry_table, s.registry_cache_seconds)
    return ScoringService(registry, ModelStore(boto3.client("s3"), s.model_cache_dir), s.threads)


def _for_model(model: str) -> None:
    """Every metric of this request is per model; errors name it too."""
    metrics.add_dimension("model", model)
    app.append_context(model=model)


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


@app.post("/v1/models/<model>/predict")
def predict(model: str) -> Response:
    started = time.perf_counter()
    event = app.current_event
    _for_model(model)
    try:
        body = event.decoded_body
    except ValueError as exc:  # a body flagged base64 that is not
        raise errors.BadRequest("the body is not valid base64-encoded JSON") from exc
    instances = api.parse_predict_body(body)
    version, stage = api.parse_selector(event.query_string_parameters)
    result = service().predict(model, instances, version=version, stage=stage)
    request_id = event.request_context.request_id
    latency_ms = (time.perf_counter() - started) * 1000
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name="InstancesScored", unit=MetricUnit.Count, value=len(instances))
    metrics.add_metadata(key="version", value=result.version)
    logger.info(
        "scored",
        model=model,
        version=result.version,
        instances=len(instances),
        latency_ms=round(latency_ms, 3),
    )
    return _json(
        200,
        {
            "model": result.model,
            "version": result.version,
            "request_id": request_id,
            "predictions": result.predictions,
        },
    )


@app.get("/v1/models")
def list_models() -> Response:
    return _json(200, {"models": service().registry.models()})


@app.get("/v1/models/<model>")
def model_card(model: str) -> Response:
    _for_model(model)
    version, stage = api.parse_selector(app.current_event.query_string_parameters)
    card = service().registry.resolve(model, version=version, stage=stage)
    return _json(200, card.model_dump(mode="json"))


@app.get("/v1/openapi.json")
def openapi() -> Response:
    return _json(200, api.openapi_document())


@app.get("/health")
def health() -> Response:
    return _json(200, {"status": "ok", "version": __version__})


@app.exception_handler(errors.FerryError)
def domain_error(exc: errors.FerryError) -> Response:
    status = api.status_of(exc)
    model = app.context.get("model", "-")
    with single_metric(
        name="Errors", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as m:
        m.add_dimension("model", model)
        m.add_dimension("code", exc.code)
    metrics.add_metric(
        name="Errors4xx" if status < 500 else "Errors5xx", unit=MetricUnit.Count, value=1
    )
    logger.info("request refused", code=exc.code, status=status, error=exc.message)
    return _json(status, api.error_body(exc))


@app.not_found
def not_found(exc: Exception) -> Response:
    event = app.current_event
    return _json(
        404,
        {
            "error": "not_found",
            "message": f"no route {event.request_context.http.method} {event.path}",
            "details": [],
        },
    )


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    """A bug of ours: logged with its stack, answered in the documented shape, alarmed on."""
    logger.exception("unhandled error")
    metrics.add_metric(name="Errors5xx", unit=MetricUnit.Count, value=1)
    body = {"error": "internal_error", "message": "internal error; see logs", "details": []}
    return _json(500, body)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
