"""The input schema contract refuses incoherent schemas at registration, not at serving."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ferry_core.card import Feature, InputSchema


@pytest.mark.parametrize(
    "feature",
    [
        {"name": "p", "type": "category"},
        {"name": "p", "type": "category", "categories": []},
        {"name": "p", "type": "category", "categories": ["a", "a"]},
        {"name": "p", "type": "category", "categories": ["a"], "minimum": 0},
        {"name": "x", "type": "number", "categories": ["a"]},
        {"name": "x", "type": "number", "minimum": 2, "maximum": 1},
        {"name": "b", "type": "boolean", "maximum": 1},
        {"name": "x", "type": "float"},
        {"name": "x", "type": "number", "out_of_range": "ignore"},
        {"name": "", "type": "number"},
        {"name": "x" * 257, "type": "number"},
        {"name": "tab\there", "type": "number"},
        {"name": "line\nbreak", "type": "number"},
        {"name": " padded", "type": "number"},
        {"name": "x", "type": "number", "unknown": 1},
    ],
)
def test_incoherent_features_are_refused(feature: dict) -> None:
    with pytest.raises(ValidationError):
        Feature.model_validate(feature)


def test_duplicate_and_empty_feature_lists_are_refused() -> None:
    with pytest.raises(ValidationError):
        InputSchema.model_validate({"features": []})
    with pytest.raises(ValidationError):
        InputSchema.model_validate(
            {"features": [{"name": "x", "type": "number"}, {"name": "x", "type": "integer"}]}
        )


@pytest.mark.parametrize(
    "name", ["mean radius", "Ünïcode col", "a,b", 'say "hi"', "x" * 256, "50% of=income"]
)
def test_any_name_a_csv_header_holds_is_a_feature_name(name: str) -> None:
    assert Feature(name=name, type="number").name == name


def test_names_equal_after_nfc_normalisation_are_duplicates() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    with pytest.raises(ValidationError, match="the same name"):
        InputSchema.model_validate(
            {
                "features": [
                    {"name": composed, "type": "number"},
                    {"name": decomposed, "type": "number"},
                ]
            }
        )


def test_a_bad_name_is_refused_in_plain_words_naming_it() -> None:
    from ferry_core.errors import validation_message

    with pytest.raises(ValidationError) as caught:
        Feature(name="tab\there", type="number")
    message = validation_message(caught.value)
    assert "'tab\\there'" in message and "control character U+0009" in message
    assert "pydantic" not in message and "http" not in message


def test_graph_input_is_the_name_unless_mapped() -> None:
    assert Feature(name="mean radius", type="number").graph_input == "mean radius"
    mapped = Feature(name="mean radius", type="number", onnx_input="mean_radius")
    assert mapped.graph_input == "mean_radius"
    with pytest.raises(ValidationError, match="same ONNX graph input"):
        InputSchema(features=[mapped, Feature(name="mean_radius", type="number")])
