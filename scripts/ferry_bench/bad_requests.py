"""The requests the bad-input property sends: every kind of bad (and some good) request a client
could send the scoring API, as Hypothesis strategies.

Where a strategy knows the right answer (not JSON → 400, 1,001 instances → 400, a wrong type →
422) the request carries it in `expect`; the judge holds the response to it.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ferry_bench.running_platform import valid_instances

MODEL = "credit-risk"
PREDICT = f"/v1/models/{MODEL}/predict"


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

    @property
    def intent(self) -> str:
        """What the generator made: a "valid" request (only a 200 is right), a "bad" one (a
        200 is wrong), or one it cannot tell ("undetermined": the API's verdict decides)."""
        if self.expect == frozenset({200}):
            return "valid"
        if self.expect is not None and 200 not in self.expect:
            return "bad"
        return "undetermined"


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def _predict(label: str, body: Any, **kw: Any) -> Request:
    return Request(label, "POST", PREDICT, body, **kw)


def _json_values() -> tuple[Any, Any]:
    """(any JSON value, NaN and 65-bit integers included; the values strict JSON reads back)."""
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
    return json_value, plain_json


def _body_requests(rows: list[dict[str, Any]]) -> list[Any]:
    """Well-formed JSON with wrong contents: types, fields, values, counts, nesting."""
    json_value, plain_json = _json_values()
    bad_number_text = st.sampled_from(
        ["1e400", "-1e400", "9" * 400, "NaN", "Infinity", "-Infinity", "1.7976931348623159e308"]
    )
    feature = st.sampled_from(sorted(rows[0]))
    row = st.sampled_from(rows)
    # A wrong type: a string or a container where a number or category is expected is 422.
    wrong_type = st.builds(
        lambda r, f, v: _predict(
            f"wrong type for {f}",
            _dumps({"instances": [{**r, f: v}]}),
            expect=frozenset({422}),
        ),
        row,
        feature,
        st.lists(plain_json, max_size=2) | st.dictionaries(st.text(max_size=3), plain_json),
    )
    unknown_field = st.builds(
        lambda r, name, v: _predict(
            "unknown field", _dumps({"instances": [{**r, name: v}]}), expect=frozenset({422})
        ),
        row,
        st.text(min_size=1, max_size=12).filter(lambda s: s not in rows[0]),
        plain_json,
    )
    mutated = st.builds(
        lambda r, f, v: _predict("mutated value", _dumps({"instances": [{**r, f: v}]})),
        row,
        feature,
        json_value,
    )
    missing = st.builds(
        lambda r, f: _predict(
            "missing field",
            _dumps({"instances": [{k: v for k, v in r.items() if k != f}]}),
            expect=frozenset({200, 422}),  # nullable features may be omitted
            instances=1,
        ),
        row,
        feature,
    )
    huge_number = st.builds(
        lambda r, f, text: _predict(
            "number outside a double",
            _dumps({"instances": [{**r, f: 0}]}).replace(f'"{f}": 0', f'"{f}": {text}'),
            expect=frozenset({400}),
        ),
        row,
        feature,
        bad_number_text,
    )
    count = st.sampled_from([0, 1000, 1001]).map(
        lambda n: _predict(
            f"{n} instances",
            _dumps({"instances": (rows * 6)[:n]}),
            expect=frozenset({200} if n == 1000 else {400}),
            instances=n if n == 1000 else None,
        )
    )
    good = st.lists(row, min_size=1, max_size=20).map(
        lambda rs: _predict(
            "valid instances",
            _dumps({"instances": rs}),
            expect=frozenset({200}),
            instances=len(rs),
        )
    )
    nested = st.builds(
        lambda depth, inside: _predict(
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
    return [wrong_type, unknown_field, mutated, missing, huge_number, count, good, nested]


def _encoding_requests(rows: list[dict[str, Any]]) -> list[Any]:
    """Bodies that are not the JSON they claim: arbitrary text and bytes, bad UTF-8, base64."""
    json_value, _ = _json_values()
    row = st.sampled_from(rows)
    arbitrary = st.one_of(
        json_value.map(lambda v: _predict("arbitrary JSON", _dumps(v))),
        json_value.map(lambda v: _predict('{"instances": arbitrary}', _dumps({"instances": v}))),
        st.dictionaries(st.text(max_size=10), json_value, max_size=4).map(
            lambda d: _predict("arbitrary object", _dumps(d))
        ),
        st.lists(st.dictionaries(st.text(max_size=8), json_value, max_size=4), max_size=3).map(
            lambda xs: _predict("arbitrary instances", _dumps({"instances": xs}))
        ),
        st.text(max_size=200).map(lambda t: _predict("arbitrary text", t)),
    )
    undecodable = st.binary(min_size=1, max_size=200).map(
        lambda b: _predict("raw bytes", b, expect=frozenset({400, 422}))
    )
    invalid_utf8 = row.map(
        lambda r: _predict(
            "invalid UTF-8 inside JSON",
            _dumps({"instances": [r]}).encode().replace(b'"car"', b'"c\xff\xfer"', 1)
            + (b"" if '"car"' in _dumps(r) else b"\xc3"),
            expect=frozenset({400}),
        )
    )
    b64_good = row.map(
        lambda r: _predict(
            "base64 of valid JSON",
            base64.b64encode(_dumps({"instances": [r]}).encode()).decode(),
            base64=True,
            expect=frozenset({200}),
            instances=1,
        )
    )
    b64_bad = st.text(min_size=1, max_size=60).map(
        lambda t: _predict("base64 flag on non-base64", t, base64=True)
    )
    b64_garbage = st.binary(min_size=1, max_size=100).map(
        lambda b: _predict("base64 of raw bytes", base64.b64encode(b).decode(), base64=True)
    )
    return [arbitrary, undecodable, invalid_utf8, b64_good, b64_bad, b64_garbage]


def _odd_version_request(v: str, post: bool, r: dict[str, Any]) -> Request:
    """`version` must be 1-9 ASCII digits: other digits ("²", "١"), signs, 5,000 digits are 400."""
    ok = re.fullmatch(r"[0-9]{1,9}", v) is not None and int(v) >= 1
    if post:
        return _predict(
            "odd version",
            _dumps({"instances": [r]}),
            query={"version": v},
            expect=frozenset({200, 404} if ok else {400}),
            instances=1,
        )
    path = f"/v1/models/{MODEL}"
    expect = frozenset({200, 404} if ok else {400})
    return Request("odd version", "GET", path, None, {"version": v}, expect=expect)


def _routing_requests(rows: list[dict[str, Any]]) -> list[Any]:
    """Odd query strings, versions, model names, methods and paths."""
    row = st.sampled_from(rows)
    query = st.dictionaries(
        st.sampled_from(["version", "stage", "x", ""]) | st.text(max_size=5),
        st.sampled_from(["1", "0", "-1", "²", "١", "9" * 5000, "staging", "production", ""])
        | st.text(max_size=12),
        max_size=3,
    )
    with_query = st.builds(
        lambda q, r, post: (
            _predict("odd query", _dumps({"instances": [r]}), query=q)
            if post
            else Request("odd query", "GET", f"/v1/models/{MODEL}", None, query=q)
        ),
        query,
        row,
        st.booleans(),
    )
    version_text = st.one_of(
        st.integers(min_value=-(10**12), max_value=10**12).map(str),
        st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=6),
        st.sampled_from(["1", "01", "0", "+1", " 1", "1.0", "1e3", "9" * 5000, "²", ""]),
        st.text(max_size=8),
    )

    odd_version = st.builds(_odd_version_request, version_text, st.booleans(), row)
    segment = st.text(min_size=1, max_size=80).map(lambda s: s.replace("/", "%2F"))
    odd_model = st.builds(
        lambda name, r, post: Request(
            "odd model name",
            "POST" if post else "GET",
            f"/v1/models/{name}" + ("/predict" if post else ""),
            _dumps({"instances": [r]}) if post else None,
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
    return [with_query, odd_version, odd_model, odd_route]


def request_strategy() -> Any:
    """Every kind of bad (and some good) request a client could send the scoring API."""
    rows = valid_instances()
    return st.one_of(*_body_requests(rows), *_encoding_requests(rows), *_routing_requests(rows))
