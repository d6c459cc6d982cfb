"""The local HTTP API's IAM authorization: SigV4 verified as execute-api does, then IAM.

A real socket server (`LocalHttpApi`) in front of a counting stand-in for the function, with
principals created in moto's IAM and STS: what a refused request never reaches is counted.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from ferry_local.api_gate import RouteAuth, Stage
from ferry_local.api_throttle import Limits, StageThrottle
from ferry_local.http_api import LocalHttpApi, Route
from ferry_local.signing import SigV4, sign

REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "a1b2c3d4e5"
PREDICT = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/$default/POST/v1/models/*/predict"
PREDICT_GET = PREDICT.replace("/POST/", "/GET/")
IAM = RouteAuth("AWS_IAM")


@dataclass
class Function:
    """Stands in for the scoring function: answers 200 and counts its invocations."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, name: str, event: dict[str, Any]) -> tuple[bytes, bool, str]:
        self.calls.append(event)
        answer = {"statusCode": 200, "body": json.dumps({"ok": True})}
        return json.dumps(answer).encode(), False, ""


@dataclass
class Gateway:
    url: str
    function: Function
    allowed: Credentials  # an STS session of a role allowed to predict
    user: Credentials  # an IAM user's key, allowed too
    outsider: Credentials  # a session of a role allowed nothing on this API
    denied: Credentials  # a role allowed everything but denied predict explicitly
    api: LocalHttpApi

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        request = urllib.request.Request(
            self.url + path, data=body or None, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, dict(resp.headers.items()), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), json.loads(err.read())

    def signed(
        self, method: str, path: str, body: bytes = b"", credentials: Credentials | None = None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = sign(
            method,
            self.url + path,
            credentials or self.allowed,
            REGION,
            body=body,
            headers={"content-type": "application/json"},
        )
        return self.call(method, path, body, headers)


def _session(iam: Any, sts: Any, name: str, statements: list[dict[str, Any]]) -> Credentials:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    if statements:
        document = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=name, PolicyName="api", PolicyDocument=json.dumps(document))
    found = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=name)["Credentials"]
    return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])


def _invoke(resource: str | list[str], effect: str = "Allow") -> dict[str, Any]:
    return {"Effect": effect, "Action": "execute-api:Invoke", "Resource": resource}


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        sts = boto3.client("sts", region_name=REGION)
        allowed = _session(iam, sts, "client", [_invoke([PREDICT, PREDICT_GET])])
        outsider = _session(iam, sts, "outsider", [])
        denied = _session(iam, sts, "denied", [_invoke("*"), _invoke(PREDICT, effect="Deny")])
        iam.create_user(UserName="app")
        iam.put_user_policy(
            UserName="app",
            PolicyName="api",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [_invoke(PREDICT)]}),
        )
        key = iam.create_access_key(UserName="app")["AccessKey"]
        user = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        function = Function()
        stage = Stage(API_ID, "$default", REGION, ACCOUNT, StageThrottle(Limits(1000, 1000)))
        routes = [
            Route(
                "POST /v1/models/{model}/predict",
                "POST",
                "/v1/models/{model}/predict",
                "scoring",
                IAM,
            )
        ]
        api = LocalHttpApi(routes, function, stage=stage)
        api.start()
        try:
            yield Gateway(api.url, function, allowed, user, outsider, denied, api)
        finally:
            api.stop()


BODY = json.dumps({"instances": [{"age": 30}]}).encode()
PATH = "/v1/models/credit-risk/predict"


def test_a_good_signature_of_an_allowed_principal_reaches_the_function(gateway: Gateway) -> None:
    """Given a session of a role allowed to predict, when it signs a predict call, then the
    function answers and sees the caller in `requestContext.authorizer.iam`."""
    status, headers, _ = gateway.signed("POST", PATH, BODY)
    assert status == 200 and headers["apigw-requestid"]
    (event,) = gateway.function.calls
    iam = event["requestContext"]["authorizer"]["iam"]
    assert iam["userArn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/client/client"
    assert event["requestContext"]["apiId"] == API_ID


def test_an_iam_users_key_works_too(gateway: Gateway) -> None:
    assert gateway.signed("POST", PATH, BODY, credentials=gateway.user)[0] == 200


def test_an_unsigned_call_is_refused_with_a_bare_forbidden(gateway: Gateway) -> None:
    """Given no signature, then 403 {"message": "Forbidden"}, as an HTTP API answers."""
    status, headers, body = gateway.call("POST", PATH, BODY)
    assert (status, body) == (403, {"message": "Forbidden"})
    assert headers["apigw-requestid"] and headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert gateway.function.calls == []


@pytest.mark.parametrize(
    "tamper",
    ["secret", "body", "path", "query", "header", "token"],
)
def test_a_signature_that_does_not_match_the_request_is_refused(
    gateway: Gateway, tamper: str
) -> None:
    """Given a signed request, when the secret, body, path, query, a signed header or the
    session token differ from what was signed, then 403 and the function never runs."""
    credentials = gateway.allowed
    if tamper == "secret":
        credentials = Credentials(credentials.access_key, "not-the-secret", credentials.token)
    signed_path = PATH + ("?version=1" if tamper == "query" else "")
    headers = sign(
        "POST",
        gateway.url + signed_path,
        credentials,
        REGION,
        body=BODY,
        headers={"content-type": "application/json"},
    )
    body, path = BODY, signed_path
    if tamper == "body":
        body = BODY.replace(b"30", b"31")
    elif tamper == "path":
        path = "/v1/models/other/predict"
    elif tamper == "query":
        path = PATH + "?version=2"
    elif tamper == "header":
        headers["content-type"] = "text/plain"
    elif tamper == "token":
        headers["X-Amz-Security-Token"] = gateway.outsider.token
    status, response_headers, answer = gateway.call("POST", path, body, headers)
    assert status == 403
    if tamper == "token":
        assert answer == {"message": "The security token included in the request is invalid."}
    else:
        assert answer["message"].startswith("The request signature we calculated does not match")
        assert response_headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert gateway.function.calls == []


def test_an_unknown_access_key_is_refused(gateway: Gateway) -> None:
    stranger = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    status, _, body = gateway.signed("POST", PATH, BODY, credentials=stranger)
    assert (status, body) == (
        403,
        {"message": "The security token included in the request is invalid."},
    )


@pytest.mark.parametrize("minutes, word", [(-6, "expired"), (6, "not yet current")])
def test_a_signature_outside_five_minutes_of_now_is_refused(
    gateway: Gateway, minutes: int, word: str
) -> None:
    """Given a request signed six minutes ago (or ahead), then 403 'Signature expired'."""
    then = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    with mock.patch("botocore.auth.get_current_datetime", return_value=then.replace(tzinfo=None)):
        headers = sign("POST", gateway.url + PATH, gateway.allowed, REGION, body=BODY)
    status, _, body = gateway.call("POST", PATH, BODY, headers)
    assert status == 403 and f"Signature {word}" in body["message"]
    assert gateway.function.calls == []


def test_a_signature_for_another_region_or_service_is_refused(gateway: Gateway) -> None:
    for region, service in (("eu-west-1", "execute-api"), (REGION, "lambda")):
        request = AWSRequest("POST", gateway.url + PATH, data=BODY)
        SigV4Auth(gateway.allowed, service, region).add_auth(request)
        status, _, body = gateway.call("POST", PATH, BODY, dict(request.headers.items()))
        assert status == 403 and body["message"].startswith("Credential should be scoped")
    assert gateway.function.calls == []


def test_a_principal_without_invoke_on_the_route_is_denied(gateway: Gateway) -> None:
    """Given a role with no execute-api:Invoke, and one whose Allow * is beaten by an explicit
    Deny of predict, then both get 403 AccessDenied naming the caller and the route."""
    status, headers, body = gateway.signed("POST", PATH, BODY, credentials=gateway.outsider)
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert body["message"].startswith(
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/outsider/outsider is not authorized to "
        "perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:********9012:"
        f"{API_ID}/$default/POST/v1/models/credit-risk/predict because no identity-based"
    )
    status, _, body = gateway.signed("POST", PATH, BODY, credentials=gateway.denied)
    assert status == 403 and body["message"].endswith(
        "with an explicit deny in an identity-based policy"
    )
    assert gateway.function.calls == []


def test_a_presigned_url_is_verified_too(gateway: Gateway) -> None:
    """Given a query-string signature (botocore's presigner), then it is accepted, and refused
    when its query is changed or for a principal IAM does not allow."""
    request = AWSRequest("GET", gateway.url + PATH + "?explain=true")
    SigV4QueryAuth(gateway.allowed, "execute-api", REGION, expires=60).add_auth(request)
    gateway.api.routes.append(
        Route("GET /v1/models/{model}/predict", "GET", "/v1/models/{model}/predict", "scoring", IAM)
    )
    url = request.url.removeprefix(gateway.url)
    assert gateway.call("GET", url)[0] == 200
    assert gateway.call("GET", url.replace("explain=true", "explain=false"))[0] == 403
    request = AWSRequest("GET", gateway.url + PATH)
    SigV4QueryAuth(gateway.outsider, "execute-api", REGION, expires=60).add_auth(request)
    status, _, body = gateway.call("GET", request.url.removeprefix(gateway.url))
    assert status == 403 and "not authorized" in body["message"]
    assert len(gateway.function.calls) == 1


def test_refusals_are_in_the_access_log(gateway: Gateway, tmp_path: Any) -> None:
    gateway.api.access_log = tmp_path / "access.log"
    gateway.call("POST", PATH, BODY)
    gateway.signed("POST", PATH, BODY)
    deadline = time.monotonic() + 5  # the server writes its log line after the response
    while len(lines := gateway.api.access_log.read_text().splitlines()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first, second = (json.loads(line) for line in lines)
    assert (first["status"], first["errorMessage"]) == (403, "unsigned request")
    assert second["status"] == 200 and second["userArn"].endswith("assumed-role/client/client")


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_curls_own_sigv4_is_accepted(gateway: Gateway) -> None:
    """The README's curl call: `--aws-sigv4` with `--user` and the session token header."""
    credentials = gateway.allowed
    done = subprocess.run(
        [
            "curl", "-s", "-w", " %{http_code}",
            "--aws-sigv4", f"aws:amz:{REGION}:execute-api",
            "--user", f"{credentials.access_key}:{credentials.secret_key}",
            "-H", f"x-amz-security-token: {credentials.token}",
            "-H", "content-type: application/json",
            "-d", BODY.decode(),
            f"{gateway.url}{PATH}?explain=true",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.stdout.endswith(" 200"), done.stdout
    assert len(gateway.function.calls) == 1


def test_requests_signed_by_the_auth_helper_survive_any_query_encoding(gateway: Gateway) -> None:
    """Given `requests` with the SigV4 auth, when the query holds spaces (sent as `+`), `~`,
    `/` and repeated names and the body is a str with non-ASCII text, then the signature the
    gateway computes is the one the client computed."""
    import requests

    params = [("explain", "a b"), ("x", "~/é"), ("explain", "0")]
    answer = requests.post(
        gateway.url + PATH,
        params=params,
        data='{"instances": [{"name": "Zoë"}]}',
        headers={"content-type": "application/json"},
        auth=SigV4(gateway.allowed, REGION),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert "+" in gateway.function.calls[0]["rawQueryString"]
