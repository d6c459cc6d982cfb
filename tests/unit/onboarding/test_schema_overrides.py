"""Schema overrides: `--feature` specs and partial schema files, merged and held to the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ferry_core.onboarding.intake import IntakeError, infer_schema
from ferry_core.onboarding.overrides import (
    SPEC_HELP,
    FeatureOverride,
    OverrideError,
    merge,
    overrides_from_json,
    parse_feature_spec,
    parse_feature_specs,
)
from ferry_core.onboarding.use_cases import RegistrationRequest, schema_overrides

# -- the --feature spec and its split rule ------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("age=integer", {"name": "age", "type": "integer"}),
        (
            "mean radius=number,min=0,max=50.5",
            {"name": "mean radius", "type": "number", "minimum": 0.0, "maximum": 50.5},
        ),
        ("a,b=category", {"name": "a,b", "type": "category"}),
        ("x=y=number", {"name": "x=y", "type": "number"}),
        ("a=b,c=integer,min=0", {"name": "a=b,c", "type": "integer", "minimum": 0.0}),
        ("odd=integer,n=number,nullable", {"name": "odd=integer,n", "type": "number",
                                           "nullable": True}),
        ("flag=boolean,nullable=false", {"name": "flag", "type": "boolean", "nullable": False}),
        ("Ünï cödé=number,max=none,out_of_range=reject",
         {"name": "Ünï cödé", "type": "number", "maximum": None, "out_of_range": "reject"}),
        ("integer=integer", {"name": "integer", "type": "integer"}),
        ("v=numbers=number,min=-1e3", {"name": "v=numbers", "type": "number", "minimum": -1000}),
    ],
)  # fmt: skip
def test_the_name_is_everything_before_the_last_equals_a_known_type(
    spec: str, expected: dict[str, Any]
) -> None:
    """Names hold spaces, commas and `=`; no option value is a type name, so the last
    `=TYPE` followed by a comma or the end is always the separator."""
    assert parse_feature_spec(spec).model_dump(exclude_unset=True) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mean radius=float", SPEC_HELP),
        ("=number", SPEC_HELP),
        ("age", SPEC_HELP),
        ("x=number,min=abc", "min must be a finite number, not 'abc'"),
        ("x=number,max=inf", "max must be a finite number, not 'inf'"),
        ("x=number,colour=red", "unknown option 'colour=red'"),
        ("x=number,", "unknown option ''"),
        ("x=number,nullable=maybe", "unknown option 'nullable=maybe'"),
        ("x=number,min=1,min=2", "min is given twice"),
    ],
)
def test_a_malformed_spec_is_refused_with_the_grammar(spec: str, message: str) -> None:
    with pytest.raises(OverrideError) as refused:
        parse_feature_spec(spec)
    assert message in refused.value.message and repr(spec) in refused.value.message


def test_a_feature_given_twice_on_the_command_line_is_refused() -> None:
    with pytest.raises(OverrideError, match="'a,b' is given twice"):
        parse_feature_specs(["a,b=category", "a,b=number"])


# -- the partial schema file and the merge -------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"features": [{"name": "x", "maximum": 9}]},
        {"input_schema": {"features": [{"name": "x", "maximum": 9}]}},
        [{"name": "x", "maximum": 9}],
    ],
)
def test_a_partial_schema_file_takes_the_schema_shapes(doc: Any) -> None:
    (found,) = overrides_from_json(json.dumps(doc).encode(), "o.json")
    assert found.model_dump(exclude_unset=True) == {"name": "x", "maximum": 9.0}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"{", "o.json: not JSON"),
        (b'{"features": 3}', 'expected {"features"'),
        (b'{"features": [{"name": "x", "onnx_input": "y"}]}', "features[0]: onnx_input"),
        (b'{"features": [{"name": "x", "type": "float"}]}', "features[0]: type"),
        (b'[{"name": "x"}, {"name": "x", "nullable": true}]', "'x' is given twice"),
    ],
)
def test_a_bad_schema_file_is_refused_naming_the_entry(doc: bytes, message: str) -> None:
    with pytest.raises(OverrideError, match=r"o\.json") as refused:
        overrides_from_json(doc, "o.json")
    assert message in refused.value.message


def test_command_line_fields_win_over_the_files_and_the_rest_is_kept() -> None:
    from_file = [FeatureOverride(name="x", type="number", minimum=0, maximum=9)]
    from_cli = [parse_feature_spec("x=integer,max=5"), parse_feature_spec("y=boolean")]
    merged = merge(from_file, from_cli)
    assert merged["x"].model_dump(exclude_unset=True) == {
        "name": "x",
        "type": "integer",
        "minimum": 0.0,
        "maximum": 5.0,
    }
    assert merged["y"].type == "boolean"


def test_the_request_merges_its_file_under_its_features(tmp_path: Path) -> None:
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps({"features": [{"name": "a,b", "nullable": True, "maximum": 3}]}))
    req = RegistrationRequest(
        name="m",
        features=parse_feature_specs(["a,b=number,max=4"]),
        schema_overrides=str(path),
    )
    merged = schema_overrides(req, s3=None)
    assert merged["a,b"].fields() == {"type": "number", "nullable": True, "maximum": 4.0}


def test_overrides_adjust_an_inferred_schema_only() -> None:
    req = RegistrationRequest(
        name="m", onnx="m.onnx", schema="s.json", features=[FeatureOverride(name="x")]
    )
    assert req.problem() == (
        "--feature and --schema-overrides adjust the inferred schema: not with --schema"
    )


# -- overrides held to the data -------------------------------------------------------------------

FRAME = pd.DataFrame(
    {
        "weight kg": [50.0, 53.5, 70.0],
        "a=b, c": [1, 5, 9],
        "mean radius": [10.0, np.nan, 12.0],
        "colour": ["red", "blue", "red"],
        "flag": [True, False, True],
    }
)


def _schema(*specs: str, extra: list[FeatureOverride] | None = None) -> Any:
    return infer_schema([FRAME], list(FRAME), merge(extra or [], parse_feature_specs(specs)))


def test_overrides_reach_the_card_for_names_with_spaces_commas_and_equals() -> None:
    schema = _schema(
        "a=b, c=integer,min=0,max=10,out_of_range=reject",
        "weight kg=number,nullable",
        "colour=category",
        extra=[FeatureOverride(name="mean radius", maximum=None, description="from the scan")],
    )
    assert schema.feature("a=b, c").model_dump(exclude_none=True) == {
        "name": "a=b, c",
        "type": "integer",
        "minimum": 0.0,
        "maximum": 10.0,
        "nullable": False,
        "out_of_range": "reject",
    }
    assert schema.feature("weight kg").nullable is True
    radius = schema.feature("mean radius")
    assert (radius.minimum, radius.maximum, radius.nullable) == (10.0, None, True)
    assert radius.out_of_range == "clip_and_warn" and radius.description == "from the scan"


def test_declared_categories_may_widen_the_observed_ones() -> None:
    wider = FeatureOverride(name="colour", categories=["blue", "green", "red"])
    assert _schema(extra=[wider]).feature("colour").categories == ["blue", "green", "red"]


@pytest.mark.parametrize(
    ("spec", "extra", "message"),
    [
        ("weight kg=integer", None,
         "column 'weight kg' is declared integer but has fractional values (such as 53.5)"),
        ("a=b, c=integer,min=10,max=5", None,
         "column 'a=b, c': the minimum 10 is above the maximum 5"),
        ("a=b, c=integer,min=2", None, "column 'a=b, c' holds 1, below its declared minimum 2"),
        ("a=b, c=number,max=8.5", None, "column 'a=b, c' holds 9, above its declared maximum 8.5"),
        ("mean radius=number,nullable=false", None,
         "column 'mean radius' is declared not nullable but has 1 missing value(s)"),
        ("colour=boolean", None, "column 'colour' is declared boolean but holds 'red'"),
        ("colour=category,min=0", None,
         "column 'colour': category feature 'colour' cannot have minimum/maximum"),
        (None, FeatureOverride(name="colour", categories=["red"]),
         "column 'colour' holds 'blue', not one of its declared categories"),
        ("mean radus=number", None,
         "a schema override names no input column: 'mean radus' (close matches: 'mean radius')"),
        ("nothing like it=number", None,
         "a schema override names no input column: 'nothing like it'"),
    ],
)  # fmt: skip
def test_an_override_the_data_contradicts_is_refused_in_one_sentence(
    spec: str | None, extra: FeatureOverride | None, message: str
) -> None:
    specs = [spec] if spec else []
    with pytest.raises((OverrideError, IntakeError)) as refused:
        _schema(*specs, extra=[extra] if extra else None)
    assert refused.value.message == message
