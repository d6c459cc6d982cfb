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

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

SERVICE = "execute-api"


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
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


class SigV4:
    """A `requests` auth (also Locust's `HttpSession`): signs each prepared request."""

    def __init__(self, credentials: Credentials | ReadOnlyCredentials, region: str) -> None:
        self.credentials = credentials
        self.region = region

    def __call__(self, request: Any) -> Any:
        body = request.body
        if isinstance(body, str):
            body = body.encode()
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
