"""The HTTP API on 127.0.0.1: the synthesized API Gateway HTTP API's routes, nothing else.

The route table is read from the template (`AWS::ApiGatewayV2::Route` → its integration → the
function), never listed here. Each request is throttled and authorized as the stage and the
route say (`api_gate`: SigV4 + IAM, or a JWT), refused in API Gateway's own shape when it
fails, else becomes a payload-format-2.0 event with the real `routeKey`, `pathParameters` and
`requestContext.authorizer`, the function runs through the in-process runtime, and its
response is translated back the way API Gateway does it. Route selection follows API Gateway:
the most specific route wins, `{name+}` is greedy, `ANY` matches every method, `$default` last.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ferry_core import errors
from ferry_core.serving import api
from ferry_local.api_gate import Gate, RouteAuth, Stage, route_auth, stage_from_template
from ferry_local.api_refusals import Refusal
from ferry_local.events import http_api_event
from ferry_local.template import Resolver, TemplateError, _references

# Lambda refuses synchronous request payloads over 6 MB; API Gateway answers 413 before that.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
# An oversized body is drained (in 1 MiB reads, never held) up to this size so the client can
# read its 413: a client that sends the whole body before reading (urllib, requests) got a
# broken pipe instead when the connection closed on unread data (a 16 MiB limit was too small).
DISCARD_LIMIT = 1024 * 1024 * 1024

# Local only (API Gateway has no such header): which template route served the request.
ROUTE_HEADER = "x-ferry-route-key"
# Local only: the public keys of the issuers the platform stands in for (JWT authorizers).
JWKS_PATH = "/.well-known/jwks.json"
OPEN = RouteAuth()  # a route with AuthorizationType NONE

Invoke = Callable[[str, dict[str, Any]], tuple[bytes, bool, str]]


@dataclass(frozen=True)
class Route:
    """One `METHOD /path/{param}` of the API and the function its integration calls."""

    route_key: str
    method: str  # "ANY" or an HTTP method; "$default" for the catch-all route
    path: str
    function_name: str
    auth: RouteAuth = OPEN

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        parts = []
        for segment in self.path.strip("/").split("/"):
            greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
            param = re.fullmatch(r"\{(\w+)\}", segment)
            if greedy:
                parts.append(f"(?P<{greedy.group(1)}>.+)")
            elif param:
                parts.append(f"(?P<{param.group(1)}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        return re.compile("/" + "/".join(parts) if parts != [""] else "/")

    @property
    def specificity(self) -> tuple[bool, int, int, bool]:
        """Sort key: `$default` last; more literal segments, fewer greedy ones, exact method."""
        segments = self.path.strip("/").split("/")
        literals = sum(1 for s in segments if not s.startswith("{"))
        greedy = sum(1 for s in segments if s.endswith("+}"))
        return (self.route_key == "$default", -literals, greedy, self.method == "ANY")


def api_logical_id(resolver: Resolver) -> str | None:
    """The template's HTTP API (None when it has none)."""
    apis = [lid for lid, r in resolver.resources.items() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    if len(apis) > 1:
        raise TemplateError(f"several HTTP APIs in the template ({apis}); name one")
    return apis[0] if apis else None


def stage_of(resolver: Resolver, api_id: str | None = None) -> Stage:
    """The stage of the template's HTTP API (the only one, or `api_id`)."""
    api_id = api_id or api_logical_id(resolver)
    if api_id is None:
        raise TemplateError("the template has no HTTP API")
    return stage_from_template(resolver, api_id)


def routes_from_template(resolver: Resolver, api_id: str | None = None) -> list[Route]:
    """The routes of the template's HTTP API (the only one, or `api_id`)."""
    resources = resolver.resources
    api_id = api_id or api_logical_id(resolver)
    routes = []
    for lid, resource in resources.items():
        if resource["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        props = resource["Properties"]
        if props.get("ApiId") != {"Ref": api_id}:
            continue
        integration_ids = [
            ref
            for ref in _references(props.get("Target", ""), set(resources))
            if resources[ref]["Type"] == "AWS::ApiGatewayV2::Integration"
        ]
        if not integration_ids:
            raise TemplateError(f"route {lid} has no integration the local API can call")
        integration = resolver.resolve(resources[integration_ids[0]]["Properties"])
        if integration.get("IntegrationType") != "AWS_PROXY":
            raise TemplateError(f"route {lid}: only Lambda proxy integrations are served locally")
        if str(integration.get("PayloadFormatVersion", "2.0")) != "2.0":
            raise TemplateError(f"route {lid}: only payload format 2.0 is served locally")
        route_key = resolver.resolve(props["RouteKey"])
        method, _, path = route_key.partition(" ")
        function_name = _function_name(integration["IntegrationUri"])
        routes.append(Route(route_key, method, path, function_name, route_auth(resolver, props)))
    return sorted(routes, key=lambda r: r.specificity)


def _function_name(uri: str) -> str:
    """`arn:aws:lambda:region:account:function:NAME[:qualifier]` (or the invocation URI) → NAME."""
    match = re.search(r"function:([^:/]+)", uri)
    if not match:
        raise TemplateError(f"integration URI {uri!r} does not name a Lambda function")
    return match.group(1)


def match_route(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route API Gateway would select, and its path parameters."""
    default = None
    for route in routes:
        if route.route_key == "$default":
            default = route
            continue
        if route.method not in ("ANY", method):
            continue
        found = route.pattern.fullmatch(path)
        if found:
            return route, found.groupdict()
    return (default, {}) if default else None


def _json_response(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(body).encode()


def lambda_response(payload: bytes, errored: bool) -> tuple[int, dict[str, str], bytes]:
    """A payload-2.0 Lambda result → (status, headers, body), as API Gateway translates it."""
    if errored:
        body = {"error": "internal_error", "message": "the function failed", "details": []}
        return _json_response(500, body)
    try:
        result = json.loads(payload or b"null")
    except ValueError:
        return 200, {"content-type": "application/json"}, payload
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    cookies = result.get("cookies") or []
    if cookies:
        headers["set-cookie"] = "\n".join(cookies)  # one header line each, see _send
    return int(result["statusCode"]), headers, raw


@dataclass
class Served:
    """One request's answer, and what the access log records of it."""

    status: int
    headers: dict[str, str]
    body: bytes
    route_key: str = "-"
    request_id: str = "-"
    user_arn: str | None = None
    error: str | None = None


class LocalHttpApi:
    """A threading HTTP server for the routes; `start()` it, `url` is its base, `stop()` it."""

    def __init__(
        self,
        routes: list[Route],
        invoke: Invoke,
        *,
        stage: Stage,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: Path | None = None,
    ) -> None:
        self.routes = routes
        self.invoke = invoke
        self.stage = stage
        self.gate = Gate(stage)
        self.access_log = access_log
        self._log_lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler_class(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="ferry-http-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(timeout=10)

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> Served:
        """One request → its answer: the whole gateway, without sockets."""
        request_id = uuid.uuid4().hex[:16]
        split = urlsplit(target)
        if method == "GET" and split.path == JWKS_PATH and self.stage.issuers:
            keys = [k for issuer in self.stage.issuers.values() for k in issuer.jwks()["keys"]]
            return Served(*_json_response(200, {"keys": keys}), request_id=request_id)
        found = match_route(self.routes, method, split.path)
        if found is None:  # API Gateway's own answer: no route, no function, no authorizer
            status, out_headers, out_body = _json_response(404, {"message": "Not Found"})
            out_headers["apigw-requestid"] = request_id
            error = f"no route {method} {split.path}"
            return Served(status, out_headers, out_body, request_id=request_id, error=error)
        route, path_parameters = found
        try:
            authorizer = self.gate.check(
                route.route_key, route.auth, method, target, headers, body or b""
            )
        except Refusal as refusal:
            status, out_headers, out_body = refusal.response()
            out_headers["apigw-requestid"] = request_id
            return Served(
                status, out_headers, out_body, route.route_key, request_id, error=refusal.reason
            )
        event = _event(route, method, target, headers, body, path_parameters, request_id)
        if authorizer is not None:
            event["requestContext"]["authorizer"] = authorizer
        event["requestContext"].update(
            {
                "apiId": self.stage.api_id,
                "accountId": self.stage.account_id,
                "stage": self.stage.name,
            }
        )
        payload, errored, _ = self.invoke(route.function_name, event)
        status, out_headers, out_body = lambda_response(payload, errored)
        out_headers["apigw-requestid"] = request_id
        out_headers[ROUTE_HEADER] = route.route_key
        user_arn = (authorizer or {}).get("iam", {}).get("userArn")
        return Served(status, out_headers, out_body, route.route_key, request_id, user_arn)

    def log(self, record: dict[str, Any]) -> None:
        if self.access_log is None:
            return
        with self._log_lock:
            self.access_log.parent.mkdir(parents=True, exist_ok=True)
            with self.access_log.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


def _event(
    route: Route,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    path_parameters: dict[str, str],
    request_id: str,
) -> dict[str, Any]:
    """The payload-2.0 event of an admitted request."""
    split = urlsplit(target)
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    cookies = [c.strip() for c in joined.pop("cookie", "").split(";") if c.strip()]
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    event = http_api_event(
        method,
        split.path,
        body=body if body else None,
        query=query or None,
        route_key=route.route_key,
        path_parameters=path_parameters or None,
        headers=joined,
        request_id=request_id,
    )
    event["rawQueryString"] = split.query
    event["headers"] = joined
    if "content-type" not in joined:
        event["headers"].pop("content-type", None)
    if cookies:
        event["cookies"] = cookies
    return event


def _too_large(limit: int) -> tuple[int, dict[str, str], bytes]:
    exc = errors.TooLarge(f"the request body is over the gateway's {limit} byte limit")
    return _json_response(api.status_of(exc), api.error_body(exc))


def _handler_class(gateway: LocalHttpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a load test's clients expect
        # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed
        # ACK held every response ~40 ms (ferry bench load: p50 44 ms at any load).
        disable_nagle_algorithm = True
        server_version = "ferry-local-api"

        def _serve(self) -> None:
            started = time.perf_counter()
            body, too_large = self._read_body()
            if too_large:
                served = Served(*_too_large(MAX_REQUEST_BYTES))
            else:
                served = gateway.handle(self.command, self.path, list(self.headers.items()), body)
            self._send(served.status, served.headers, served.body)
            gateway.log(
                {
                    "requestId": served.request_id,
                    "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
                    "sourceIp": self.client_address[0],
                    "userArn": served.user_arn or "-",
                    "httpMethod": self.command,
                    "path": self.path,
                    "routeKey": served.route_key,
                    "status": served.status,
                    "responseLength": len(served.body),
                    "latency": round((time.perf_counter() - started) * 1000, 3),
                    "errorMessage": served.error or "-",
                }
            )

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def _read_body(self) -> tuple[bytes | None, bool]:
            """The request body, or (None, True) when it is over the limit.

            An oversized body is still read (and dropped) up to DISCARD_LIMIT, so the client
            gets its 413 instead of a broken pipe; beyond that the connection is closed.
            """
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks, size = [], 0
                while True:
                    length = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if length == 0:
                        self.rfile.readline()
                        break
                    size += length
                    if size > DISCARD_LIMIT:
                        self.close_connection = True
                        return None, True
                    data = self.rfile.read(length)
                    if size <= MAX_REQUEST_BYTES:
                        chunks.append(data)
                    self.rfile.readline()
                return (None, True) if size > MAX_REQUEST_BYTES else (b"".join(chunks), False)
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_REQUEST_BYTES:
                if length > DISCARD_LIMIT:
                    self.close_connection = True
                    return None, True
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    remaining = remaining - len(chunk) if chunk else 0
                return None, True
            return (self.rfile.read(length) if length else None), False

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name in ("content-length", "connection", "transfer-encoding"):
                    continue
                for line in value.split("\n") if name == "set-cookie" else [value]:
                    self.send_header(name, line)
            self.send_header("content-length", str(len(body)))
            if self.close_connection:
                self.send_header("connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the access log instead
            return

    return Handler
