"""Scoring API: parse the HTTP API (payload 2.0) event, call the core, shape the response.

Routing is a table keyed on the event's `routeKey`: API Gateway has already matched the route
(the stack declares the same keys, and a test holds the two tables equal), so the function
looks it up instead of matching paths again. Powertools' APIGatewayHttpResolver did that
second match plus response building for ~45 µs a request and ~80 ms of cold-start import —
more than scoring one row costs (see `ferry bench scoring`).
"""

from __future__ import annotations

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

from ferry_core import __version__, errors
from ferry_core.monitoring.capture import CaptureBuffer
from ferry_core.serving import api
from ferry_core.serving.scoring import ScoringService, ServedBy
from ferry_core.settings import ScoringSettings

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
# The variant (canary or champion) that served the request, when a canary is running.
_served: contextvars.ContextVar[ServedBy | None] = contextvars.ContextVar("served", default=None)


@cache
def service() -> ScoringService:
    """Built on first use (not at import), once per container; tests call cache_clear()."""
    s = ScoringSettings.from_env()
    return ScoringService.from_settings(
        s, boto3.client("dynamodb"), boto3.client("s3"), s.registry_refresh_seconds
    )


@cache
def capture() -> CaptureBuffer:
    """The capture sample; rate 0 (the default) costs one comparison a request."""
    return CaptureBuffer.from_settings(ScoringSettings.from_env(), lambda: boto3.client("s3"))


def _model(event: Event) -> str:
    model = (event.get("pathParameters") or {}).get("model", "")
    metrics.add_dimension("model", model or "-")  # every metric of the request is per model
    return model


def predict(event: Event) -> Result:
    started = time.perf_counter()
    model = _model(event)
    instances = api.parse_predict_body(
        api.request_body(event.get("body"), event.get("isBase64Encoded", False))
    )
    version, stage = api.parse_selector(event.get("queryStringParameters"))
    served = ServedBy()
    _served.set(served)
    result = service().predict(model, instances, version=version, stage=stage, served=served)
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


def model_card(event: Event) -> Result:
    version, stage = api.parse_selector(event.get("queryStringParameters"))
    card = service().registry.resolve(_model(event), version=version, stage=stage)
    return 200, card.model_dump(mode="json")


# The routes of DESIGN.md §3.1, keyed exactly as the stack's AWS::ApiGatewayV2::Route RouteKeys.
ROUTES: dict[str, Callable[[Event], Result]] = {
    "POST /v1/models/{model}/predict": predict,
    "GET /v1/models": lambda event: (200, {"models": service().registry.models()}),
    "GET /v1/models/{model}": model_card,
    "GET /v1/openapi.json": lambda event: (200, api.openapi_document()),
    "GET /health": lambda event: (200, {"status": "ok", "version": __version__}),
}


def _refused(exc: errors.FerryError, event: Event) -> Result:
    """A domain error as its response (status from `api.HTTP_STATUS`), counted and logged."""
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
        if route is None:  # API Gateway routes only the keys above; an event built by hand
            raise errors.RouteNotFound(f"no route {(event.get('routeKey') or '-')[:200]}")
        return route(event)
    except errors.FerryError as exc:
        return _refused(exc, event)
    except Exception:  # a bug of ours: logged with its stack, answered in the documented shape
        logger.exception("unhandled error")
        metrics.add_metric(name="Errors5xx", unit=MetricUnit.Count, value=1)
        return 500, api.INTERNAL_ERROR


def _canary_metrics(served: ServedBy, model: str, status: int, started: float) -> None:
    """While a canary runs, each default-routed request is counted per variant (canary or
    champion): requests, 5xx and latency, which the workflow's canary check compares."""
    m = EphemeralMetrics(namespace=metrics.namespace)
    m.add_dimension("model", model)
    m.add_dimension("variant", served.variant or "-")
    m.add_metric(name="CanaryRequests", unit=MetricUnit.Count, value=1)
    m.add_metric(name="CanaryErrors5xx", unit=MetricUnit.Count, value=int(status >= 500))
    if not served.cold:  # a request that loaded the model measures the load, not the version
        m.add_metric(
            name="CanaryLatency",
            unit=MetricUnit.Milliseconds,
            value=(time.perf_counter() - started) * 1e3,
        )
    if served.version is not None:
        m.add_metadata(key="version", value=served.version)
    m.flush_metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: Event, context: LambdaContext) -> dict[str, Any]:
    # The API Gateway request id ties log lines to the client's response.
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    started = time.perf_counter()
    token = _served.set(None)
    try:
        status, body = _route_event(event)
        served = _served.get()
    finally:
        _served.reset(token)
    if served is not None and served.variant is not None:
        model = (event.get("pathParameters") or {}).get("model", "-")
        _canary_metrics(served, model, status, started)
    return api.response(status, body)


if TRACING:  # pragma: no cover - only inside Lambda with active tracing
    from aws_lambda_powertools import Tracer

    tracer = Tracer(patch_modules=("botocore",))
    lambda_handler = tracer.capture_lambda_handler(lambda_handler, capture_response=False)
