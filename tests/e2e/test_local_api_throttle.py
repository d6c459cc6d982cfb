"""The stage's throttling: a token bucket per route, 429 in API Gateway's shape beyond it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from ferry_local.api_gate import Stage
from ferry_local.api_throttle import Limits, StageThrottle, TokenBucket, stage_throttle
from ferry_local.http_api import OPEN, LocalHttpApi, Route


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_admits_the_burst_then_refills_at_the_rate() -> None:
    """Given burst 5 and rate 2/s, when 7 requests arrive at once, then 5 pass; half a second
    later one more token is there; after 10 s the bucket is full again, never fuller."""
    clock = Clock()
    bucket = TokenBucket(Limits(rate=2, burst=5), clock)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now = 0.5
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now = 10.5
    assert sum(bucket.take() for _ in range(8)) == 5


def test_each_route_has_its_own_bucket_and_route_settings_override_the_default() -> None:
    throttle = stage_throttle(
        {
            "DefaultRouteSettings": {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 2},
            "RouteSettings": {"GET /health": {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 4}},
        },
        clock=Clock(),  # frozen time: no refill
    )
    assert sum(throttle.admit("POST /predict") for _ in range(5)) == 2
    assert sum(throttle.admit("GET /v1/models") for _ in range(5)) == 2
    assert sum(throttle.admit("GET /health") for _ in range(5)) == 4
    assert stage_throttle({}).admit("anything")  # no settings: no throttling


def test_a_burst_over_the_limit_gets_429_and_the_function_never_sees_it() -> None:
    """Given a stage of burst 3 and rate 1/s, when 6 requests arrive at once, then 3 reach the
    function and 3 get 429 {"message":"Too Many Requests"}; after the refill one passes again."""
    clock = Clock()
    calls: list[dict[str, Any]] = []

    def function(name: str, event: dict[str, Any]) -> tuple[bytes, bool, str]:
        calls.append(event)
        return json.dumps({"statusCode": 200, "body": "{}"}).encode(), False, ""

    stage = Stage(
        "a1b2c3d4e5",
        "$default",
        "us-east-1",
        "123456789012",
        StageThrottle(Limits(rate=1, burst=3), clock=clock),
    )
    api = LocalHttpApi(
        [Route("GET /health", "GET", "/health", "scoring", OPEN)], function, stage=stage
    )
    api.start()
    try:
        answers = [_get(api.url + "/health") for _ in range(6)]
        assert [status for status, _, _ in answers] == [200] * 3 + [429] * 3
        _, headers, body = answers[-1]
        assert body == {"message": "Too Many Requests"} and headers["apigw-requestid"]
        assert len(calls) == 3
        clock.now = 1.0
        assert _get(api.url + "/health")[0] == 200
        assert _get(api.url + "/health")[0] == 429
    finally:
        api.stop()


def _get(url: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), json.loads(err.read())
