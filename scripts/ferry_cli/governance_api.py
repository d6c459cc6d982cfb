"""The governance routes of a stage's HTTP API, called as the caller: the only way the
command line changes the registry or the audit trail.

Every call is signed with SigV4 (ferry_local/signing.py) with the credentials of whoever runs
`ferry`: a local identity's (`--as NAME`) on the local platform, the caller's own AWS
credentials on a deployed stage. The governance function records that signed identity as the
actor; the API's IAM decides which persona may call which route.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from ferry_cli.environments import Environment, EnvironmentUnavailable
from ferry_core.errors import FerryError

PREFIX = "/v1/governance/"


class ApiRefused(FerryError):
    """The governance API said no: its status and its message, as the caller should read them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class GovernanceApi:
    """POST a governance route of one environment's API, signed as the caller."""

    def __init__(self, env: Environment, timeout_s: float = 120) -> None:
        self.env = env
        self.timeout_s = timeout_s

    def _credentials(self) -> Any:
        from ferry_local.signing import credentials_of

        if self.env.identity is not None:
            return credentials_of(self.env.identity)
        import boto3

        credentials = boto3.Session(region_name=self.env.region).get_credentials()
        if credentials is None:
            raise EnvironmentUnavailable("no AWS credentials to sign the governance call with")
        return credentials

    def call(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """The answer of `POST /v1/governance/{route}`; `ApiRefused` for any non-2xx."""
        from ferry_local.signing import sign

        if not self.env.api_url:
            raise EnvironmentUnavailable(f"environment {self.env.name!r} names no API URL")
        url = self.env.api_url.rstrip("/") + PREFIX + route
        data = json.dumps(body).encode()
        headers = sign(
            "POST",
            url,
            self._credentials(),
            self.env.region,
            body=data,
            headers={"content-type": "application/json"},
        )
        request = urllib.request.Request(url, data=data, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise refusal(err.code, err.read()) from None
        except urllib.error.URLError as err:
            raise EnvironmentUnavailable(
                f"the governance API at {url} is unreachable: {err}"
            ) from err


def refusal(status: int, payload: bytes) -> ApiRefused:
    """A refusal in the caller's words: the function's `{"error", "message"}`, or API
    Gateway's own `{"message"}` (403 when the caller's role may not call the route)."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = {"message": payload.decode(errors="replace")[:500]}
    if not isinstance(body, dict):
        body = {"message": str(body)[:500]}
    message = str(body.get("message") or body.get("Message") or f"HTTP {status}")
    if status == 403 and "error" not in body:
        message = f"not allowed to call this route: {message}"
    return ApiRefused(status, str(body.get("error") or "forbidden"), message)
