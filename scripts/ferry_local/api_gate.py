"""What the HTTP API checks before it calls a route's function: throttling, then authorization.

Everything here is read from the synthesized template: each route's `AuthorizationType`
(`AWS_IAM`, `JWT` with its `AWS::ApiGatewayV2::Authorizer`, or `NONE`) and scopes, and the
stage's name and throttling. `Gate.check` either returns the authorizer context that API
Gateway puts in the event (`requestContext.authorizer`) or raises a `Refusal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ferry_local import api_iam, api_jwt
from ferry_local import api_refusals as refuse
from ferry_local.api_jwt import JwtAuthorizer, LocalIssuer
from ferry_local.api_throttle import StageThrottle, stage_throttle
from ferry_local.template import Resolver, TemplateError


@dataclass(frozen=True)
class RouteAuth:
    """How one route is authorized."""

    kind: str = "NONE"  # AWS_IAM | JWT | NONE
    authorizer: JwtAuthorizer | None = None
    scopes: tuple[str, ...] = ()


@dataclass
class Stage:
    """The API's identity and its stage: what route ARNs name and how requests are limited."""

    api_id: str
    name: str
    region: str
    account_id: str
    throttle: StageThrottle
    issuers: dict[str, LocalIssuer] = field(default_factory=dict)

    def jwks(self, issuer: str) -> dict[str, Any]:
        local = self.issuers.get(issuer)
        return local.jwks() if local else {"keys": []}


class Gate:
    """Throttle, then authorize, exactly as the stage and the route say."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def check(
        self,
        route_key: str,
        auth: RouteAuth,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> dict[str, Any] | None:
        """The event's `requestContext.authorizer` (None for an open route), or a Refusal."""
        if not self.stage.throttle.admit(route_key):
            raise refuse.throttled()
        if auth.kind == "AWS_IAM":
            return self._iam(method, target, headers, body)
        if auth.kind == "JWT":
            assert auth.authorizer is not None
            lowered = {name.lower(): value for name, value in headers}
            jwks = self.stage.jwks(auth.authorizer.issuer)
            claims = api_jwt.verify(lowered, auth.authorizer, jwks, auth.scopes)
            return {"jwt": {"claims": claims, "scopes": list(auth.scopes) or None}}
        return None

    def _iam(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> dict[str, Any]:
        stage = self.stage
        caller = api_iam.verify(
            method, target, headers, body, region=stage.region, account_id=stage.account_id
        )
        path = target.split("?", 1)[0]
        resource = api_iam.route_arn(
            stage.region, stage.account_id, stage.api_id, stage.name, method, path
        )
        api_iam.authorize(caller, resource)
        user_id = caller.arn.rsplit("/", 1)[-1]
        return {
            "iam": {
                "accessKey": caller.access_key_id,
                "accountId": caller.account_id,
                "callerId": user_id,
                "principalOrgId": None,
                "userArn": caller.arn,
                "userId": user_id,
            }
        }


def route_auth(resolver: Resolver, properties: Mapping[str, Any]) -> RouteAuth:
    """A route's authorization, from its (unresolved) template properties."""
    kind = resolver.resolve(properties.get("AuthorizationType", "NONE"))
    scopes = tuple(resolver.resolve(properties.get("AuthorizationScopes") or []))
    if kind == "JWT":
        ref = properties.get("AuthorizerId", {})
        logical_id = ref.get("Ref") if isinstance(ref, dict) else None
        if logical_id not in resolver.resources:
            raise TemplateError("a JWT route must name its AWS::ApiGatewayV2::Authorizer by Ref")
        config = resolver.resolve(resolver.resources[logical_id]["Properties"])
        jwt = config.get("JwtConfiguration") or {}
        sources = config.get("IdentitySource") or ["$request.header.Authorization"]
        authorizer = JwtAuthorizer(
            issuer=jwt["Issuer"],
            audiences=tuple(jwt.get("Audience") or ()),
            identity_source=sources[0],
        )
        return RouteAuth(kind, authorizer, scopes)
    if kind not in ("AWS_IAM", "NONE"):
        raise TemplateError(f"authorization type {kind!r} is not served locally")
    return RouteAuth(kind, None, scopes)


def stage_from_template(resolver: Resolver, api_logical_id: str) -> Stage:
    """The API's stage (the template has one) with its throttling, and an issuer per JWT
    authorizer, whose key the local platform holds."""
    resources = resolver.resources
    stages = [
        resolver.resolve(r["Properties"])
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Stage"
        and r["Properties"].get("ApiId") == {"Ref": api_logical_id}
    ]
    if len(stages) != 1:
        raise TemplateError(f"the HTTP API {api_logical_id} needs exactly one stage locally")
    issuers = {}
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::ApiGatewayV2::Authorizer" and props.get("ApiId") == {
            "Ref": api_logical_id
        }:
            issuer = resolver.resolve(props.get("JwtConfiguration", {})).get("Issuer")
            if issuer:
                issuers[issuer] = LocalIssuer(issuer)
    return Stage(
        api_id=resolver.physical_id(api_logical_id),
        name=stages[0]["StageName"],
        region=resolver.region,
        account_id=resolver.account_id,
        throttle=stage_throttle(stages[0]),
        issuers=issuers,
    )
