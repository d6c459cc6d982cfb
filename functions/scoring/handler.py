"""Scoring API: parse the HTTP API (payload 2.0) event, call the core, shape the response.

Everything a route does is in `ferry_core`; this module owns only the HTTP shape, the
Powertools observability and the one mapping of domain errors to responses.

Routing is a table keyed on the event's `routeKey`: API Gateway has already matched the route
(the stack declares the same keys, and a test holds the two tables equal), so the function
looks it up instead of matching paths again. Powertools' APIGatewayHttpResolver did that
second match plus response building for ~45 µs a request and ~80 ms of cold-start import —
more than scoring one row costs (see `ferry bench scoring`).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import os
import time
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from ferry_core import __version__, api, errors
from ferry_core.capture import CaptureBuffer
from ferry_core.registry.reader import RegistryReader
from ferry_core.scoring import Route, ScoringService
from ferry_core.settings import ScoringSettings
from ferry_core.store import ModelStore

logger = Logger()
metrics = Metrics()
# Powertools' own rule: X-Ray only inside Lambda and unless disabled. Building a Tracer imports
# the X-Ray SDK (~200 ms of cold start) even when it then does nothing, so build it only then.
TRACING = "LAMBDA_TASK_ROOT" in os.environ and os.environ.get(
    "POWERTOOLS_TRACE_DISABLED", "false"
).lower() not in ("1", "true")
# Metadata routes publish no metric; Powertools would warn on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

Event = dict[str, Any]
Result = tuple[int, Any]
# The variant (canary or champion) of the request being served, when a canary is running.
_route: contextvars.ContextVar[Route | None] = contextvars.ContextVar("route", default=None)


@cache
def service() -> ScoringService:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = ScoringSettings.from_env()
    registry = RegistryReader(boto3.client("dynamodb"), s.registry_table, s.registry_cache_seconds)
    return ScoringService(registry, ModelStore(boto3.client("s3"), s.model_cache_dir), s.threads)


@cache
def capture() -> CaptureBuffer:
    """The capture sample (ferry_core/capture.py); rate 0 (the default) costs one comparison."""
    s = ScoringSettings.from_env()
    rate = s.capture_sample_rate if s.data_bucket else 0.0
    return CaptureBuffer(
        boto3.client("s3") if rate else None,
        s.data_bucket or "",
        sample_rate=rate,
        max_records=s.capture_max_records,
        max_age_seconds=s.capture_max_age_seconds,
    )


def _model(event: Event) -> str:
    model = (event.get("pathParameters") or {}).get("model", "")
    metrics.add_dimension("model", model or "-")  # every metric of the request is per model
    return model


def _body(event: Event) -> str | bytes | None:
    body = event.get("body")
    if body and event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.BadRequest("the body is not valid base64-encoded JSON") from exc
    return body


def predict(event: Event) -> Result:
    started = time.perf_counter()
    model = _model(event)
    instances = api.parse_predict_body(_body(event))
    version, stage = api.parse_selector(event.get("queryStringParameters"))
    route = Route()
    _route.set(route)
    result = service().predict(model, instances, version=version, stage=stage, route=route)
    request_id = event["requestContext"]["requestId"]
    capture().offer(result.model, result.version, request_id, instances, result.predictions)
    metrics.add_metric(
        name="Latency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1e3
    )
    metrics.add_metric(name="InstancesScored", unit=MetricUnit.Count, value=len(instances))
    # The EMF line is the per-request record in CloudWatch Logs (queryable with Logs Insights);
    # a second JSON log line per request would double the logging cost of the hot path.
    metrics.add_metadata(key="version", value=result.version)
    metrics.add_metadata(key="request_id", value=request_id)
    body = {
        "model": result.model,
        "version": result.version,
        "request_id": request_id,
        "predictions": result.predictions,
    }
    return 200, body


def list_models(event: Event) -> Result:
    return 200, {"models": service().registry.models()}


def model_card(event: Event) -> Result:
    model = _model(event)
    version, stage = api.parse_selector(event.get("queryStringParameters"))
    return 200, service().registry.resolve(model, version=version, stage=stage).model_dump(
        mode="json"
    )


def openapi(event: Event) -> Result:
    return 200, api.openapi_document()


def health(event: Event) -> Result:
    return 200, {"status": "ok", "version": __version__}


# The routes of DESIGN.md §3.1, keyed exactly as the stack's AWS::ApiGatewayV2::Route RouteKeys.
ROUTES: dict[str, Callable[[Event], Result]] = {
    "POST /v1/models/{model}/predict": predict,
    "GET /v1/models": list_models,
    "GET /v1/models/{model}": model_card,
    "GET /v1/openapi.json": openapi,
    "GET /health": health,
}


def _refused(exc: errors.FerryError, event: Event) -> Result:
    """The one place a domain error becomes a response (status from `api.HTTP_STATUS`)."""
    status = api.status_of(exc)
    model = (event.get("pathParameters") or {}).get("model", "-")
    with single_metric(
        name="Errors", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as m:
        m.add_dimension("model", model)
        m.add_dimension("code", exc.code)
    metrics.add_metric(
        name="Errors4xx" if status < 500 else "Errors5xx", unit=MetricUnit.Count, value=1
    )
    logger.info("request refused", code=exc.code, status=status, error=exc.message)
    return status, api.error_body(exc)


def _route_event(event: Event) -> Result:
    try:
        route = ROUTES.get(event.get("routeKey", ""))
        if route is None:  # a `$default` catch-all route, or an event built by hand
            http = (event.get("requestContext") or {}).get("http") or {}
            method, path = http.get("method", "?"), event.get("rawPath", "?")
            matched = api.match_route(method, path, ROUTES)
            if matched is None:
                raise errors.RouteNotFound(f"no route {method} {path[:200]}")
            key, params = matched
            event = {**event, "routeKey": key, "pathParameters": params}
            route = ROUTES[key]
        return route(event)
    except errors.FerryError as exc:
        return _refused(exc, event)
    except Exception:  # a bug of ours: logged with its stack, answered in the documented shape
        logger.exception("unhandled error")
        metrics.add_metric(name="Errors5xx", unit=MetricUnit.Count, value=1)
        return 500, {
            "error": "internal_error",
            "message": "internal error; see logs",
            "details": [],
        }


def _canary_metrics(route: Route, model: str, status: int, started: float) -> None:
    """While a canary runs, each default-routed request is counted per variant (canary or
    champion): requests, 5xx and latency, which the workflow's canary check compares."""
    m = EphemeralMetrics(namespace=metrics.namespace)
    m.add_dimension("model", model)
    m.add_dimension("variant", route.variant or "-")
    m.add_metric(name="CanaryRequests", unit=MetricUnit.Count, value=1)
    m.add_metric(name="CanaryErrors5xx", unit=MetricUnit.Count, value=int(status >= 500))
    if not route.cold:  # a request that loaded the model measures the load, not the version
        m.add_metric(
            name="CanaryLatency",
            unit=MetricUnit.Milliseconds,
            value=(time.perf_counter() - started) * 1e3,
        )
    if route.version is not None:
        m.add_metadata(key="version", value=route.version)
    m.flush_metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: Event, context: LambdaContext) -> dict[str, Any]:
    # The API Gateway request id ties log lines to the client's response.
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    started = time.perf_counter()
    token = _route.set(None)
    try:
        status, body = _route_event(event)
        route = _route.get()
    finally:
        _route.reset(token)
    if route is not None and route.variant is not None:
        model = (event.get("pathParameters") or {}).get("model", "-")
        _canary_metrics(route, model, status, started)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": api.dumps(body),
        "isBase64Encoded": False,
    }


if TRACING:  # pragma: no cover - only inside Lambda with active tracing
    from aws_lambda_powertools import Tracer

    tracer = Tracer(patch_modules=("botocore",))
    lambda_handler = tracer.capture_lambda_handler(lambda_handler, capture_response=False)
