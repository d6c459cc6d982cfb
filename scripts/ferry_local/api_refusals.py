"""The gateway's own refusals (401, 403, 429), in API Gateway's shape, never the function's.

API Gateway answers a request it refuses itself with a JSON `{"message": "..."}` body, an
`apigw-requestid` header (every HTTP API response has one), for IAM failures an
`x-amzn-ErrorType` header naming the error, and for JWT failures a `www-authenticate` header.
The messages below are the ones AWS documents (API Gateway's 403 troubleshooting guide, the
SigV4 mismatch guide, the HTTP API JWT troubleshooting page); README.md lists them.
"""

from __future__ import annotations

import json

FORBIDDEN = "Forbidden"
UNAUTHORIZED = "Unauthorized"
TOO_MANY_REQUESTS = "Too Many Requests"
INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)


class Refusal(Exception):
    """A request the gateway refuses before the integration runs.

    `reason` is what the access log records (`$context.error.message` or
    `$context.authorizer.error`); `message` is what the client reads.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}
        self.reason = reason or message

    def response(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json", **self.headers}
        if self.error_type:
            headers["x-amzn-ErrorType"] = self.error_type
        return self.status, headers, json.dumps({"message": self.message}).encode()


def unsigned() -> Refusal:
    """An IAM route called without any signature: HTTP APIs answer a bare 403 Forbidden."""
    return Refusal(403, FORBIDDEN, error_type="ForbiddenException", reason="unsigned request")


def incomplete_signature(message: str) -> Refusal:
    return Refusal(403, message, error_type="IncompleteSignatureException")


def invalid_signature(message: str) -> Refusal:
    return Refusal(403, message, error_type="InvalidSignatureException")


def unrecognized_client(reason: str) -> Refusal:
    return Refusal(403, INVALID_TOKEN, error_type="UnrecognizedClientException", reason=reason)


def expired_token() -> Refusal:
    return Refusal(403, EXPIRED_TOKEN, error_type="ExpiredTokenException")


def access_denied(principal_arn: str, resource: str, *, explicit: bool) -> Refusal:
    """IAM said no: the message names the caller and the route's ARN (account masked)."""
    why = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else "because no identity-based policy allows the execute-api:Invoke action"
    )
    message = (
        f"User: {principal_arn} is not authorized to perform: execute-api:Invoke on resource: "
        f"{_mask_account(resource)} {why}"
    )
    return Refusal(403, message, error_type="AccessDeniedException")


def jwt_unauthorized(description: str | None) -> Refusal:
    """A missing or invalid bearer token: 401, the reason only in `www-authenticate`."""
    headers = {}
    if description is not None:
        headers["www-authenticate"] = (
            f'Bearer scope="" error="invalid_token" error_description="{description}"'
        )
    return Refusal(401, UNAUTHORIZED, headers=headers, reason=description or "no token")


def jwt_insufficient_scope(scopes: tuple[str, ...]) -> Refusal:
    wanted = " ".join(scopes)
    header = (
        f'Bearer scope="{wanted}" error="insufficient_scope" '
        f'error_description="expected scopes: [{wanted}]"'
    )
    return Refusal(
        403, FORBIDDEN, headers={"www-authenticate": header}, reason="insufficient scope"
    )


def throttled() -> Refusal:
    return Refusal(429, TOO_MANY_REQUESTS, reason="throttled")


def _mask_account(arn: str) -> str:
    """API Gateway masks all but the last four digits of the account in its messages."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[4].isdigit():
        parts[4] = "*" * (len(parts[4]) - 4) + parts[4][-4:]
    return ":".join(parts)
