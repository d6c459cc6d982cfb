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
        {"name": "bad name", "type": "number"},
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
