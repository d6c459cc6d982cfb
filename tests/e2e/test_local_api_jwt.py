"""The local HTTP API's JWT authorization, as an HTTP API JWT authorizer checks a token.

The platform stands in for the issuer (`LocalIssuer`); a second issuer with its own key plays a
forger. Refused requests never reach the (counting) function.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from ferry_local.api_gate import RouteAuth, Stage
from ferry_local.api_jwt import JwtAuthorizer, LocalIssuer
from ferry_local.api_throttle import Limits, StageThrottle
from ferry_local.http_api import JWKS_PATH, LocalHttpApi, Route

ISSUER = "https://login.example.com/ferry"
AUDIENCE = "ferry-api"
AUTHORIZER = JwtAuthorizer(ISSUER, (AUDIENCE,))


@dataclass
class Gateway:
    url: str
    issuer: LocalIssuer
    calls: list[dict[str, Any]]

    def call(self, path: str, token: str | None) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, dict(resp.headers.items()), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), json.loads(err.read())


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    calls: list[dict[str, Any]] = []

    def function(name: str, event: dict[str, Any]) -> tuple[bytes, bool, str]:
        calls.append(event)
        return json.dumps({"statusCode": 200, "body": "{}"}).encode(), False, ""

    issuer = LocalIssuer(ISSUER)
    stage = Stage(
        "a1b2c3d4e5",
        "$default",
        "us-east-1",
        "123456789012",
        StageThrottle(Limits(1000, 1000)),
        {ISSUER: issuer},
    )
    routes = [
        Route("GET /v1/models", "GET", "/v1/models", "scoring", RouteAuth("JWT", AUTHORIZER)),
        Route("GET /admin", "GET", "/admin", "scoring", RouteAuth("JWT", AUTHORIZER, ("admin",))),
    ]
    api = LocalHttpApi(routes, function, stage=stage)
    api.start()
    try:
        yield Gateway(api.url, issuer, calls)
    finally:
        api.stop()


def test_a_valid_token_reaches_the_function_with_its_claims(gateway: Gateway) -> None:
    token = gateway.issuer.mint("client", AUDIENCE)
    assert gateway.call("/v1/models", token)[0] == 200
    (event,) = gateway.calls
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "client"


def test_client_id_counts_only_when_there_is_no_audience(gateway: Gateway) -> None:
    """API Gateway checks `client_id` only when the token has no `aud` (Cognito access
    tokens); with both, `aud` decides."""
    issuer = gateway.issuer
    assert gateway.call("/v1/models", issuer.mint("c", None, client_id=AUDIENCE))[0] == 200
    assert gateway.call("/v1/models", issuer.mint("c", "other", client_id=AUDIENCE))[0] == 401
    assert gateway.call("/v1/models", issuer.mint("c", AUDIENCE, client_id="other"))[0] == 200


def _forger(issuer: LocalIssuer) -> LocalIssuer:
    """Another key under the same key id as the issuer's."""
    kid = issuer.jwks()["keys"][0]["kid"]
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256"}, private=True)
    return LocalIssuer(ISSUER, key.as_dict(private=True))


@pytest.mark.parametrize(
    "case, description",
    [
        ("expired", "the token has expired"),
        ("audience", "the token does not have a valid audience"),
        ("issuer", "the token does not have a valid issuer"),
        ("signature", "the token has an invalid signature"),
        ("key", "the token's kid names no key of the issuer"),
        ("not_before", "the token's nbf is in the future"),
    ],
)
def test_an_invalid_token_is_refused_with_401(
    gateway: Gateway, case: str, description: str
) -> None:
    """Given a token that is expired, for another audience, from another issuer, signed by
    another key (under the issuer's key id, or its own) or not valid yet, then 401
    Unauthorized with the reason in www-authenticate."""
    issuer = gateway.issuer
    token = {
        "expired": lambda: issuer.mint("client", AUDIENCE, exp=int(time.time()) - 1),
        "audience": lambda: issuer.mint("client", "someone-else"),
        "issuer": lambda: issuer.mint("client", AUDIENCE, iss="https://evil.example.com"),
        "signature": lambda: _forger(issuer).mint("client", AUDIENCE),
        "key": lambda: LocalIssuer(ISSUER).mint("client", AUDIENCE),
        "not_before": lambda: issuer.mint("client", AUDIENCE, nbf=int(time.time()) + 600),
    }[case]()
    status, headers, body = gateway.call("/v1/models", token)
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert headers["www-authenticate"] == (
        f'Bearer scope="" error="invalid_token" error_description="{description}"'
    )
    assert headers["apigw-requestid"]
    assert gateway.calls == []


def test_no_token_is_a_bare_401(gateway: Gateway) -> None:
    status, headers, body = gateway.call("/v1/models", None)
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert "www-authenticate" not in headers
    assert gateway.call("/v1/models", "not-a-jwt")[0] == 401
    assert gateway.calls == []


def test_a_route_with_scopes_needs_one_of_them(gateway: Gateway) -> None:
    """Given a route that declares the scope `admin`, then a token without it gets 403, one
    with it (in `scope` or `scp`) gets through."""
    status, headers, body = gateway.call("/admin", gateway.issuer.mint("c", AUDIENCE))
    assert (status, body) == (403, {"message": "Forbidden"})
    assert 'error="insufficient_scope"' in headers["www-authenticate"]
    assert gateway.calls == []
    assert gateway.call("/admin", gateway.issuer.mint("c", AUDIENCE, scopes=["admin"]))[0] == 200
    assert gateway.call("/admin", gateway.issuer.mint("c", AUDIENCE, scp=["admin"]))[0] == 200


def test_the_platform_publishes_its_issuers_public_keys(gateway: Gateway) -> None:
    with urllib.request.urlopen(gateway.url + JWKS_PATH, timeout=10) as resp:
        keys = json.loads(resp.read())["keys"]
    assert [k["kid"] for k in keys] == [gateway.issuer.jwks()["keys"][0]["kid"]]
    assert all("d" not in k for k in keys)  # public halves only


def test_jwt_routes_and_the_stage_are_read_from_the_template() -> None:
    """Given a template shaped as CDK synthesizes an HTTP API with a JWT authorizer, then the
    routes carry its issuer, audiences and scopes, the stage its throttling, and the platform
    holds a signing key for that issuer."""
    from ferry_local.http_api import routes_from_template, stage_of
    from ferry_local.template import Resolver

    api = {"Ref": "Api"}
    template = {
        "Resources": {
            "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "HTTP"}},
            "Jwt": {
                "Type": "AWS::ApiGatewayV2::Authorizer",
                "Properties": {
                    "ApiId": api,
                    "AuthorizerType": "JWT",
                    "IdentitySource": ["$request.header.Authorization"],
                    "JwtConfiguration": {"Audience": [AUDIENCE], "Issuer": ISSUER},
                    "Name": "JwtAuthorizer",
                },
            },
            "Integration": {
                "Type": "AWS::ApiGatewayV2::Integration",
                "Properties": {
                    "ApiId": api,
                    "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": "arn:aws:lambda:us-east-1:123456789012:function:scoring",
                    "PayloadFormatVersion": "2.0",
                },
            },
            "Route": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": api,
                    "AuthorizationType": "JWT",
                    "AuthorizerId": {"Ref": "Jwt"},
                    "AuthorizationScopes": ["ferry/score"],
                    "RouteKey": "GET /v1/models",
                    "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]},
                },
            },
            "Stage": {
                "Type": "AWS::ApiGatewayV2::Stage",
                "Properties": {
                    "ApiId": api,
                    "StageName": "$default",
                    "DefaultRouteSettings": {"ThrottlingBurstLimit": 7, "ThrottlingRateLimit": 3},
                },
            },
        }
    }
    resolver = Resolver(template)
    (route,) = routes_from_template(resolver)
    assert route.auth == RouteAuth("JWT", AUTHORIZER, ("ferry/score",))
    stage = stage_of(resolver)
    assert stage.name == "$default" and stage.throttle.default == Limits(3, 7)
    assert list(stage.issuers) == [ISSUER]
