"""Reliability property 1: bad input never reaches a 500, and the check can fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ferry_bench.bad_input import (
    LAMBDA_SYNC_LIMIT,
    ResponseTally,
    check,
    fuzz_handler,
    fuzz_http,
    oversize_bodies,
)
from ferry_bench.properties import Mode
from ferry_core.serving.api import openapi_document

ROUTES = (
    "POST /v1/models/{model}/predict",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "GET /v1/openapi.json",
    "GET /health",
)


def test_fast_mode_holds_with_every_kind_of_request_sent() -> None:
    """
    Given the real handler under moto and a real `ferry local up` with a registered model
    When the fast mode sends Hypothesis bodies, Schemathesis cases and bodies over 6 MB
    Then no response is a 5xx, nothing escapes the handler, every 4xx has the documented shape,
        and each source sent its share (the figures are the requests really made)
    """
    result = check(Mode(long=False))
    assert result.violations == []
    f = result.figures
    assert f["handler (Hypothesis)"] >= 800
    assert f["HTTP (Schemathesis)"] >= 120
    assert f["HTTP (over 6 MB)"] == 3
    assert f["requests (all)"] == sum(
        f[k] for k in ("handler (Hypothesis)", "HTTP (Schemathesis)", "HTTP (over 6 MB)")
    )
    # valid requests and bad inputs are counted apart, each with the answers it got
    valid, bad = "valid requests (known good)", "bad inputs (known bad)"
    undetermined = "generated, the API's verdict decides"
    assert f["requests (all)"] == f[valid] + f[bad] + f[undetermined]
    assert f[valid] > 20 and f[f"{valid} → answers"] == f"2xx {f[valid]:,}"
    assert f[bad] > 100 and "2xx" not in f[f"{bad} → answers"]
    assert "over 6 MB → clean 413" in result.emulator_only
    assert f["5xx"] == 0 and f["unhandled exceptions"] == 0 and f["transport errors"] == 0
    assert f["4xx"] == f["4xx with documented shape"] > 400
    assert f["2xx"] > 20, "valid requests were scored too, not only refusals"
    assert f["over 6 MB → clean 413"] == "3/3"


def test_a_valid_request_is_never_counted_as_a_bad_input() -> None:
    """Given one request the generator knows is valid, one it knows is bad and one it cannot
    tell, each is counted under its own heading, with the answer it got."""
    from ferry_bench.bad_requests import PREDICT, Request
    from ferry_bench.properties import PropertyResult

    good = Request("valid instances", "POST", PREDICT, "{}", expect=frozenset({200}))
    wrong = Request("1001 instances", "POST", PREDICT, "{}", expect=frozenset({400}))
    either = Request("missing field", "POST", PREDICT, "{}", expect=frozenset({200, 422}))
    assert (good.intent, wrong.intent, either.intent) == ("valid", "bad", "undetermined")
    tally = ResponseTally()
    refusal = json.dumps({"error": "validation_failed", "message": "m", "details": []})
    for req, status in ((good, 200), (wrong, 400), (either, 422)):
        tally.judge("hypothesis", req.label, status, refusal, req.expect, None, req.intent)
    result = PropertyResult(1, "bad input", "test")
    tally.to(result)
    f = result.figures
    assert (f["valid requests (known good)"], f["bad inputs (known bad)"]) == (1, 1)
    assert f["generated, the API's verdict decides"] == 1
    assert f["valid requests (known good) → answers"] == "2xx 1"
    assert f["bad inputs (known bad) → answers"] == "4xx 1"


def _refusing_500(event: dict[str, Any]) -> dict[str, Any]:
    body = {"error": "internal_error", "message": "boom", "details": []}
    return {
        "statusCode": 500,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def test_a_handler_answering_500_is_reported() -> None:
    tally = ResponseTally()
    fuzz_handler(20, _refusing_500, ROUTES, tally)
    assert tally.server_errors == tally.requests >= 20
    assert tally.unhandled == tally.requests
    assert tally.violations


def test_a_handler_that_raises_is_an_unhandled_exception() -> None:
    def raises(event: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("requestContext")

    tally = ResponseTally()
    fuzz_handler(10, raises, ROUTES, tally)
    assert tally.unhandled == tally.requests >= 10
    assert any("raised KeyError" in v for v in tally.violations)


def test_a_4xx_without_the_documented_shape_is_reported() -> None:
    def bare_400(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "statusCode": 400,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"message": "bad"}),
        }

    tally = ResponseTally()
    fuzz_handler(10, bare_400, ROUTES, tally)
    assert tally.unshaped_4xx >= 10 and tally.shaped_4xx == 0
    assert any("has keys ['message']" in v for v in tally.violations)


class _BrokenApi(BaseHTTPRequestHandler):
    """Serves the real OpenAPI document, answers every call with a 500, drops big bodies."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/v1/openapi.json"):
            self._send(200, openapi_document())
        else:
            self._send(500, {"error": "internal_error", "message": "x", "details": []})

    def do_POST(self) -> None:
        if int(self.headers.get("content-length") or 0) > LAMBDA_SYNC_LIMIT or self.headers.get(
            "transfer-encoding"
        ):
            self.close_connection = True  # what the local API did past 16 MiB: no response
            return
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._send(500, {"error": "internal_error", "message": "x", "details": []})

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def broken_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_api_answering_500_fails_schemathesis_and_the_413_probe(broken_api: str) -> None:
    tally = ResponseTally()
    fuzz_http(broken_api, 20, tally)
    oversize_bodies(broken_api, tally, (LAMBDA_SYNC_LIMIT + 1,))
    # every operation but GET /v1/openapi.json answers 500
    assert tally.server_errors >= 10
    assert tally.schemathesis_failures["not_a_server_error"] == tally.server_errors
    assert tally.oversize_clean_413 == 0 and tally.oversize_sent == 2
    assert any("oversize" in v for v in tally.violations)
