"""EnvironmentConfig: invalid environments fail at synth, before anything is deployed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infra.config import ENVIRONMENTS, EnvironmentConfig


def _dev_with(**changes: Any) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(ENVIRONMENTS["dev"].model_dump() | changes)


def test_dev_and_prod_are_defined_and_differ_where_intended() -> None:
    """
    Given the shipped environments
    When I read them
    Then dev is disposable and ungated, prod is retained, approval-gated and kept warm
    """
    dev, prod = ENVIRONMENTS["dev"], ENVIRONMENTS["prod"]
    assert (dev.removal_policy, dev.approval_required) == ("destroy", False)
    assert (prod.removal_policy, prod.approval_required) == ("retain", True)
    assert dev.scoring_provisioned_concurrency == 0
    assert prod.scoring_provisioned_concurrency > 0
    assert dev.api_auth == prod.api_auth == "iam"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_auth": "jwt"}, "needs jwt_issuer"),
        ({"jwt_issuer": "https://issuer.example.com/"}, "only meaningful with api_auth='jwt'"),
        ({"log_retention_days": 10}, "log_retention_days must be one of"),
        (
            {"scoring_reserved_concurrency": 1, "scoring_provisioned_concurrency": 2},
            "exceeds scoring_reserved_concurrency",
        ),
        ({"scoring_timeout_seconds": 30}, "less than or equal to 29"),
        ({"removal_policy": "snapshot"}, "'destroy' or 'retain'"),
        ({"account": "12345"}, "String should match pattern"),
        ({"unknown_setting": 1}, "Extra inputs are not permitted"),
    ],
)
def test_inconsistent_settings_are_rejected(changes: dict[str, Any], message: str) -> None:
    """
    Given a dev config with one inconsistent or unknown setting
    When it is validated
    Then validation fails, naming the problem
    """
    with pytest.raises(ValidationError, match=message):
        _dev_with(**changes)


def test_jwt_settings_are_accepted_together() -> None:
    """
    Given api_auth='jwt' with an issuer and an audience
    When it is validated
    Then the config is valid
    """
    config = _dev_with(
        api_auth="jwt", jwt_issuer="https://issuer.example.com/", jwt_audience=("ferry",)
    )
    assert config.jwt_audience == ("ferry",)


def test_config_is_frozen() -> None:
    """
    Given a shipped environment
    When code tries to change a field
    Then it fails, so no construct can quietly diverge from the validated config
    """
    with pytest.raises(ValidationError):
        ENVIRONMENTS["prod"].removal_policy = "destroy"  # type: ignore[misc]
