"""Each function's environment in the templates is exactly what its settings model reads.

A variable infra sets but no settings model reads is dead configuration (or a typo that leaves
the real setting at its default); a required field infra never sets fails the function at its
first start. Both are caught here, for every Lambda function of both templates.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel, Field

from ferry_core.batch.settings import BatchEnvironment
from ferry_core.registry.governance import GovernanceSettings
from ferry_core.retrain.gate.policy import ValidationSettings
from ferry_core.retrain.training import TrainingSettings
from ferry_core.settings import DriftSettings, ScoringSettings

# Each function (its logical id without the hash) → the settings model its handler reads.
# The one place to update when a settings model moves in the core.
SETTINGS_BY_FUNCTION: dict[str, type[BaseModel]] = {
    "ScoringFunction": ScoringSettings,
    "GovernanceFunction": GovernanceSettings,
    "BatchFunction": BatchEnvironment,
    "BatchSplitFunction": BatchEnvironment,
    "BatchPartFunction": BatchEnvironment,
    "BatchMergeFunction": BatchEnvironment,
    "BatchFailFunction": BatchEnvironment,
    "MonitoringDriftFunction": DriftSettings,
    "RetrainTraining": TrainingSettings,
    "RetrainValidation": ValidationSettings,
}

# Read by Powertools itself (logger, metrics, tracer), never by a settings model.
POWERTOOLS_VARIABLES = frozenset(
    {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
)

_LOGICAL_ID = re.compile(r"^(?P<name>\w+?)[0-9A-F]{8}$")


def read_variables(model: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """(every variable `model` reads, those it requires), nested models included."""
    names: set[str] = set()
    required: set[str] = set()
    for field in model.model_fields.values():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            inner_names, inner_required = read_variables(nested)
            names |= inner_names
            required |= inner_required
        elif field.alias:
            names.add(field.alias)
            if field.is_required():
                required.add(field.alias)
    return frozenset(names), frozenset(required)


def mismatches(variables: set[str], model: type[BaseModel]) -> list[str]:
    """What is wrong between the variables a function gets and what its model reads."""
    names, required = read_variables(model)
    problems = [
        f"{v} is set but never read" for v in sorted(variables - names - POWERTOOLS_VARIABLES)
    ]
    problems += [f"{v} is required but never set" for v in sorted(required - variables)]
    return problems


def _functions(template_json: dict[str, Any]) -> dict[str, set[str]]:
    """Each Lambda function's name (logical id without hash) → the variables it is given."""
    found: dict[str, set[str]] = {}
    for logical_id, resource in template_json["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        match = _LOGICAL_ID.match(logical_id)
        assert match, f"unexpected logical id {logical_id}"
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        found[match["name"]] = set(variables)
    return found


def test_every_function_has_a_settings_model(template_json: dict[str, Any]) -> None:
    """
    Given the synthesized template
    Then its Lambda functions are exactly those the mapping names, so none goes unchecked
    """
    assert sorted(_functions(template_json)) == sorted(SETTINGS_BY_FUNCTION)


@pytest.mark.parametrize("function", sorted(SETTINGS_BY_FUNCTION))
def test_environment_equals_what_the_settings_read(
    template_json: dict[str, Any], function: str
) -> None:
    """
    Given a function in the synthesized template and the settings model its handler reads
    Then every variable set is read by the model (or by Powertools),
        and every required field of the model is set
    """
    variables = _functions(template_json)[function]
    assert mismatches(variables, SETTINGS_BY_FUNCTION[function]) == []


def test_the_check_fails_both_ways() -> None:
    """
    Given a settings model with a required and a nested optional variable
    When a variable is set that it does not read, and its required one is missing
    Then both are reported; Powertools' variables and the nested one are accepted
    """

    class Inner(BaseModel):
        level: int = Field(default=1, alias="INNER_LEVEL")

    class Settings(BaseModel):
        bucket: str = Field(alias="BUCKET")
        inner: Inner = Field(default_factory=Inner)

    assert mismatches({"BUCKET", "INNER_LEVEL", "POWERTOOLS_LOG_LEVEL"}, Settings) == []
    assert mismatches({"BUCKT", "INNER_LEVEL"}, Settings) == [
        "BUCKT is set but never read",
        "BUCKET is required but never set",
    ]
