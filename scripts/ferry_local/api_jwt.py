"""JWT authorization of the local HTTP API, as an HTTP API JWT authorizer checks a token.

API Gateway takes the bearer token from the identity source (`Authorization`), checks its
RS256 signature against the issuer's JWKS (the key named by `kid`), that `iss` equals the
configured issuer, that `aud` (or, only when there is no `aud`, `client_id`) is one of the
configured audiences, that `exp` is in the future and `nbf`/`iat` are not, and, when the route
declares authorization scopes, that the token's `scope` (or `scp`) holds one of them.

Locally, the platform stands in for the identity provider: `LocalIssuer` holds an RSA signing
key for the configured issuer, publishes its public JWKS, and mints tokens, so tests and the
command line can call JWT routes as a local identity.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet, RSAKey

from ferry_local import api_refusals as refuse

ALGORITHM = "RS256"


@dataclass(frozen=True)
class JwtAuthorizer:
    """An `AWS::ApiGatewayV2::Authorizer` of type JWT, as the template configures it."""

    issuer: str
    audiences: tuple[str, ...]
    identity_source: str = "$request.header.Authorization"

    @property
    def header(self) -> str:
        return self.identity_source.rsplit(".", 1)[-1].lower()


class LocalIssuer:
    """The local identity provider of `issuer`: one RSA key, its JWKS, tokens on demand."""

    def __init__(self, issuer: str, private_jwk: Mapping[str, Any] | None = None) -> None:
        self.issuer = issuer
        if private_jwk is None:
            params = {"kid": uuid.uuid4().hex[:16], "use": "sig", "alg": ALGORITHM}
            self._key = RSAKey.generate_key(2048, parameters=params, private=True)
        else:
            self._key = RSAKey.import_key(dict(private_jwk))

    def jwks(self) -> dict[str, Any]:
        """The public key set, as the issuer's `jwks_uri` serves it."""
        return {"keys": [self._key.as_dict(private=False)]}

    def private_jwk(self) -> dict[str, Any]:
        return self._key.as_dict(private=True)

    def mint(
        self,
        subject: str,
        audience: str | None,
        *,
        scopes: Sequence[str] = (),
        lifetime: int = 3600,
        **claims: Any,
    ) -> str:
        """A signed token for `subject` (no `aud` when `audience` is None; extra `claims`
        override the defaults)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if audience is not None:
            payload["aud"] = audience
        if scopes:
            payload["scope"] = " ".join(scopes)
        payload.update(claims)
        header = {"alg": ALGORITHM, "kid": self._key.kid, "typ": "JWT"}
        return jwt.encode(header, payload, self._key)


def verify(
    headers: Mapping[str, str],
    authorizer: JwtAuthorizer,
    jwks: Mapping[str, Any],
    scopes: Sequence[str] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """The token's claims when it passes every check of the authorizer; a `Refusal` otherwise."""
    raw = headers.get(authorizer.header, "").strip()
    if not raw:
        raise refuse.jwt_unauthorized(None)
    token_text = raw[7:].strip() if raw.lower().startswith("bearer ") else raw
    try:
        token = jwt.decode(token_text, KeySet.import_key_set(dict(jwks)), algorithms=[ALGORITHM])
    except BadSignatureError:
        raise refuse.jwt_unauthorized("the token has an invalid signature") from None
    except InvalidKeyIdError:
        raise refuse.jwt_unauthorized("the token's kid names no key of the issuer") from None
    except (JoseError, ValueError) as exc:
        raise refuse.jwt_unauthorized(f"the token is not a valid JWT: {exc}") from None
    claims = dict(token.claims)
    _check_claims(claims, authorizer, time.time() if now is None else now)
    if scopes:
        granted = _scopes(claims)
        if not granted.intersection(scopes):
            raise refuse.jwt_insufficient_scope(tuple(scopes))
    return claims


def _check_claims(claims: dict[str, Any], authorizer: JwtAuthorizer, now: float) -> None:
    if claims.get("iss") != authorizer.issuer:
        raise refuse.jwt_unauthorized("the token does not have a valid issuer")
    audience = claims.get("aud") if "aud" in claims else claims.get("client_id")
    audiences = audience if isinstance(audience, list) else [audience]
    if not set(audiences).intersection(authorizer.audiences):
        raise refuse.jwt_unauthorized("the token does not have a valid audience")
    expires = claims.get("exp")
    if not isinstance(expires, int | float):
        raise refuse.jwt_unauthorized("the token has no expiration")
    if expires <= now:
        raise refuse.jwt_unauthorized("the token has expired")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or value > now):
            raise refuse.jwt_unauthorized(f"the token's {name} is in the future")


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    if "scope" in claims:
        return set(str(claims["scope"]).split())
    scp = claims.get("scp")
    return set(scp if isinstance(scp, list) else str(scp or "").split())
