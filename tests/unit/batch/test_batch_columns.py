"""The columnar validator gives each row exactly InstanceValidator's verdict and the same feeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry_core.batch.columns import ColumnarValidator, decode_text_row
from ferry_core.card import Feature, InputSchema
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA
from ferry_core.serving.validator import InstanceValidator

SCHEMA = InputSchema(
    features=[
        *CREDIT_RISK_SCHEMA.features,
        # An unbounded number and a clipped integer with one bound: the other corners.
        Feature(name="ratio", type="number", nullable=True),
        Feature(name="count", type="integer", minimum=0, out_of_range="clip_and_warn"),
        Feature(name="flag", type="boolean", nullable=True),
    ]
)
VALIDATOR = InstanceValidator(SCHEMA)
COLUMNS = ColumnarValidator(SCHEMA, VALIDATOR)


def _encode(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The feeds of inference.py's encoding convention: float32 with null → NaN; "" for null."""
    feeds = {}
    for f in SCHEMA.features:
        values = [r.get(f.name) for r in rows]
        if f.type == "category":
            feeds[f.name] = np.array(["" if v is None else v for v in values], dtype=object)
        else:
            feeds[f.name] = np.array([np.nan if v is None else v for v in values], np.float32)
    return {k: v.reshape(-1, 1) for k, v in feeds.items()}


def _assert_same_verdict(table: pa.Table, instances: list[Any], *, text: bool) -> None:
    reference = VALIDATOR.check(instances)
    ours = COLUMNS.check(table, text=text)
    accepted = ours.accepted
    assert np.flatnonzero(accepted).tolist() == reference.row_index
    # Problems: the same codes, fields and messages, row by row.
    expected = {}
    for i in reference.issues:
        expected.setdefault(i.instance, []).append((i.field, i.problem, i.message))
    got = {
        row: [(i.field, i.problem, i.message) for i in issues]
        for row, issues in ours.issues_by_row().items()
    }
    assert got == expected
    # The fast path is precise: it sends only rejected rows to the validator, except numerals
    # longer than 15 characters (float64 may round them) and integers that are not whole
    # numbers, which it never accepts itself (the validator's multiple_of check tolerates tiny
    # ones such as 1e-10); the exact path then gives the validator's verdict.
    exact_path = {
        r
        for r in reference.row_index
        for f in SCHEMA.features
        if (f.type == "integer" and isinstance(v := instances[r].get(f.name), float) and v % 1)
        or (text and f.type in ("number", "integer") and len(table[f.name][r].as_py()) > 15)
    }
    assert np.flatnonzero(ours.fast_ok).tolist() == [
        r for r in reference.row_index if r not in exact_path
    ]
    # Feeds and clip warnings of the accepted rows are what real-time scoring would use.
    fast_rows = [
        row for k, row in enumerate(reference.rows) if ours.fast_ok[reference.row_index[k]]
    ]
    if fast_rows:
        want = _encode(fast_rows)
        for name, feed in ours.fast_feeds.items():
            if feed.dtype == object:
                assert feed.ravel().tolist() == want[name].ravel().tolist(), name
            else:
                np.testing.assert_array_equal(feed, want[name], err_msg=name)
    slow_warnings = {
        int(ours.slow_index[i]): {w["field"] for w in ws}
        for i, ws in zip(ours.slow.row_index, ours.slow.warnings, strict=True)
    }
    for k, row in enumerate(reference.row_index):
        fields = {w["field"] for w in reference.warnings[k]}
        fast = {name for name, m in ours.clipped.items() if m[row]}
        assert fields == slow_warnings.get(row, fast)


# ---- CSV cells: text, as pyarrow reads it with every column a string ---------------------

_NUMERALS = st.one_of(
    st.integers(-(10**6), 10**7).map(str),
    st.floats(-1e7, 1e7, allow_nan=False).map(lambda x: f"{x:.6g}"),
    st.floats(-5, 400, allow_nan=False).map(lambda x: f"{x:.2f}"),
    st.sampled_from(
        ["18", "100", "17", "101", "0", "-0", "2.0", "2.0001", "30.5", "1e3", ".5", "5."]
    ),
)
_JUNK = st.sampled_from(
    ["", "abc", "nan", "NaN", "inf", "-Infinity", "1e400", "true", "False", "1", "0", " 5", "1_0",
     "car", "home", "boat", "salaried", "SALARIED", "12345678901234567890", "3.5e38", "-3.5e38"]
)  # fmt: skip
_CELL = st.one_of(_NUMERALS, _JUNK)


def _valid_cell(f: Feature) -> st.SearchStrategy[str]:
    """Cells that are (mostly) valid for a feature, near its bounds and its clip limits."""
    if f.type == "category":
        return st.sampled_from(f.categories or [])
    if f.type == "boolean":
        return st.sampled_from(["true", "false", "True", "FALSE", "1", "0"])
    lo = f.minimum if f.minimum is not None else -1e6
    hi = f.maximum if f.maximum is not None else 1e6
    if f.type == "integer":
        return st.integers(int(lo) - 2, int(hi) + 2).map(str)
    return st.floats(lo - 1, hi + 1).map(lambda x: f"{x:.4f}") | st.sampled_from([str(lo), str(hi)])


@st.composite
def _csv_rows(draw: st.DrawFn) -> list[dict[str, str]]:
    """Mostly valid rows; in each, up to two cells replaced by anything (valid or malformed)."""
    rows = []
    for _ in range(draw(st.integers(1, 25))):
        row = {f.name: draw(_valid_cell(f)) for f in SCHEMA.features}
        for name in draw(st.lists(st.sampled_from(list(row)), max_size=2)):
            row[name] = draw(_CELL)
        rows.append(row)
    return rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_csv_rows())
def test_csv_cells_get_the_validators_verdict(rows: list[dict[str, str]]) -> None:
    """
    Given CSV rows mixing valid values with every malformed kind (empty, wrong type, out of
        range, not finite, unknown category, non-whole integers, booleans as text)
    When the columnar validator checks them as string columns
    Then each row gets exactly the verdict, problems and feeds of InstanceValidator on the
        decoded row
    """
    table = pa.Table.from_pylist(
        rows, schema=pa.schema([(f.name, pa.string()) for f in SCHEMA.features])
    )
    _assert_same_verdict(table, [decode_text_row(SCHEMA, r) for r in rows], text=True)


# ---- Parquet columns: typed values ----------------------------------------------------------

_TYPED: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "int": (pa.int64(), st.integers(-(2**40), 2**40) | st.sampled_from([0, 17, 18, 100, 101])),
    "float": (
        pa.float64(),
        st.floats(allow_nan=True, allow_infinity=True)
        | st.sampled_from([18.0, 2.5, 0.5, 3.5e38, -0.0, 30.0]),
    ),
    "float32": (pa.float32(), st.floats(-1e6, 1e6, width=32)),
    "bool": (pa.bool_(), st.booleans()),
    "string": (pa.string(), st.sampled_from(["car", "home", "boat", "salaried", "", "42"])),
}


@st.composite
def _typed_table(draw: st.DrawFn) -> tuple[pa.Table, list[dict[str, Any]]]:
    n = draw(st.integers(1, 20))
    arrays, fields = [], []
    for f in SCHEMA.features:
        if f.nullable and draw(st.booleans()) and draw(st.booleans()):
            continue  # an absent nullable column
        natural = {"category": "string", "boolean": "bool", "integer": "int"}.get(f.type, "float")
        kind = natural if draw(st.integers(0, 5)) else draw(st.sampled_from(list(_TYPED)))
        arrow_type, values = _TYPED[kind]
        col = [draw(st.none() | values) if draw(st.integers(0, 9)) == 0 else draw(values)
               for _ in range(n)]  # fmt: skip
        arrays.append(pa.array(col, type=arrow_type))
        fields.append(f.name)
    table = pa.Table.from_arrays(arrays, names=fields) if fields else pa.table({})
    return table, table.to_pylist()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_typed_table())
def test_typed_columns_get_the_validators_verdict(case: tuple[pa.Table, list[dict]]) -> None:
    """
    Given Parquet-like columns of any Arrow type (ints, floats with NaN/inf, float32, booleans,
        strings), nulls, and absent nullable columns
    When the columnar validator checks them
    Then each row gets exactly InstanceValidator's verdict on `to_pylist()` of that row
    """
    table, instances = case
    if not table.num_columns:
        return
    _assert_same_verdict(table, instances, text=False)


def test_conservative_cases_go_to_the_validator_and_still_get_its_verdict() -> None:
    """
    Given numerals the fast path will not trust float64 with (long numerals, huge integers)
    When they are checked
    Then they take the exact path and get InstanceValidator's verdict all the same
    """
    good = {f.name: "" for f in SCHEMA.features} | {
        "age": "30", "loan_amount": "1000", "loan_term_months": "12", "debt_to_income": "0.5",
        "open_accounts": "3", "employment": "salaried", "prior_default": "0", "count": "1",
    }  # fmt: skip
    rows = [
        good,
        good | {"annual_income": "1000.00000000000000001"},
        good | {"ratio": "9" * 400},
        good | {"count": "123456789012345678901234567890"},
    ]
    table = pa.Table.from_pylist(rows)
    ours = COLUMNS.check(table, text=True)
    reference = VALIDATOR.check([decode_text_row(SCHEMA, r) for r in rows])
    assert ours.fast_ok.tolist() == [True, False, False, False]
    assert np.flatnonzero(ours.accepted).tolist() == reference.row_index == [0, 1, 3]
    ((row, issues),) = ours.issues_by_row().items()
    assert (row, [i.problem for i in issues]) == (2, ["out_of_range"])


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("", "missing"),
        ("abc", "wrong_type"),
        ("17", "out_of_range"),
        ("30.5", "wrong_type"),
        ("inf", "not_finite"),
        ("nan", "not_finite"),
        ("true", "wrong_type"),
    ],
)
def test_each_malformed_age_has_the_api_problem_code(cell: str, problem: str) -> None:
    """
    Given a CSV row whose age cell is malformed in one way
    When it is checked
    Then it is rejected with the problem code the API would give for that value
    """
    row = {f.name: "" for f in SCHEMA.features} | {
        "age": cell, "loan_amount": "1000", "loan_term_months": "12", "debt_to_income": "0.5",
        "open_accounts": "3", "employment": "salaried", "prior_default": "false", "count": "1",
    }  # fmt: skip
    ours = COLUMNS.check(pa.Table.from_pylist([row]), text=True)
    ((_, issues),) = ours.issues_by_row().items()
    assert [(i.field, i.problem) for i in issues] == [("age", problem)]
