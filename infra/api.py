"""The stack's HTTP API: scoring and governance routes, every route authorized, throttled and
access-logged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import jsii
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

# The public contract (DESIGN.md 3.1). The local platform reads the same routes back from the
# synthesized template (AWS::ApiGatewayV2::Route), so this tuple is the single source.
ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/models/{model}/predict"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/health"),
)
# Governance changes (the governance function; docs: the governance contract). Always SigV4,
# whatever the scoring routes use: IAM policies per route decide who may do what (a persona
# may promote to staging but not to production), and the function records the caller's
# verified identity as the actor.
GOVERNANCE_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/governance/register"),
    ("POST", "/v1/governance/validate"),
    ("POST", "/v1/governance/promote/{stage}"),
    ("POST", "/v1/governance/rollback/{stage}"),
    ("POST", "/v1/governance/approve"),
    ("POST", "/v1/governance/reject"),
    ("POST", "/v1/governance/archive"),
    ("POST", "/v1/governance/retrain"),
)

# One JSON object per request, so Logs Insights can filter and aggregate on fields.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "sourceIp": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "userArn": "$context.identity.userArn",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "errorMessage": "$context.error.message",
}


class ScoringApi(Construct):
    """HTTP API (payload format 2.0): the scoring routes to the scoring alias, the governance
    routes to the governance function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        governance: lambda_.IFunction,
        auth: Literal["iam", "jwt"],
        jwt_issuer: str | None,
        jwt_audience: Sequence[str],
        throttle_rate_limit: float,
        throttle_burst_limit: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=Stack.of(self).stack_name,
            description="Ferry real-time scoring",
            create_default_stage=False,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit
            ),
            access_log_settings=_JsonAccessLogs(self.access_log_group),
        )
        authorizer = _authorizer(auth, jwt_issuer=jwt_issuer, jwt_audience=jwt_audience)
        integration = integrations.HttpLambdaIntegration(
            "Scoring",
            handler,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        governed = integrations.HttpLambdaIntegration(
            "Governance",
            governance,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        iam_only = authorizers.HttpIamAuthorizer()
        for routes, target, auth_by in (
            (ROUTES, integration, authorizer),
            (GOVERNANCE_ROUTES, governed, iam_only),
        ):
            for method, path in routes:
                self.http_api.add_routes(
                    path=path,
                    methods=[apigwv2.HttpMethod[method]],
                    integration=target,
                    authorizer=auth_by,
                )

    @property
    def url(self) -> str:
        """Base URL of the default stage (routes hang directly off it)."""
        return self.stage.url


def _authorizer(
    auth: Literal["iam", "jwt"], *, jwt_issuer: str | None, jwt_audience: Sequence[str]
) -> apigwv2.IHttpRouteAuthorizer:
    """SigV4 (IAM) by default; a JWT authorizer when the environment fronts an identity provider."""
    if auth == "jwt":
        if not jwt_issuer:
            raise ValueError("a JWT authorizer needs an issuer")
        return authorizers.HttpJwtAuthorizer(
            "JwtAuthorizer", jwt_issuer, jwt_audience=list(jwt_audience)
        )
    return authorizers.HttpIamAuthorizer()


@jsii.implements(apigwv2.IAccessLogSettings)
class _JsonAccessLogs:
    """Access-log settings: ACCESS_LOG_FORMAT as JSON, into one log group (a jsii interface)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))
