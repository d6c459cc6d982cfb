"""IAM authorization of the local HTTP API: verify SigV4 as execute-api does, then ask IAM.

A request is signed in its `Authorization` header or in its query string (a presigned URL).
The verifier rebuilds the canonical request from what arrived (method, path, query, exactly the
headers the client says it signed, the SHA-256 of the body actually received) with botocore's
SigV4 code, derives the signing key from the secret that the local AWS emulation holds for the
access key id (an IAM user's key, or an STS session whose token must match), and compares.
Then the caller's identity policies decide `execute-api:Invoke` on the route's ARN,
`arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path}`, with moto's
statement evaluation (`moto.iam.access_control`). Everything a client could get wrong becomes a
`Refusal` in API Gateway's shape.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from moto.iam.access_control import (
    CreateAccessKeyFailure,
    IAMPolicy,
    IAMPolicyStatement,
    PermissionResult,
    create_access_key,
)
from moto.sts.models import sts_backends

from ferry_local import api_refusals as refuse
from ferry_local.signing import canonical_query

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=5)
AMZ_DATE = "%Y%m%dT%H%M%SZ"
PRESIGN_MAX_EXPIRES = 7 * 24 * 3600


@dataclass(frozen=True)
class Caller:
    """Who signed: the principal's ARN and the access key it used."""

    arn: str
    access_key_id: str
    account_id: str
    policies: tuple[Any, ...]


@dataclass(frozen=True)
class _Signature:
    access_key_id: str
    scope: tuple[str, ...]  # date, region, service, terminator
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    token: str | None
    expires: int | None  # presigned URLs only


def route_arn(region: str, account_id: str, api_id: str, stage: str, method: str, path: str) -> str:
    """The resource an IAM policy names to allow calling `METHOD path` on this stage."""
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{method}/{path.lstrip('/')}"


def verify(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    region: str,
    account_id: str,
    now: dt.datetime | None = None,
) -> Caller:
    """The caller whose valid SigV4 signature the request carries; a `Refusal` otherwise."""
    now = now or dt.datetime.now(dt.UTC)
    header_map = _joined(headers)
    split = urlsplit(target)
    query = _query_pairs(split.query)
    signature = _parse(header_map, query)
    _check_scope(signature, region)
    _check_time(signature, now)
    key = _access_key(signature, account_id)
    credentials = key.create_credentials()
    expected = _signature(
        credentials, region, method, split.path, split.query, header_map, body, signature
    )
    if not hmac.compare_digest(expected, signature.signature):
        raise refuse.invalid_signature(refuse.SIGNATURE_MISMATCH)
    return Caller(
        arn=key.arn,
        access_key_id=signature.access_key_id,
        account_id=account_id,
        policies=tuple(key.collect_policies()),
    )


def authorize(caller: Caller, resource: str) -> None:
    """`execute-api:Invoke` on `resource` by the caller's identity policies, or a Refusal.

    As IAM evaluates: an explicit Deny in any statement wins, else an Allow allows, else the
    request is implicitly denied.
    """
    allowed = False
    for policy in caller.policies:
        for statement in _statements(policy):
            result = _Statement(statement).is_action_permitted(f"{SERVICE}:Invoke", resource)
            if result == PermissionResult.DENIED:
                raise refuse.access_denied(caller.arn, resource, explicit=True)
            allowed = allowed or result == PermissionResult.PERMITTED
    if not allowed:
        raise refuse.access_denied(caller.arn, resource, explicit=False)


# -- parsing ------------------------------------------------------------------------------------


def _joined(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)
    return found


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def _parse(headers: Mapping[str, list[str]], query: list[tuple[str, str]]) -> _Signature:
    params = dict(query)
    authorization = ",".join(headers.get("authorization", []))
    if "X-Amz-Signature" in params or "X-Amz-Algorithm" in params:
        return _parse_query(params, headers)
    if not authorization:
        raise refuse.unsigned()
    algorithm, _, rest = authorization.strip().partition(" ")
    fields = {}
    for item in rest.split(","):
        name, eq, value = item.strip().partition("=")
        if eq:
            fields[name] = value
    dates = headers.get("x-amz-date", [])
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if name not in fields
    ]
    if not dates:
        missing.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if algorithm != ALGORITHM or missing:
        detail = " ".join(missing) or f"Unsupported algorithm {algorithm!r}."
        raise refuse.incomplete_signature(f"{detail} Authorization={authorization}")
    tokens = headers.get("x-amz-security-token")
    return _signature_fields(
        fields["Credential"],
        fields["SignedHeaders"],
        fields["Signature"],
        dates[0],
        tokens[0] if tokens else None,
        None,
    )


def _parse_query(params: Mapping[str, str], headers: Mapping[str, list[str]]) -> _Signature:
    required = (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Expires",
    )
    missing = [name for name in required if name not in params]
    if missing or params["X-Amz-Algorithm"] != ALGORITHM:
        names = ", ".join(missing) or "a supported X-Amz-Algorithm"
        raise refuse.incomplete_signature(f"AWS query-string parameters missing: {names}.")
    try:
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        raise refuse.incomplete_signature("X-Amz-Expires must be a number of seconds.") from None
    if not 0 < expires <= PRESIGN_MAX_EXPIRES:
        raise refuse.incomplete_signature(
            f"X-Amz-Expires must be between 1 and {PRESIGN_MAX_EXPIRES} seconds."
        )
    return _signature_fields(
        params["X-Amz-Credential"],
        params["X-Amz-SignedHeaders"],
        params["X-Amz-Signature"],
        params["X-Amz-Date"],
        params.get("X-Amz-Security-Token"),
        expires,
    )


def _signature_fields(
    credential: str,
    signed: str,
    signature: str,
    amz_date: str,
    token: str | None,
    expires: int | None,
) -> _Signature:
    parts = credential.split("/")
    if len(parts) != 5:
        raise refuse.incomplete_signature(
            f"Credential should be scoped by a valid scope of the form "
            f"<key>/<date>/<region>/<service>/aws4_request, not '{credential}'."
        )
    names = tuple(signed.lower().split(";"))
    if "host" not in names:
        raise refuse.incomplete_signature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    if expires is None and "x-amz-date" not in names:
        raise refuse.incomplete_signature(
            "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."
        )
    return _Signature(parts[0], tuple(parts[1:]), names, signature, amz_date, token, expires)


# -- checks -------------------------------------------------------------------------------------


def _check_scope(sig: _Signature, region: str) -> None:
    date, scope_region, service, terminator = sig.scope
    if date != sig.amz_date[:8]:
        raise refuse.invalid_signature(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{sig.amz_date[:8]}', from '{sig.amz_date}'."
        )
    if scope_region != region:
        raise refuse.invalid_signature(
            f"Credential should be scoped to a valid region, not '{scope_region}'. "
        )
    if service != SERVICE:
        raise refuse.invalid_signature(
            f"Credential should be scoped to correct service: '{SERVICE}'. "
        )
    if terminator != "aws4_request":
        raise refuse.invalid_signature(
            f"Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not '{terminator}'. "
        )


def _check_time(sig: _Signature, now: dt.datetime) -> None:
    try:
        signed_at = dt.datetime.strptime(sig.amz_date, AMZ_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise refuse.incomplete_signature(
            f"Date must be in ISO-8601 'basic format'. Got '{sig.amz_date}'. See "
            "http://en.wikipedia.org/wiki/ISO_8601"
        ) from None

    def stamp(moment: dt.datetime) -> str:
        return moment.strftime(AMZ_DATE)

    if signed_at > now + MAX_SKEW:
        raise refuse.invalid_signature(
            f"Signature not yet current: {stamp(signed_at)} is still later than "
            f"{stamp(now + MAX_SKEW)} ({stamp(now)} + 5 min.)"
        )
    if sig.expires is not None:
        if now > signed_at + dt.timedelta(seconds=sig.expires):
            expiry = signed_at + dt.timedelta(seconds=sig.expires)
            raise refuse.invalid_signature(
                f"Signature expired: {stamp(expiry)} is now earlier than {stamp(now)}"
            )
    elif signed_at < now - MAX_SKEW:
        raise refuse.invalid_signature(
            f"Signature expired: {stamp(signed_at)} is now earlier than "
            f"{stamp(now - MAX_SKEW)} ({stamp(now)} - 5 min.)"
        )


def _access_key(sig: _Signature, account_id: str) -> Any:
    """moto's record of the key: an IAM user's access key or an STS session's."""
    token_header = {"X-Amz-Security-Token": sig.token} if sig.token is not None else {}
    try:
        key = create_access_key(account_id, "aws", sig.access_key_id, token_header)
    except CreateAccessKeyFailure as exc:
        raise refuse.unrecognized_client(
            f"access key {sig.access_key_id}: "
            + ("wrong session token" if exc.reason == "InvalidToken" else "unknown")
        ) from None
    for session in sts_backends[account_id]["aws"].assumed_roles:
        if session.access_key_id == sig.access_key_id:
            expiration = session.expiration
            if expiration.tzinfo is None:
                expiration = expiration.replace(tzinfo=dt.UTC)
            if expiration < dt.datetime.now(dt.UTC):
                raise refuse.expired_token()
    return key


# -- the signature -------------------------------------------------------------------------------


class _Verifier(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client signed, the query normalized as
    the service normalizes it, and the hash of the body actually received."""

    def __init__(self, credentials: Credentials, region: str, signed: Sequence[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed:
                chosen[name.lower()] = value
        return chosen

    def canonical_query_string(self, request: AWSRequest) -> str:
        return canonical_query(request.context["query"])

    def canonical_request(self, request: AWSRequest) -> str:
        headers = self.headers_to_sign(request)
        return "\n".join(
            [
                request.method.upper(),
                self._normalize_url_path(urlsplit(request.url).path),
                self.canonical_query_string(request),
                self.canonical_headers(headers) + "\n",
                self.signed_headers(headers),
                hashlib.sha256(request.body or b"").hexdigest(),
            ]
        )


def _signature(
    credentials: Credentials,
    region: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, list[str]],
    body: bytes,
    sig: _Signature,
) -> str:
    request = AWSRequest(method=method, url=path or "/", data=body)
    for name in sig.signed_headers:
        for value in headers.get(name, []):
            request.headers[name] = value  # an email.message: each assignment adds a value
    request.context["timestamp"] = sig.amz_date
    request.context["query"] = query
    verifier = _Verifier(credentials, region, sig.signed_headers)
    canonical = verifier.canonical_request(request)
    return verifier.signature(verifier.string_to_sign(request, canonical), request)


# -- policy evaluation ---------------------------------------------------------------------------


def _statements(policy: Any) -> list[dict[str, Any]]:
    document = IAMPolicy(policy)._policy_json
    statement = document["Statement"]
    return statement if isinstance(statement, list) else [statement]


class _Statement(IAMPolicyStatement):  # type: ignore[misc]
    """moto's statement evaluation with IAM's wildcards: moto turns a pattern into a regex
    unescaped, so the `$` of the `$default` stage in an execute-api ARN never matched."""

    @staticmethod
    def _match(pattern: str, string: str) -> re.Match[str] | None:
        regex = "".join(
            ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern
        )
        return re.fullmatch(regex, string)
