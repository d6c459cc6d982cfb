"""The stage's throttling, as API Gateway applies it: a token bucket per route.

API Gateway throttles with the token bucket algorithm: a bucket holds at most `BurstLimit`
tokens, refills at `RateLimit` tokens per second, and each request takes one; a request that
finds the bucket empty gets 429 without reaching the integration. An HTTP API stage's
`DefaultRouteSettings` set the limits of every route and `RouteSettings` override them for one
route key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    rate: float  # tokens added per second
    burst: int  # bucket size


class TokenBucket:
    """Thread-safe; starts full, as a freshly deployed stage does."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._tokens = float(limits.burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """One token if there is one (True), else False: the request is throttled."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self.limits.burst, self._tokens + elapsed * self.limits.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class StageThrottle:
    """One bucket per route key, with the stage's default limits or the route's own."""

    def __init__(
        self,
        default: Limits | None,
        per_route: Mapping[str, Limits] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self.per_route = dict(per_route or {})
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def admit(self, route_key: str) -> bool:
        limits = self.per_route.get(route_key, self.default)
        if limits is None:
            return True
        with self._lock:
            bucket = self._buckets.get(route_key)
            if bucket is None:
                bucket = self._buckets[route_key] = TokenBucket(limits, self._clock)
        return bucket.take()


def limits_of(settings: Mapping[str, Any] | None) -> Limits | None:
    """`{ThrottlingRateLimit, ThrottlingBurstLimit}` of a stage's route settings, if set."""
    if not settings or "ThrottlingRateLimit" not in settings:
        return None
    return Limits(
        rate=float(settings["ThrottlingRateLimit"]),
        burst=int(settings.get("ThrottlingBurstLimit", 0)),
    )


def stage_throttle(
    stage: Mapping[str, Any] | None, clock: Callable[[], float] = time.monotonic
) -> StageThrottle:
    """The throttle of an `AWS::ApiGatewayV2::Stage`'s (resolved) properties."""
    stage = stage or {}
    per_route = {
        key: limits
        for key, settings in (stage.get("RouteSettings") or {}).items()
        if (limits := limits_of(settings)) is not None
    }
    return StageThrottle(limits_of(stage.get("DefaultRouteSettings")), per_route, clock)
