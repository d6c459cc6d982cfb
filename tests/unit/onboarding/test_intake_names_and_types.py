"""Registration takes column names as real data has them and types as the user declares them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from ferry_core.onboarding.intake import IntakeError, build_from_pipeline, infer_schema
from ferry_core.onboarding.overrides import FeatureOverride, OverrideError
from ferry_core.serving.validator import InstanceValidator


def test_a_pipeline_on_named_columns_registers_with_its_graph_inputs_mapped(
    named_built: Any,
) -> None:
    """skl2onnx renames `mean radius` to `mean_radius`; the card keeps the name and the map."""
    by_name = {f.name: f for f in named_built.schema.features}
    assert len(by_name) == 30 and named_built.parity["passed"]
    assert by_name["mean radius"].onnx_input == "mean_radius"
    assert by_name["a,b"].type == "category" and by_name["a,b"].graph_input == "a_b"
    assert "Ünïcode col" in named_built.baseline


def test_a_float_column_of_whole_values_stays_a_number_and_accepts_fractions(
    named_built: Any,
) -> None:
    feature = named_built.schema.feature("mean radius")
    assert feature.type == "number"
    row = {f.name: 1.0 for f in named_built.schema.features if f.type != "category"}
    verdict = InstanceValidator(named_built.schema).check(
        [{**row, "a,b": "small", "mean radius": 53.5}]
    )
    assert verdict.ok, verdict.issues


def test_an_integer_dtype_column_is_an_integer() -> None:
    frame = pd.DataFrame({"n": [1, 2, 3], "x": [1.0, 2.0, 3.0]})
    kinds = {f.name: f.type for f in infer_schema([frame], ["n", "x"]).features}
    assert kinds == {"n": "integer", "x": "number"}


def test_declared_types_win_over_the_data() -> None:
    frame = pd.DataFrame({"mean radius": [1, 2, 3], "code": [10, 20, 10]})
    declared = {
        "mean radius": FeatureOverride(name="mean radius", type="number"),
        "code": FeatureOverride(name="code", type="category"),
    }
    schema = infer_schema([frame], ["mean radius", "code"], declared)
    assert schema.feature("mean radius").type == "number"
    assert schema.feature("code").categories == ["10", "20"]


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("nope", OverrideError, "names no input column: 'nope'"),
        ("x", IntakeError, r"declared integer but has fractional values \(such as 1.5\)"),
    ],
)
def test_declared_types_that_do_not_fit_are_refused(name: str, error: type, message: str) -> None:
    frame = pd.DataFrame({"x": [1.5, 2.0]})
    with pytest.raises(error, match=message):
        infer_schema([frame], ["x"], {name: FeatureOverride(name=name, type="integer")})


@pytest.mark.parametrize(
    ("column", "problem"),
    [
        ("tab\there", r"control character U\+0009"),
        ("x" * 300, "at most 256"),
        (" x", "white space"),
    ],
)
def test_a_column_that_cannot_be_a_feature_is_named_in_plain_words(
    column: str, problem: str
) -> None:
    frame = pd.DataFrame({column: [1.0, 2.0]})
    with pytest.raises(IntakeError, match=problem) as caught:
        infer_schema([frame], [column])
    assert "pydantic" not in str(caught.value) and "http" not in str(caught.value)
    assert repr(column[:80]) in str(caught.value)


def test_a_schema_file_and_declared_types_are_not_both_taken(
    named_frames: tuple[Any, Any, Any], named_built: Any
) -> None:
    pipe, train, valid = named_frames
    with pytest.raises(IntakeError, match="schema file"):
        build_from_pipeline(
            pipe,
            train,
            valid,
            "target",
            schema=named_built.schema,
            overrides={"a,b": FeatureOverride(name="a,b", type="category")},
        )
