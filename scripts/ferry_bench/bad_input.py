"""Property 1: bad input never reaches a 500, and every refusal has the documented shape.

Three sources of requests, all counted together:

1. Hypothesis bodies against the scoring handler in this process (payload-2.0 events, moto,
   a real registered model): arbitrary JSON, wrong shapes and types, huge numbers, NaN
   strings, unknown fields, 0 or 1,001 instances, deep nesting, invalid UTF-8, base64 bodies,
   odd query strings, model names, methods and paths. Where the generator knows the right
   answer (not JSON → 400, 1,001 instances → 413, a wrong type → 422) the status must be it.
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
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ferry_bench.properties import Mode, PropertyResult, prop

MODEL = "credit-risk"
PREDICT = f"/v1/models/{MODEL}/predict"
LAMBDA_SYNC_LIMIT = 6 * 1024 * 1024
STARTUP_TIMEOUT_S = 240
MAX_VIOLATIONS = 20  # distinct messages kept; the counts hold the totals

Invoke = Callable[[dict[str, Any]], Any]


# -- shared with properties 5 and 7: a small real model and a local platform ----------------


@cache
def small_model(seed: int = 11, trees: int = 15) -> Any:
    """A small credit-risk model (about 3 s to fit and convert), built once per process."""
    from ferry_core.builder import AGE_BANDS, CREDIT_RISK_SCHEMA, build, fit_credit_risk

    pipe, train, valid = fit_credit_risk(rows=1600, n_estimators=trees, seed=seed)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


@cache
def valid_instances(count: int = 200) -> list[dict[str, Any]]:
    """Applications the model has not seen (another seed than its training data)."""
    from ferry_core.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records

    return records(generate_credit_data(count, seed=2024), CREDIT_RISK_SCHEMA)


@dataclass
class Platform:
    """A running local platform, as its local.json describes it (API, AWS endpoint, outputs)."""

    api_url: str
    aws_endpoint_url: str
    outputs: dict[str, Any]
    region: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws_endpoint_url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def register(self, built: Any, name: str, production: bool = True) -> Any:
        """Register `built` as the next version of `name`; with `production`, point the (not
        yet set) production stage at it, as `ferry register` + a first promotion would."""
        from ferry_core.card import Lineage
        from ferry_core.registration import register_built
        from ferry_core.registry import RegistryWriter

        writer = RegistryWriter(self.client("dynamodb"), self.outputs["RegistryTableName"])
        bucket = self.outputs["ModelBucketName"]
        card = register_built(built, name, self.client("s3"), bucket, writer, Lineage())
        if production:
            writer.set_stage(name, "production", card.version, None, actor="reliability")
        return card


@contextlib.contextmanager
def local_platform() -> Iterator[Platform]:
    """`ferry local up` on free ports in a scratch state folder, stopped on exit.

    A child process, as tests/e2e/conftest.py starts it: its moto server and its in-process
    Lambda runtime stay apart from this process (which may run moto's in-process mock).
    """
    script = Path(sys.executable).parent / "ferry"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ferry_cli.main"]
    repo_root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="ferry-reliability-") as tmp:
        state = Path(tmp)
        log = (state / "ferry-local-up.log").open("ab")
        args = ["local", "up", "--api-port", "0", "--aws-port", "0", "--fresh"]
        process = subprocess.Popen(
            [*command, *args, "--state-dir", str(state)],
            cwd=repo_root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            local_json = state / "local.json"
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not local_json.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (state / "ferry-local-up.log").read_text()[-2000:]
                    raise RuntimeError(f"ferry local up did not come up:\n{tail}")
                time.sleep(0.2)
            info = json.loads(local_json.read_text())
            yield Platform(
                info["api_url"], info["aws_endpoint_url"], info["outputs"], info["region"]
            )
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


# -- what a response must look like -----------------------------------------------------------


def _documented_codes() -> frozenset[str]:
    from typing import get_args

    from ferry_core.api import ErrorBody

    codes = get_args(ErrorBody.model_fields["error"].annotation)
    return frozenset(codes) - {"internal_error"}


@dataclass
class Tally:
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
    ) -> None:
        """Count one response and record what is wrong with it, if anything."""
        self.requests += 1
        self.by_source[source] += 1
        self.statuses[status] += 1
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
        if 400 <= status < 500:
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

    def to(self, result: PropertyResult) -> None:
        by_class = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        result.figures.update(
            {
                "requests": self.requests,
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


# -- 1. Hypothesis against the handler --------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One generated request: the event's parts, and the statuses it must get (if known)."""

    label: str
    method: str
    path: str
    body: str | bytes | None
    query: dict[str, str] | None = None
    base64: bool = False
    expect: frozenset[int] | None = None
    instances: int | None = None


def request_strategy() -> Any:
    """Every kind of bad (and some good) request a client could send the scoring API."""
    from hypothesis import strategies as st

    rows = valid_instances()
    json_leaf = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=2**63 - 2, max_value=2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=30)
        | st.sampled_from(["NaN", "nan", "Infinity", "-inf", "1e999", "", " ", "0x10", "١٢"])
    )
    json_value = st.recursive(
        json_leaf,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )
    # Values any JSON encoder writes and strict JSON reads back (no NaN, no 65-bit integers).
    plain_json = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
    bad_number_text = st.sampled_from(
        ["1e400", "-1e400", "9" * 400, "NaN", "Infinity", "-Infinity", "1.7976931348623159e308"]
    )
    feature = st.sampled_from(sorted(rows[0]))
    row = st.sampled_from(rows)

    def dumps(value: Any) -> str:
        return json.dumps(value, allow_nan=True)

    def predict(label: str, body: Any, **kw: Any) -> Request:
        return Request(label, "POST", PREDICT, body, **kw)

    # A wrong type: a string or a container where a number or category is expected is 422.
    wrong_type = st.builds(
        lambda r, f, v: predict(
            f"wrong type for {f}",
            dumps({"instances": [{**r, f: v}]}),
            expect=frozenset({422}),
        ),
        row,
        feature,
        st.lists(plain_json, max_size=2) | st.dictionaries(st.text(max_size=3), plain_json),
    )
    unknown_field = st.builds(
        lambda r, name, v: predict(
            "unknown field", dumps({"instances": [{**r, name: v}]}), expect=frozenset({422})
        ),
        row,
        st.text(min_size=1, max_size=12).filter(lambda s: s not in rows[0]),
        plain_json,
    )
    mutated = st.builds(
        lambda r, f, v: predict("mutated value", dumps({"instances": [{**r, f: v}]})),
        row,
        feature,
        json_value,
    )
    missing = st.builds(
        lambda r, f: predict(
            "missing field",
            dumps({"instances": [{k: v for k, v in r.items() if k != f}]}),
            expect=frozenset({200, 422}),  # nullable features may be omitted
            instances=1,
        ),
        row,
        feature,
    )
    huge_number = st.builds(
        lambda r, f, text: predict(
            "number outside a double",
            dumps({"instances": [{**r, f: 0}]}).replace(f'"{f}": 0', f'"{f}": {text}'),
            expect=frozenset({400}),
        ),
        row,
        feature,
        bad_number_text,
    )
    count = st.sampled_from([0, 1000, 1001]).map(
        lambda n: predict(
            f"{n} instances",
            dumps({"instances": (rows * 6)[:n]}),
            expect=frozenset({200} if n == 1000 else {400} if n == 0 else {413}),
            instances=n if n == 1000 else None,
        )
    )
    good = st.lists(row, min_size=1, max_size=20).map(
        lambda rs: predict(
            "valid instances",
            dumps({"instances": rs}),
            expect=frozenset({200}),
            instances=len(rs),
        )
    )
    nested = st.builds(
        lambda depth, inside: predict(
            f"nesting depth {depth}",
            ('{"instances": [{"age": ' if inside else "")
            + "[" * depth
            + "]" * depth
            + ("}]}" if inside else ""),
            expect=frozenset({400, 422}),
        ),
        st.sampled_from([1, 64, 512, 1023, 1100, 20_000]),
        st.booleans(),
    )
    arbitrary = st.one_of(
        json_value.map(lambda v: predict("arbitrary JSON", dumps(v))),
        json_value.map(lambda v: predict('{"instances": arbitrary}', dumps({"instances": v}))),
        st.dictionaries(st.text(max_size=10), json_value, max_size=4).map(
            lambda d: predict("arbitrary object", dumps(d))
        ),
        st.lists(st.dictionaries(st.text(max_size=8), json_value, max_size=4), max_size=3).map(
            lambda xs: predict("arbitrary instances", dumps({"instances": xs}))
        ),
        st.text(max_size=200).map(lambda t: predict("arbitrary text", t)),
    )
    undecodable = st.binary(min_size=1, max_size=200).map(
        lambda b: predict("raw bytes", b, expect=frozenset({400, 422}))
    )
    invalid_utf8 = row.map(
        lambda r: predict(
            "invalid UTF-8 inside JSON",
            dumps({"instances": [r]}).encode().replace(b'"car"', b'"c\xff\xfer"', 1)
            + (b"" if '"car"' in dumps(r) else b"\xc3"),
            expect=frozenset({400}),
        )
    )
    b64_good = row.map(
        lambda r: predict(
            "base64 of valid JSON",
            base64.b64encode(dumps({"instances": [r]}).encode()).decode(),
            base64=True,
            expect=frozenset({200}),
            instances=1,
        )
    )
    b64_bad = st.text(min_size=1, max_size=60).map(
        lambda t: predict("base64 flag on non-base64", t, base64=True)
    )
    b64_garbage = st.binary(min_size=1, max_size=100).map(
        lambda b: predict("base64 of raw bytes", base64.b64encode(b).decode(), base64=True)
    )
    query = st.dictionaries(
        st.sampled_from(["version", "stage", "x", ""]) | st.text(max_size=5),
        st.sampled_from(["1", "0", "-1", "²", "١", "9" * 5000, "staging", "production", ""])
        | st.text(max_size=12),
        max_size=3,
    )
    with_query = st.builds(
        lambda q, r, post: (
            predict("odd query", dumps({"instances": [r]}), query=q)
            if post
            else Request("odd query", "GET", f"/v1/models/{MODEL}", None, query=q)
        ),
        query,
        row,
        st.booleans(),
    )
    # `version` must be 1-9 ASCII digits: other digits ("²", "١"), signs, 5,000 digits are 400.
    version_text = st.one_of(
        st.integers(min_value=-(10**12), max_value=10**12).map(str),
        st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=6),
        st.sampled_from(["1", "01", "0", "+1", " 1", "1.0", "1e3", "9" * 5000, "²", ""]),
        st.text(max_size=8),
    )

    def odd_version_request(v: str, post: bool, r: dict[str, Any]) -> Request:
        ok = re.fullmatch(r"[0-9]{1,9}", v) is not None and int(v) >= 1
        if post:
            return predict(
                "odd version",
                dumps({"instances": [r]}),
                query={"version": v},
                expect=frozenset({200, 404} if ok else {400}),
                instances=1,
            )
        path = f"/v1/models/{MODEL}"
        expect = frozenset({200, 404} if ok else {400})
        return Request("odd version", "GET", path, None, {"version": v}, expect=expect)

    odd_version = st.builds(odd_version_request, version_text, st.booleans(), row)
    segment = st.text(min_size=1, max_size=80).map(lambda s: s.replace("/", "%2F"))
    odd_model = st.builds(
        lambda name, r, post: Request(
            "odd model name",
            "POST" if post else "GET",
            f"/v1/models/{name}" + ("/predict" if post else ""),
            dumps({"instances": [r]}) if post else None,
        ),
        segment | st.sampled_from(["..", "%00", "x" * 3000, "CREDIT-RISK", "credit-risk "]),
        row,
        st.booleans(),
    )
    odd_route = st.builds(
        lambda method, path, body: Request("odd route", method, path, body),
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        st.sampled_from(["/", "/v1", "/v1/models/", "/health/", "/v1/openapi.json"])
        | st.text(max_size=40).map(lambda s: "/" + s),
        st.none() | st.text(max_size=40),
    )
    return st.one_of(
        wrong_type,
        unknown_field,
        mutated,
        missing,
        huge_number,
        count,
        good,
        nested,
        arbitrary,
        undecodable,
        invalid_utf8,
        b64_good,
        b64_bad,
        b64_garbage,
        with_query,
        odd_version,
        odd_model,
        odd_route,
    )


def send_event(invoke: Invoke, routes: Any, req: Request, tally: Tally) -> None:
    """Build the payload-2.0 event of `req`, invoke, and judge the response."""
    from ferry_cli.events import http_api_event

    event = http_api_event(req.method, req.path, req.body, req.query, routes=routes)
    if req.base64:
        event["isBase64Encoded"] = True
    try:
        response = invoke(event)
    except Exception as exc:  # escaped the handler: the worst case this property looks for
        tally.requests += 1
        tally.by_source["hypothesis"] += 1
        tally.unhandled += 1
        tally.statuses[500] += 1
        tally.violation(f"hypothesis: {req.label} raised {type(exc).__name__}: {exc}"[:300])
        return
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        tally.requests += 1
        tally.by_source["hypothesis"] += 1
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
    )


def fuzz_handler(examples: int, invoke: Invoke, routes: Any, tally: Tally) -> None:
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
    # Fixed cases Hypothesis would rarely draw: bodies past the API's and Lambda's limits.
    big = json.dumps({"instances": [{"x": "y" * (LAMBDA_SYNC_LIMIT + 10)}]})
    for label, body, b64 in (
        ("1.1 MB body", json.dumps({"instances": [{"x": "y" * 1_100_000}]}), False),
        ("body over 6 MB", big, False),
        ("base64 body over 6 MB", base64.b64encode(big.encode()).decode(), True),
    ):
        req = Request(label, "POST", PREDICT, body, None, b64, frozenset({413}))
        send_event(invoke, routes, req, tally)


@contextlib.contextmanager
def handler_under_moto() -> Iterator[tuple[Invoke, Any]]:
    """The real scoring handler in this process, with the model registered under moto."""
    from ferry_cli.events import LambdaContext
    from ferry_cli.functions import load_handler
    from ferry_cli.local_aws import clients, local_aws
    from ferry_core.card import Lineage
    from ferry_core.registration import register_built
    from ferry_core.registry import RegistryWriter

    built = small_model()
    with tempfile.TemporaryDirectory() as cache_dir, local_aws(cache_dir=cache_dir) as res:
        boto = clients()
        writer = RegistryWriter(boto["dynamodb"], res.registry_table)
        card = register_built(built, MODEL, boto["s3"], res.model_bucket, writer, Lineage())
        writer.set_stage(MODEL, "production", card.version, None, actor="reliability")
        handler = load_handler("scoring")
        handler.service.cache_clear()
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
            handler.service.cache_clear()


# -- 2. Schemathesis against the local HTTP API ----------------------------------------------


def fuzz_http(api_url: str, examples: int, tally: Tally) -> None:
    """Schemathesis cases from the API's own OpenAPI document, sent to `api_url`."""
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

    with requests.get(f"{api_url}/v1/openapi.json", timeout=30) as resp:
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
        try:
            response = case.call(base_url=api_url, session=session, timeout=60)
        except Exception as exc:
            tally.requests += 1
            tally.by_source["schemathesis"] += 1
            tally.transport_errors += 1
            tally.violation(f"schemathesis: {label} failed in transport: {exc}"[:300])
            return
        tally.judge("schemathesis", label, response.status_code, response.content)
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


def oversize_bodies(api_url: str, tally: Tally, sizes: tuple[int, ...]) -> None:
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
            tally.transport_errors += 1
            tally.violation(f"oversize: {label} got no response: {exc!r}")
            continue
        finally:
            conn.close()
        tally.judge("oversize", label, status, payload, frozenset({413}))
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
) -> Tally:
    """Run the three parts; `api_url` targets a running API, `invoke` a given handler."""
    handler_examples = mode.size(800, 7500)  # ~200 requests/s in-process
    http_examples = mode.size(120, 3000)  # ~45 requests/s through the local HTTP API
    oversize = (LAMBDA_SYNC_LIMIT + 1, 10_000_000) + ((64_000_000,) if mode.long else ())
    tally = Tally()
    started = time.perf_counter()
    if invoke is None:
        with handler_under_moto() as real:
            fuzz_handler(handler_examples, real[0], real[1], tally)
    else:
        fuzz_handler(handler_examples, invoke[0], invoke[1], tally)
    handler_s = time.perf_counter() - started
    with contextlib.ExitStack() as stack:
        if api_url is None:
            platform = stack.enter_context(local_platform())
            platform.register(small_model(), MODEL)
            api_url = platform.api_url
        started = time.perf_counter()
        fuzz_http(api_url, http_examples, tally)
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
