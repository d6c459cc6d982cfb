"""The scoring HTTP API: the route table, authorization, throttling and access logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from app import feature_flags
from infra.api import GOVERNANCE_ROUTES, ROUTES
from infra.config import ENVIRONMENTS, EnvironmentConfig
from infra.stack import FerryStack


def _routes(template: Template) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template.find_resources("AWS::ApiGatewayV2::Route").values()]


def _stage(template: Template) -> dict[str, Any]:
    (stage,) = template.find_resources("AWS::ApiGatewayV2::Stage").values()
    return stage["Properties"]


def test_routes_are_exactly_the_contract_table(template: Template) -> None:
    """
    Given the route table in infra/api.py
    When I read the API's routes
    Then there is one plain AWS::ApiGatewayV2::Route per entry of the scoring and the
        governance tables, and no catch-all route
    """
    route_keys = sorted(route["RouteKey"] for route in _routes(template))
    assert route_keys == sorted(f"{m} {p}" for m, p in (*ROUTES, *GOVERNANCE_ROUTES))
    assert ("POST", "/v1/models/{model}/predict") in ROUTES
    assert "$default" not in route_keys


def test_every_route_requires_iam_auth_and_hits_the_scoring_alias(template: Template) -> None:
    """
    Given the default (IAM) auth setting
    When I follow every route to its integration
    Then each route requires AWS_IAM; the scoring routes share one payload-2.0 proxy to the
        `live` alias, the governance routes one to the governance function
    """
    (alias_id,) = template.find_resources("AWS::Lambda::Alias")
    governance_id = next(
        i for i in template.find_resources("AWS::Lambda::Function") if "GovernanceFunction" in i
    )
    integrations = template.find_resources("AWS::ApiGatewayV2::Integration")
    assert len(integrations) == 2
    by_target = {}
    for integration_id, integration in integrations.items():
        assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
        assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
        uri = json.dumps(integration["Properties"]["IntegrationUri"])
        target = "scoring" if alias_id in uri else "governance" if governance_id in uri else uri
        by_target[target] = {"Fn::Join": ["", ["integrations/", {"Ref": integration_id}]]}
    assert set(by_target) == {"scoring", "governance"}
    governed = {f"{m} {p}" for m, p in GOVERNANCE_ROUTES}
    for route in _routes(template):
        assert route["AuthorizationType"] == "AWS_IAM", route["RouteKey"]
        want = "governance" if route["RouteKey"] in governed else "scoring"
        assert route["Target"] == by_target[want], route["RouteKey"]
    assert not template.find_resources("AWS::ApiGatewayV2::Authorizer")


def test_default_stage_is_throttled_from_config(template: Template, env: str) -> None:
    """
    Given an environment's throttle settings
    When I read the API's only stage
    Then it is the auto-deployed $default stage with those rate and burst limits
    """
    config = ENVIRONMENTS[env]
    stage = _stage(template)
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": config.api_throttle_burst_limit,
        "ThrottlingRateLimit": config.api_throttle_rate_limit,
    }


def test_access_logs_are_json_in_a_retained_log_group(template: Template, env: str) -> None:
    """
    Given the API stage
    When I read its access-log settings
    Then every request is logged as a JSON object with request id, route, status and latency,
        into a log group kept for log_retention_days
    """
    settings = _stage(template)["AccessLogSettings"]
    groups = template.find_resources("AWS::Logs::LogGroup")
    (group_id,) = [i for i in groups if "ApiAccessLogs" in i]
    assert settings["DestinationArn"] == {"Fn::GetAtt": [group_id, "Arn"]}
    assert groups[group_id]["Properties"]["RetentionInDays"] == ENVIRONMENTS[env].log_retention_days
    fields = json.loads(settings["Format"])
    assert {"requestId", "routeKey", "status", "latency", "integrationError"} <= fields.keys()
    assert fields["requestId"] == "$context.requestId"


@pytest.fixture(scope="module")
def jwt_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A dev stack whose config switches the API to a JWT authorizer (no cdk-nag: shape only)."""
    config = EnvironmentConfig.model_validate(
        ENVIRONMENTS["dev"].model_dump()
        | {
            "api_auth": "jwt",
            "jwt_issuer": "https://issuer.example.com/",
            "jwt_audience": ("ferry-api",),
        }
    )
    outdir: Path = tmp_path_factory.mktemp("jwt")
    app = App(outdir=str(outdir), context=feature_flags())
    return Template.from_stack(FerryStack(app, config=config))


def test_jwt_config_puts_a_jwt_authorizer_on_every_route(jwt_template: Template) -> None:
    """
    Given a config with api_auth='jwt', an issuer and an audience
    When I synthesize the stack
    Then one JWT authorizer carries them and every scoring route uses it, while the
        governance routes stay IAM-authorized (the actor is a verified IAM principal)
    """
    authorizers = jwt_template.find_resources("AWS::ApiGatewayV2::Authorizer")
    ((authorizer_id, authorizer),) = authorizers.items()
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "Issuer": "https://issuer.example.com/",
        "Audience": ["ferry-api"],
    }
    routes = _routes(jwt_template)
    assert len(routes) == len(ROUTES) + len(GOVERNANCE_ROUTES)
    governed = {f"{m} {p}" for m, p in GOVERNANCE_ROUTES}
    for route in routes:
        if route["RouteKey"] in governed:
            assert route["AuthorizationType"] == "AWS_IAM", route["RouteKey"]
            continue
        assert route["AuthorizationType"] == "JWT", route["RouteKey"]
        assert route["AuthorizerId"] == {"Ref": authorizer_id}
