"""EnvironmentConfig: invalid environments fail at synth, before anything is deployed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infra.config import ENVIRONMENTS, EnvironmentConfig, PipelineConfig, crosses_accounts

CONNECTION = "arn:aws:codestar-connections:eu-west-1:111111111111:connection/0a1b2c3d-4e5f"


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


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"source": "connection", "repository": "acme/ferry"}, "needs connection_arn"),
        (
            {"source": "connection", "repository": "ferry", "connection_arn": CONNECTION},
            "'owner/name'",
        ),
        (
            {"source": "codecommit", "repository": "ferry", "connection_arn": CONNECTION},
            "no connection_arn",
        ),
        ({"source": "codecommit", "repository": "acme/ferry"}, "takes a repository name"),
        ({"source": "github", "repository": "acme/ferry"}, "'connection' or 'codecommit'"),
        (
            {"source": "connection", "repository": "acme/ferry", "connection_arn": "arn:aws:x"},
            "String should match pattern",
        ),
    ],
)
def test_incomplete_pipeline_sources_are_rejected(fields: dict[str, Any], message: str) -> None:
    """
    Given a pipeline source missing what its kind needs, or carrying what it cannot use
    When it is validated
    Then validation fails, naming the problem
    """
    with pytest.raises(ValidationError, match=message):
        PipelineConfig.model_validate({"region": "eu-west-1", **fields})


def _pipeline(account: str | None) -> PipelineConfig:
    region = ENVIRONMENTS["dev"].region
    return PipelineConfig(account=account, region=region, source="codecommit", repository="ferry")


@pytest.mark.parametrize(
    ("pipeline_account", "env_accounts", "crosses"),
    [
        (None, (None, None), False),
        ("111111111111", (None, None), False),
        ("111111111111", ("111111111111", None), False),
        ("111111111111", (None, "222222222222"), True),
        ("111111111111", ("222222222222", "333333333333"), True),
    ],
)
def test_pipeline_crosses_accounts_when_a_target_is_another_account(
    pipeline_account: str | None, env_accounts: tuple[str | None, str | None], crosses: bool
) -> None:
    """
    Given the pipeline's account and the accounts dev and prod name (None = the pipeline's)
    When I ask whether the pipeline deploys across accounts
    Then it does exactly when an environment names an account other than the pipeline's
    """
    environments = {
        name: config.model_copy(update={"account": account})
        for (name, config), account in zip(ENVIRONMENTS.items(), env_accounts, strict=True)
    }
    assert crosses_accounts(_pipeline(pipeline_account), environments) is crosses


def test_pipeline_without_an_account_cannot_target_a_named_one() -> None:
    """
    Given an environment that names its account and a pipeline that does not name its own
    When I ask whether the pipeline crosses accounts
    Then it fails: the accounts cannot be compared, nor the target's deploy roles trusted
    """
    environments = {"dev": _dev_with(account="222222222222")}
    with pytest.raises(ValueError, match="name the pipeline's account"):
        crosses_accounts(_pipeline(None), environments)


def test_pipeline_releases_only_in_its_own_region() -> None:
    """
    Given an environment in another region than the pipeline's
    When I ask whether the pipeline crosses accounts
    Then it fails, naming the region: cross-region stages are not supported
    """
    environments = {"dev": _dev_with(region="eu-central-1")}
    with pytest.raises(ValueError, match=r"only in its region .*eu-central-1"):
        crosses_accounts(_pipeline("111111111111"), environments)
