"""Property 1: bad input never reaches a 500, and every refusal has the documented shape.

Three sources of requests, all counted together:

1. Hypothesis bodies against the scoring handler in this process (payload-2.0 events, moto,
   a real registered model): arbitrary JSON, wrong shapes and types, huge numbers, NaN
   strings, unknown fields, 0 or 1,001 instances, deep nesting, invalid UTF-8, base64 bodies,
   odd query strings, model names, methods and paths. Where the generator knows the right
   answer (not JSON → 400, 1,001 instances → 400, a wrong type → 422) the status must be it.
2. Schemathesis, driven by the API's own OpenAPI document (`GET /v1/openapi.json`), against
   the local HTTP API of a real `ferry local up` child process (or `api_url`), positive and
   negative cases, with its status-code, content-type, response-schema and negative-data checks.
3. Bodies over Lambda's 6 MB synchronous limit, sent over HTTP with a content length and
   chunked: each must get a clean 413 `too_large` that the client can read.

A response counts as 5xx by status; an unhandled exception is one that escaped the handler
or a 500 `internal_error` (the handler's catch-all for its own bugs).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ferry_bench.bad_requests import MODEL, PREDICT, Request, request_strategy
from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.running_platform import local_platform, registered_handler, small_model

LAMBDA_SYNC_LIMIT = 6 * 1024 * 1024
MAX_VIOLATIONS = 20  # distinct messages kept; the counts hold the totals
# What API Gateway (and the local HTTP API) answers when no route matches the method and path.
GATEWAY_NOT_FOUND = {"message": "Not Found"}
THROTTLE_RETRIES = 5  # a case the stage throttles (429) is sent again, up to this many times

Invoke = Callable[[dict[str, Any]], Any]


# -- what a response must look like -----------------------------------------------------------


def _documented_codes() -> frozenset[str]:
    from typing import get_args

    from ferry_core.serving.api import ErrorBody

    codes = get_args(ErrorBody.model_fields["error"].annotation)
    return frozenset(codes) - {"internal_error"}


@dataclass
class ResponseTally:
    """Counts over every request of the property, and its distinct violations."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unhandled: int = 0
    transport_errors: int = 0
    shaped_4xx: int = 0
    unshaped_4xx: int = 0
    expected_status_misses: int = 0
    schemathesis_failures: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    oversize_sent: int = 0
    oversize_clean_413: int = 0
    throttled_retried: int = 0  # 429s of the local gate, sent again
    # (intent, status class) of every request: valid, bad, or undetermined by its generator
    by_intent: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: dict[str, int] = field(default_factory=dict)

    def violation(self, message: str) -> None:
        key = message[:300]
        if key in self.violations or len(self.violations) < MAX_VIOLATIONS:
            self.violations[key] = self.violations.get(key, 0) + 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def judge(
        self,
        source: str,
        label: str,
        status: int,
        body: bytes | str,
        expect: frozenset[int] | None = None,
        instances: int | None = None,
        intent: str = "undetermined",
    ) -> None:
        """Count one response and record what is wrong with it, if anything."""
        self.requests += 1
        self.by_source[source] += 1
        self.statuses[status] += 1
        self.by_intent[intent, f"{status // 100}xx"] += 1
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if status >= 500:
            code = doc.get("error") if isinstance(doc, dict) else None
            if code == "internal_error":
                self.unhandled += 1
            self.violation(f"{source}: {label} → {status} {str(body)[:160]}")
            return
        if expect is not None and status not in expect:
            self.expected_status_misses += 1
            self.violation(
                f"{source}: {label} → {status}, expected {sorted(expect)}: {str(body)[:160]}"
            )
        if status == 404 and doc == GATEWAY_NOT_FOUND:
            self.shaped_4xx += 1  # no route matched: the gateway's own documented answer
        elif 400 <= status < 500:
            problem = error_shape_problem(doc)
            if problem:
                self.unshaped_4xx += 1
                self.violation(f"{source}: {label} → {status} {problem}: {str(body)[:160]}")
            else:
                self.shaped_4xx += 1
        elif status == 200 and instances is not None:
            problem = prediction_problem(doc, instances)
            if problem:
                self.violation(f"{source}: {label} → 200 {problem}")

    def intent_figures(self) -> dict[str, Any]:
        """Valid requests and bad inputs counted apart, each with the answers it got."""
        out: dict[str, Any] = {}
        for intent, title in (
            ("valid", "valid requests (known good)"),
            ("bad", "bad inputs (known bad)"),
            ("undetermined", "generated, the API's verdict decides"),
        ):
            counts = {c: n for (i, c), n in sorted(self.by_intent.items()) if i == intent}
            out[title] = sum(counts.values())
            out[f"{title} → answers"] = ", ".join(f"{c} {n:,}" for c, n in counts.items()) or "-"
        return out

    def to(self, result: PropertyResult) -> None:
        by_class = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        result.figures.update(
            {
                "requests (all)": self.requests,
                **self.intent_figures(),
                "handler (Hypothesis)": self.by_source["hypothesis"],
                "HTTP (Schemathesis)": self.by_source["schemathesis"],
                "HTTP (over 6 MB)": self.by_source["oversize"],
                "2xx": by_class["2xx"],
                "4xx": by_class["4xx"],
                "5xx": self.server_errors,
                "unhandled exceptions": self.unhandled,
                "transport errors": self.transport_errors,
                "4xx with documented shape": self.shaped_4xx,
                "4xx without it": self.unshaped_4xx,
                "known-answer misses": self.expected_status_misses,
                "Schemathesis check failures": sum(self.schemathesis_failures.values()),
                "over 6 MB → clean 413": f"{self.oversize_clean_413}/{self.oversize_sent}",
                "429 from the local gate, sent again": self.throttled_retried,
            }
        )
        result.emulator_only.update(
            {
                "HTTP (over 6 MB)": "the local API reads the oversized body itself",
                "over 6 MB → clean 413": "the local API builds this 413; on AWS API Gateway "
                "and Lambda's payload limit answer first, in their own shape",
                "429 from the local gate, sent again": "throttling by the local API's gate "
                "(the stage's configured rate and burst, emulated)",
            }
        )
        result.violations.extend(
            f"{message} (×{count})" if count > 1 else message
            for message, count in self.violations.items()
        )


def error_shape_problem(doc: Any) -> str | None:
    """Why `doc` is not `{"error": CODE, "message": "…", "details": [...]}`, or None."""
    if not isinstance(doc, dict):
        return "is not a JSON object"
    if set(doc) != {"error", "message", "details"}:
        return f"has keys {sorted(doc)}"
    if doc["error"] not in _documented_codes():
        return f"has undocumented code {doc['error']!r}"
    if not isinstance(doc["message"], str) or not doc["message"]:
        return "has no message"
    details = doc["details"]
    if not isinstance(details, list) or not all(
        isinstance(d, dict) and isinstance(d.get("problem"), str) and d.get("message")
        for d in details
    ):
        return "has malformed details"
    return None


def prediction_problem(doc: Any, instances: int) -> str | None:
    """Why a 200 predict body is not one prediction per instance from one version, or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("predictions"), list):
        return "has no predictions"
    if not isinstance(doc.get("version"), int) or doc.get("model") != MODEL:
        return f"names model {doc.get('model')!r} v{doc.get('version')!r}"
    preds = doc["predictions"]
    if len(preds) != instances:
        return f"{len(preds)} predictions for {instances} instances"
    for p in preds:
        score = p.get("score") if isinstance(p, dict) else None
        if not isinstance(score, float) or not 0.0 <= score <= 1.0 or p.get("label") not in (0, 1):
            return f"bad prediction {p!r}"
    return None


def send_event(invoke: Invoke, routes: Any, req: Request, tally: ResponseTally) -> None:
    """Build the payload-2.0 event of `req`, invoke, and judge the response."""
    from ferry_local.events import http_api_event

    event = http_api_event(req.method, req.path, req.body, req.query, routes=routes)
    if req.base64:
        event["isBase64Encoded"] = True
    try:
        response = invoke(event)
    except Exception as exc:  # escaped the handler: the worst case this property looks for
        tally.requests += 1
        tally.by_source["hypothesis"] += 1
        tally.by_intent[req.intent, "5xx"] += 1
        tally.unhandled += 1
        tally.statuses[500] += 1
        tally.violation(f"hypothesis: {req.label} raised {type(exc).__name__}: {exc}"[:300])
        return
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        tally.requests += 1
        tally.by_source["hypothesis"] += 1
        tally.by_intent[req.intent, "5xx"] += 1
        tally.statuses[502] += 1
        tally.violation(f"hypothesis: {req.label} → not a payload-2.0 response: {response!r}"[:300])
        return
    content_type = (response.get("headers") or {}).get("Content-Type")
    if content_type != "application/json":
        tally.violation(f"hypothesis: {req.label} → Content-Type {content_type!r}")
    tally.judge(
        "hypothesis",
        req.label,
        response["statusCode"],
        response.get("body") or "",
        req.expect,
        req.instances,
        req.intent,
    )


def fuzz_handler(examples: int, invoke: Invoke, routes: Any, tally: ResponseTally) -> None:
    """Run `examples` Hypothesis-generated requests through `invoke` (never stops early)."""
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(req=request_strategy())
    def one(req: Request) -> None:
        send_event(invoke, routes, req, tally)

    one()
    # Fixed cases Hypothesis would rarely draw: a body over 1 MiB is within the API's promise
    # (checked, not refused for its size); bodies past Lambda's 6 MB are a clean 413.
    big = json.dumps({"instances": [{"x": "y" * (LAMBDA_SYNC_LIMIT + 10)}]})
    for label, body, b64, expect in (
        ("1.1 MB body", json.dumps({"instances": [{"x": "y" * 1_100_000}]}), False, 422),
        ("body over 6 MB", big, False, 413),
        ("base64 body over 6 MB", base64.b64encode(big.encode()).decode(), True, 413),
    ):
        req = Request(label, "POST", PREDICT, body, None, b64, frozenset({expect}))
        send_event(invoke, routes, req, tally)


@contextlib.contextmanager
def handler_under_moto() -> Iterator[tuple[Invoke, Any]]:
    """The real scoring handler in this process, with the model registered under moto."""
    from ferry_local.events import LambdaContext

    with registered_handler(small_model(), MODEL) as handler:
        # Refusals log a line each (and exceptions at ERROR, kept); EMF goes to stdout.
        level = handler.logger.log_level
        handler.logger.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                # Powertools warns about odd model names used as metric dimensions.
                warnings.filterwarnings("ignore", module="aws_lambda_powertools")
                yield (lambda event: handler.lambda_handler(event, LambdaContext())), handler.ROUTES
        finally:
            handler.logger.setLevel(level)


# -- 2. Schemathesis against the local HTTP API ----------------------------------------------


def schema_intent(case: Any) -> str:
    """A negative case breaks the OpenAPI schema: bad. A positive one keeps it, yet may still
    name an unknown model or break a rule the schema cannot say: the API's verdict decides."""
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(getattr(meta, "generation", None), "mode", None), "value", None)
    return "bad" if mode == "negative" else "undetermined"


def fuzz_http(api_url: str, examples: int, tally: ResponseTally, auth: Any = None) -> None:
    """Schemathesis cases from the API's own OpenAPI document, sent to `api_url`, signed by
    `auth` (a `requests` auth); a case the stage throttles (429) is sent again after a pause,
    as a client that honours throttling does."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    with requests.get(f"{api_url}/v1/openapi.json", timeout=30, auth=auth) as resp:
        resp.raise_for_status()
        document = resp.json()
    schema = schemathesis.openapi.from_dict(document)
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )
    checks = (
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    )
    session = requests.Session()
    session.auth = auth

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, real_model=st.booleans())
    def one(case: Any, real_model: bool) -> None:
        if real_model and "model" in (case.path_parameters or {}):
            case.path_parameters["model"] = MODEL  # reach the model, not only 404s
        label = f"{case.method} {case.path}"
        intent = schema_intent(case)
        try:
            response = case.call(base_url=api_url, session=session, timeout=60)
            for attempt in range(1, THROTTLE_RETRIES + 1):
                if response.status_code != 429:
                    break
                tally.throttled_retried += 1
                time.sleep(0.2 * attempt)
                response = case.call(base_url=api_url, session=session, timeout=60)
        except Exception as exc:
            tally.requests += 1
            tally.by_source["schemathesis"] += 1
            tally.by_intent[intent, "no answer"] += 1
            tally.transport_errors += 1
            tally.violation(f"schemathesis: {label} failed in transport: {exc}"[:300])
            return
        tally.judge("schemathesis", label, response.status_code, response.content, intent=intent)
        for check in checks:
            try:
                case.validate_response(response, checks=[check])
            except BaseException as exc:  # a FailureGroup (an ExceptionGroup)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                # 413 is the API's documented refusal of too many instances (DESIGN.md 3.1).
                if check is negative_data_rejection and response.status_code == 413:
                    continue
                tally.schemathesis_failures[check.__name__] += 1
                first = str(exc).strip().splitlines()
                tally.violation(
                    f"schemathesis {check.__name__}: {label} → {response.status_code}: "
                    f"{first[0] if first else type(exc).__name__}"
                )

    one()


# -- 3. Bodies over the Lambda synchronous limit, over HTTP ----------------------------------


def oversize_bodies(api_url: str, tally: ResponseTally, sizes: tuple[int, ...]) -> None:
    """POST bodies of `sizes` bytes (and one chunked): each must be a readable 413."""
    split = urlsplit(api_url)
    for size, chunked in [*((s, False) for s in sizes), (LAMBDA_SYNC_LIMIT + 4096, True)]:
        head = b'{"instances": [{"x": "'
        tail = b'"}]}'
        filler = size - len(head) - len(tail)
        label = f"{size:,}-byte body" + (" (chunked)" if chunked else "")
        tally.oversize_sent += 1
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=120)
        try:
            if chunked:
                block = b"y" * (1 << 20)
                parts = [head, *[block] * (filler >> 20), b"y" * (filler & ((1 << 20) - 1)), tail]
                conn.request("POST", PREDICT, body=iter(parts), encode_chunked=True)
            else:
                conn.request("POST", PREDICT, body=head + b"y" * filler + tail)
            response = conn.getresponse()
            status, payload = response.status, response.read()
        except OSError as exc:
            tally.requests += 1
            tally.by_source["oversize"] += 1
            tally.by_intent["bad", "no answer"] += 1
            tally.transport_errors += 1
            tally.violation(f"oversize: {label} got no response: {exc!r}")
            continue
        finally:
            conn.close()
        tally.judge("oversize", label, status, payload, frozenset({413}), intent="bad")
        try:
            code = json.loads(payload).get("error")
        except (ValueError, AttributeError):
            code = None
        if status == 413 and code == "too_large":
            tally.oversize_clean_413 += 1


# -- the property -----------------------------------------------------------------------------


def run(
    mode: Mode,
    result: PropertyResult,
    api_url: str | None = None,
    invoke: tuple[Invoke, Any] | None = None,
) -> ResponseTally:
    """Run the three parts; `api_url` targets a running API, `invoke` a given handler."""
    handler_examples = mode.size(800, 7500)  # ~200 requests/s in-process
    http_examples = mode.size(120, 3000)  # ~45 requests/s through the local HTTP API
    oversize = (LAMBDA_SYNC_LIMIT + 1, 10_000_000) + ((64_000_000,) if mode.long else ())
    tally = ResponseTally()
    started = time.perf_counter()
    if invoke is None:
        with handler_under_moto() as real:
            fuzz_handler(handler_examples, real[0], real[1], tally)
    else:
        fuzz_handler(handler_examples, invoke[0], invoke[1], tally)
    handler_s = time.perf_counter() - started
    auth = None
    with contextlib.ExitStack() as stack:
        if api_url is None:
            platform = stack.enter_context(local_platform())
            platform.register(small_model(), MODEL)
            api_url, auth = platform.api_url, platform.auth()
        started = time.perf_counter()
        fuzz_http(api_url, http_examples, tally, auth)
        oversize_bodies(api_url, tally, oversize)
        http_s = time.perf_counter() - started
    tally.to(result)
    result.figures["handler phase s"] = round(handler_s, 1)
    result.figures["HTTP phase s"] = round(http_s, 1)
    return tally


@prop(1, "Bad input never reaches a 500")
def check(mode: Mode, result: PropertyResult) -> None:
    """Hypothesis on the handler, Schemathesis on the local HTTP API, bodies over 6 MB."""
    run(mode, result)
