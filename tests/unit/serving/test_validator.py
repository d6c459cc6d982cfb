"""The validator gives every documented problem, with instance index and field."""

from __future__ import annotations

import math

import pytest

from ferry_core.card import InputSchema
from ferry_core.serving.validator import InstanceValidator

SCHEMA = InputSchema.model_validate(
    {
        "features": [
            {"name": "age", "type": "integer", "minimum": 18, "maximum": 100},
            {"name": "income", "type": "number", "minimum": 0, "nullable": True},
            {
                "name": "dti",
                "type": "number",
                "minimum": 0,
                "maximum": 2,
                "out_of_range": "clip_and_warn",
            },
            {
                "name": "purpose",
                "type": "category",
                "categories": ["car", "home"],
                "nullable": True,
            },
            {"name": "owner", "type": "boolean"},
        ]
    }
)
GOOD = {"age": 30, "income": 1000.0, "dti": 0.4, "purpose": "car", "owner": True}


@pytest.fixture(scope="module")
def validator() -> InstanceValidator:
    return InstanceValidator(SCHEMA)


def problems(validator: InstanceValidator, *instances: object) -> list[tuple[int, str | None, str]]:
    return [(i.instance, i.field, i.problem) for i in validator.check(list(instances)).issues]


def test_in_range_instance_passes_unchanged(validator: InstanceValidator) -> None:
    verdict = validator.check([GOOD])
    assert verdict.ok
    assert verdict.rows == [GOOD]
    assert verdict.warnings == [[]]


@pytest.mark.parametrize("age", [18, 100, 18.0, 100.0])
def test_bounds_are_inclusive_and_whole_floats_are_integers(
    validator: InstanceValidator, age: float
) -> None:
    assert validator.check([{**GOOD, "age": age}]).ok


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("age", 17, "out_of_range"),
        ("age", 101, "out_of_range"),
        ("age", 10**400, "out_of_range"),
        ("age", 30.5, "wrong_type"),
        ("age", 30.0000000001, "wrong_type"),
        ("age", 18 + 1e-10, "wrong_type"),
        ("age", "30", "wrong_type"),
        ("age", True, "wrong_type"),
        ("age", None, "missing"),
        ("age", math.nan, "not_finite"),
        ("income", -0.01, "out_of_range"),
        ("income", math.inf, "not_finite"),
        ("income", -math.inf, "not_finite"),
        ("income", 1e39, "out_of_range"),
        ("income", 10**400, "out_of_range"),
        ("income", "1000", "wrong_type"),
        ("income", [1], "wrong_type"),
        ("dti", math.nan, "not_finite"),
        ("dti", 1e39, "out_of_range"),
        ("purpose", "boat", "unknown_category"),
        ("purpose", "Car", "unknown_category"),
        ("purpose", 1, "wrong_type"),
        ("owner", 1, "wrong_type"),
        ("owner", "true", "wrong_type"),
        ("owner", None, "missing"),
    ],
)
def test_each_bad_value_gets_its_documented_problem(
    validator: InstanceValidator, field: str, value: object, problem: str
) -> None:
    assert problems(validator, {**GOOD, field: value}) == [(0, field, problem)]


def test_missing_required_field_and_unknown_field(validator: InstanceValidator) -> None:
    instance = {k: v for k, v in GOOD.items() if k != "age"} | {"colour": "red"}
    assert problems(validator, instance) == [(0, "age", "missing"), (0, "colour", "unknown_field")]


def test_nullable_fields_may_be_null_or_omitted(validator: InstanceValidator) -> None:
    verdict = validator.check([{"age": 40, "dti": 0.1, "owner": False, "income": None}])
    assert verdict.ok
    assert verdict.rows[0]["purpose"] is None and verdict.rows[0]["income"] is None


def test_clip_and_warn_clips_and_says_so(validator: InstanceValidator) -> None:
    verdict = validator.check([{**GOOD, "dti": 7.5}, {**GOOD, "dti": -1}])
    assert verdict.ok
    assert [r["dti"] for r in verdict.rows] == [2, 0]
    assert [w[0]["problem"] for w in verdict.warnings] == ["out_of_range", "out_of_range"]
    assert "clipped to 2" in verdict.warnings[0][0]["message"]


def test_instance_that_is_not_an_object(validator: InstanceValidator) -> None:
    assert problems(validator, GOOD, 5, "x", None) == [
        (1, None, "wrong_type"),
        (2, None, "wrong_type"),
        (3, None, "wrong_type"),
    ]


def test_problems_carry_instance_index_and_good_rows_survive(validator: InstanceValidator) -> None:
    verdict = validator.check([GOOD, {**GOOD, "age": 5}, GOOD, {**GOOD, "purpose": "boat"}])
    assert [(i.instance, i.field) for i in verdict.issues] == [(1, "age"), (3, "purpose")]
    assert verdict.row_index == [0, 2]
    assert len(verdict.rows) == len(verdict.warnings) == 2


def test_messages_stay_short_for_huge_values(validator: InstanceValidator) -> None:
    (issue,) = validator.check([{**GOOD, "age": 10**5000}]).issues
    assert len(issue.message) < 200 and "bits" in issue.message


def test_every_problem_in_one_instance_is_reported(validator: InstanceValidator) -> None:
    bad = {"age": "x", "income": math.nan, "dti": None, "purpose": "boat", "owner": 3, "z": 1}
    got = {(f, p) for _, f, p in problems(validator, bad)}
    assert got == {
        ("age", "wrong_type"),
        ("income", "not_finite"),
        ("dti", "missing"),
        ("purpose", "unknown_category"),
        ("owner", "wrong_type"),
        ("z", "unknown_field"),
    }


def test_many_instances_validate(validator: InstanceValidator) -> None:
    verdict = validator.check([GOOD] * 1000)
    assert verdict.ok and len(verdict.rows) == 1000
