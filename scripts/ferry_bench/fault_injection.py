"""Fault injection for the transient-faults property: AWS error responses and cut bodies.

`FaultInjector` hooks botocore's `before-send` event so the Nth matching call to a service
operation answers with the service's own error (a throttle, a 500, …) or with a body cut
mid-stream, exactly as the real service would; every fault records whether it fired.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ferry_local.moto_stack import stack_resources

SERVICES = ("s3", "dynamodb", "sqs", "sfn", "eventbridge")
JSON_TYPES = {"eventbridge": "application/x-amz-json-1.1"}


# ---- the injector ------------------------------------------------------------------------------


@dataclass
class Fault:
    """Answer matching calls with an AWS error: `times` of them (None: every one), after `skip`.

    `match` is a substring of the request URL or body (a key, a table name). `applied` lets moto
    apply the call first: the request landed, only its answer was lost.
    """

    service: str
    operation: str
    code: str
    status: int
    times: int | None = None
    skip: int = 0
    match: str = ""
    applied: bool = False
    seen: int = 0
    injected: int = 0

    @property
    def persistent(self) -> bool:
        return self.times is None


@dataclass
class Cut:
    """Cut the body of matching GetObject answers after `after` bytes, `times` times."""

    match: str
    after: int = 4096
    times: int | None = 1
    injected: int = 0


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class _CutBody:
    """A response body whose connection drops after `after` bytes."""

    def __init__(self, body: Any, after: int) -> None:
        self._body = body
        self._left = after

    def read(self, amt: int | None = None) -> bytes:
        from botocore.exceptions import ResponseStreamingError

        if self._left <= 0:
            raise ResponseStreamingError(error="injected: connection reset while reading")
        want = self._left if amt is None or amt < 0 else min(amt, self._left)
        data = self._body.read(want)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._body.close()


def error_response(request: Any, service: str, code: str, status: int) -> Any:
    """The answer AWS sends for `code` in `service`'s protocol (rest-xml for S3, else JSON)."""
    from botocore.awsrequest import AWSResponse

    message = f"injected by Ferry's reliability suite: {code}"
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>FERRYFAULT</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml", "x-amz-request-id": "FERRYFAULT"}
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        ctype = JSON_TYPES.get(service, "application/x-amz-json-1.0")
        headers = {"Content-Type": ctype, "x-amzn-RequestId": "FERRYFAULT"}
    return AWSResponse(request.url, status, headers, _Raw(body))


class FaultInjector:
    """Hooks on a boto3 session; faults are armed with `active(...)` and counted per service."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._cuts: list[Cut] = []
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.retries = 0
        self.backoff_seconds = 0.0

    def install(self, events: Any) -> None:
        """Hook a session's (or one client's) event system; faults stay off until `active`."""
        for svc in SERVICES:  # more specific than moto's "before-send": called first
            events.register(f"before-send.{svc}", self._before_send, unique_id=f"ferry-{svc}")
        events.register("after-call.s3.GetObject", self._after_get, unique_id="ferry-cut")

    @contextlib.contextmanager
    def active(self, faults: list[Fault], cuts: list[Cut] | None = None) -> Iterator[None]:
        """Arm `faults` (and body cuts) for the block only: set-up and judging run clean."""
        with self._lock:
            self._faults, self._cuts = list(faults), list(cuts or [])
        try:
            yield
        finally:
            with self._lock:
                self._faults, self._cuts = [], []

    def _pick(self, service: str, op: str, request: Any) -> Fault | None:
        text = None
        for f in self._faults:
            if f.service != service or f.operation != op:
                continue
            if f.match:
                if text is None:
                    body = request.body if isinstance(request.body, bytes) else b""
                    text = request.url + body[:4096].decode("utf-8", "replace")
                if f.match not in text and f.match.replace(" ", "%20") not in text:
                    continue
            f.seen += 1
            if f.seen <= f.skip or (f.times is not None and f.injected >= f.times):
                continue
            f.injected += 1
            self.injected[service] += 1
            return f
        return None

    def _before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        """Answer with the fault's error, and keep moto from applying the call.

        botocore emits `before-send` to every handler and uses the first answer: moto's own
        handler (registered for all services, so called after this one) would still apply
        the request. Pointing the request at an address moto does not serve stops it; the
        next attempt (the same request object) gets its address back here first.
        """
        original = getattr(request, "_ferry_url", None)
        if original is not None:
            request.url = original
            del request._ferry_url
        _, service, op = event_name.split(".")[:3]
        with self._lock:
            fault = self._pick(service, op, request)
        if fault is None:
            return None
        if fault.applied:
            from moto.core.models import botocore_stubber

            botocore_stubber(request=request, event_name=event_name)  # moto applies it; lost
        request._ferry_url = request.url
        request.url = "https://ferry-fault.invalid/"
        return error_response(request, service, fault.code, fault.status)

    def _after_get(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            for cut in self._cuts:
                if cut.match in getattr(http_response, "url", "") and "Body" in parsed:
                    if cut.times is not None and cut.injected >= cut.times:
                        continue
                    cut.injected += 1
                    self.injected["s3"] += 1
                    parsed["Body"] = _CutBody(parsed["Body"], cut.after)
                    return

    @contextlib.contextmanager
    def compressed_backoff(self) -> Iterator[None]:
        """botocore's retry sleeps (in `botocore.endpoint`) recorded instead of slept."""
        import botocore.endpoint as endpoint

        real = endpoint.time
        injector = self

        class _Clock:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            @staticmethod
            def sleep(seconds: float) -> None:
                injector.retries += 1
                injector.backoff_seconds += seconds

        endpoint.time = _Clock()  # type: ignore[assignment]
        try:
            yield
        finally:
            endpoint.time = real


def s3_fault(op: str, code: str = "SlowDown", status: int = 503, **kw: Any) -> Fault:
    return Fault("s3", op, code, status, **kw)


def ddb_fault(op: str, code: str = "ThrottlingException", status: int = 400, **kw: Any) -> Fault:
    return Fault("dynamodb", op, code, status, **kw)


# ---- shared by the batch and governance cases -----------------------------------------------

DEFAULT_RESOURCES = stack_resources()  # the names batch_platform creates: the stack's
RES_TABLES = {
    "idempotency": DEFAULT_RESOURCES.idempotency_table,
    "registry": DEFAULT_RESOURCES.registry_table,
    "audit": DEFAULT_RESOURCES.audit_table,
}


@dataclass
class Outcomes:
    """Counts over all cases."""

    survived: int = 0
    part_retried: int = 0
    redelivered: int = 0
    dlq: int = 0
    redriven: int = 0
    failed_manifest: int = 0
    refused: int = 0
    warned: int = 0
    lost: int = 0
    half_written: int = 0
    rows: int = 0


@dataclass
class Persistence:
    """Cases counted apart by their faults: transient ones (each fails a bounded number of
    calls) must be survived, persistent ones (fail every matching call) routed as designed."""

    cases: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)

    def count(self, faults: list[Fault], cuts: list[Cut], held: bool) -> None:
        lasting = any(f.persistent for f in faults) or any(c.times is None for c in cuts)
        kind = "persistent" if lasting else "transient"
        self.cases[kind] += 1
        self.held[kind] += held

    def figures(self) -> dict[str, str]:
        return {
            "transient faults: cases survived": f"{self.held['transient']}/"
            f"{self.cases['transient']}",
            "persistent faults: cases routed as designed": f"{self.held['persistent']}/"
            f"{self.cases['persistent']}",
        }


def check_fired(faults: list[Fault], cuts: list[Cut], label: str, bad: list[str]) -> None:
    """A fault that never fired means the case tested nothing: say so."""
    for f in faults:
        if not f.injected:
            bad.append(f"{label} the {f.service} {f.operation} fault never fired")
    for c in cuts:
        if not c.injected:
            bad.append(f"{label} the GetObject body cut never fired")
