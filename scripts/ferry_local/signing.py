"""Sign calls to the HTTP API with SigV4, as every caller of an IAM-authorized route must.

One helper for the command line, the demo, the tests and the benchmarks: botocore's
`SigV4Auth` for the service `execute-api`, over an identity's credentials (a local identity
from `.ferry/local.json`, or the caller's own AWS credentials for a deployed stage).

    headers = sign("POST", url, credentials, region, body=data, headers={"content-type": ...})
    requests.post(url, data=data, auth=SigV4(credentials, region))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

SERVICE = "execute-api"


def canonical_query(query: str) -> str:
    """SigV4's canonical query string as the service computes it from what arrives: each name
    and value decoded, then percent-encoded per RFC 3986 (only `A-Za-z0-9-_.~` kept), sorted by
    name then value, `X-Amz-Signature` left out. Signer and verifier both use it, so a query
    encoded another way (`+` for a space, `%7E` for `~`) still signs."""
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if name != "X-Amz-Signature":
            pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


class _Signer(SigV4Auth):
    """botocore's SigV4, with the query canonicalized as the service does it."""

    def canonical_query_string(self, request: AWSRequest) -> str:
        return canonical_query(urlsplit(request.url).query)


def credentials_of(identity: Any) -> Credentials:
    """botocore credentials of a local `Identity` (or of anything with its three fields)."""
    return Credentials(identity.access_key_id, identity.secret_access_key, identity.session_token)


def sign(
    method: str,
    url: str,
    credentials: Credentials | ReadOnlyCredentials,
    region: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The request's headers plus `Authorization`, `X-Amz-Date` and the session token.

    Send exactly these headers and this body to exactly this URL: each is in the signature.
    """
    request = AWSRequest(
        method=method.upper(), url=url, data=body or b"", headers=dict(headers or {})
    )
    _Signer(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


class SigV4:
    """A `requests` auth (also Locust's `HttpSession`): signs each prepared request."""

    def __init__(self, credentials: Credentials | ReadOnlyCredentials, region: str) -> None:
        self.credentials = credentials
        self.region = region

    def __call__(self, request: Any) -> Any:
        body = request.body
        if isinstance(body, str):  # http.client would send a str as Latin-1: send these bytes
            body = request.body = body.encode()
            request.headers["Content-Length"] = str(len(body))
        signed = sign(
            request.method,
            request.url,
            self.credentials,
            self.region,
            body=body,
            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
        )
        request.headers.update(signed)
        return request
