"""The IAM patches of moto 5.2.5: every request after resource creation is authorized as AWS
would authorize it. Part of `moto_hooks.PATCHES` (installed, version-checked and removed with
the others); kept in their own module because they are one concern.

What moto does and what these patches change:

- `ActionAuthenticatorMixin._authenticate_and_authorize_action` (every JSON, query and S3
  request once `INITIAL_NO_AUTH_ACTION_COUNT` is reached): moto checks JSON services against
  resource `*`, names the action by the signing name (`monitoring:PutMetricData`,
  `lambda:Invoke`), treats a non-matching Allow condition as a Deny, never checks KMS for
  SSE-KMS objects and never expires a session. Here the signature is still moto's check; then
  `iam_resources.checks` names each action and resource as the Service Authorization Reference
  does, `iam_policy.evaluate` decides, and for S3 an object written to (read from) an SSE-KMS
  bucket also needs kms:GenerateDataKey (kms:Decrypt) on its key, as S3 asks KMS on the
  caller's behalf; sts:AssumeRole also needs the role's trust policy to name the caller.
  Refusals carry AWS's text: who, the action, the resource.
- `IAMRequestBase._create_aws_request`: a request with no body and no form (a Lambda GET)
  was signed over moto's querystring fallback (its headers), so its signature never matched;
  `BaseResponse.decompress_request_body`: a gzip body (PutMetricData) was checked after moto
  decompressed it, so its signature never matched either.
- Step Functions: the interpreter calls Lambda, SNS, SQS, ... with the fixed key "ak". Here a
  task uses credentials of the execution's role (or of the task's own `Credentials`), issued
  by the platform (`set_role_credentials`), so the role must allow what the task does.

`enforcing(True)` starts checking every later request (moto's setting and counter, as
`POST /moto-api/reset-auth` sets them); uninstalling restores both.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferry_local.iam_policy import UnsupportedCondition, action_matches, denial_message, evaluate
from ferry_local.iam_resources import Check, Request, checks, kms_key_arn

log = logging.getLogger("ferry.local.iam")


@dataclass(frozen=True)
class SessionCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime


# role ARN, service principal → credentials of a session of that role
RoleCredentials = Callable[[str, str], SessionCredentials]


class _IamState:
    def __init__(self) -> None:
        self.saved: tuple[float, int] | None = None
        self.role_credentials: RoleCredentials | None = None
        self.task_role = threading.local()


_iam = _IamState()


def set_role_credentials(provider: RoleCredentials | None) -> None:
    """Who issues role sessions to the Step Functions interpreter (None: moto's own "ak")."""
    _iam.role_credentials = provider


def enforcing(on: bool) -> None:
    """Check every request from now on (`on`), or none, as moto's reset-auth endpoint does."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    if _iam.saved is None:
        _iam.saved = (settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count)
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if on else float("inf")
    ActionAuthenticatorMixin.request_count = 0


def restore_settings() -> None:
    """Put back moto's setting and counter as they were before the first `enforcing()`."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    if _iam.saved is not None:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = _iam.saved
        _iam.saved = None
    _iam.role_credentials = None


def is_enforcing() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def ensure_aws_managed_policy(account_id: str, policy_arn: str) -> None:
    """Make an AWS managed policy (`arn:aws:iam::aws:policy/...`) attachable in moto, from the
    copy moto ships; moto loads all of them only when told to, at a second or more a backend."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, iam_backends

    backend = iam_backends[account_id]["aws"]
    if (
        not policy_arn.startswith("arn:aws:iam::aws:policy/")
        or policy_arn in backend.managed_policies
    ):
        return
    name = policy_arn.rsplit("/", 1)[-1]
    data = json.loads(aws_managed_policies_data).get(name)
    if data is None:
        raise LookupError(f"{policy_arn} is not an AWS managed policy moto {name!r} knows")
    policy = AWSManagedPolicy.from_data(name, account_id, "us-east-1", data)
    backend.managed_policies[policy.arn] = policy


# ---------------------------------------------------------------- errors


# The query-protocol services' code for a refusal, where it is not AccessDenied.
_QUERY_DENIAL_CODES = {"sns": "AuthorizationError"}
_QUERY_SERVICES = frozenset({"sns", "sts", "iam"})


def _error(code: str, message: str, status: int, *, headers: Any, service: str) -> Exception:
    """A refusal in the protocol of the request: query services (a form body) get AWS's XML
    error (`AccessDenied`, SNS's `AuthorizationError`), JSON, CBOR and REST services the JSON
    one (`AccessDeniedException`)."""
    from moto.core.exceptions import JsonRESTError, _RESTError

    content_type = str(headers.get("Content-Type", ""))
    query = "x-www-form-urlencoded" in content_type or (
        service in _QUERY_SERVICES and "json" not in content_type
    )
    error: Exception
    if query:
        plain = code.removesuffix("Exception")
        if plain == "AccessDenied":
            plain = _QUERY_DENIAL_CODES.get(service, plain)
        error = _RESTError(plain, message)
    else:
        error = JsonRESTError(code, message)
    error.code = status  # type: ignore[attr-defined]
    return error


def _s3_error(code: str, message: str) -> Exception:
    from moto.s3.exceptions import S3ClientError

    return S3ClientError(code, message)


# ---------------------------------------------------------------- authorization


def _authorize_action(original: Callable[..., Any]) -> Callable[..., Any]:
    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        """Moto's signature check, then the checks AWS makes (see the module docstring)."""
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.iam.access_control import S3IAMRequest

        if not is_enforcing():
            return original(self, iam_request_cls, resource)  # type: ignore[no-any-return]
        if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
            return None
        path = self.raw_path + (f"?{self.parsed_url.query}" if self.parsed_url.query else "")
        iam_request = iam_request_cls(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=getattr(self, _SENT_BODY, None) or self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        iam_request.check_signature()
        is_s3 = issubclass(iam_request_cls, S3IAMRequest)
        principal = _principal(iam_request, is_s3)
        if iam_request._action == "sts:GetCallerIdentity":
            return None  # always allowed, as in AWS
        found = _s3_checks(self, iam_request, resource) if is_s3 else _checks(self, iam_request)
        for check in found:
            _require(principal, check)
            if check.action == "sts:AssumeRole":
                _require_trust(principal, check.resource)
        return None

    return authorize


@dataclass(frozen=True)
class _Principal:
    """The caller of one request, its policies, and how its service words a refusal."""

    arn: str
    account: str
    policies: list[Any]
    is_s3: bool
    headers: Any
    service: str

    def refusal(self, code: str, message: str, status: int = 403) -> Exception:
        if self.is_s3:
            return _s3_error(code.removesuffix("Exception"), message)
        return _error(code, message, status, headers=self.headers, service=self.service)


def _principal(iam_request: Any, is_s3: bool) -> _Principal:
    """The caller and its policies; an expired session is refused as AWS refuses it."""
    from moto.core.utils import utcnow
    from moto.sts.models import sts_backends

    key = iam_request._access_key
    principal = _Principal(
        key.arn,
        iam_request.account_id,
        [_document(policy) for policy in key.collect_policies()],
        is_s3,
        iam_request._headers,
        iam_request._service,
    )
    session = sts_backends[iam_request.account_id]["aws"].get_assumed_role_from_access_key(
        key._access_key_id
    )
    if session is not None and session.expiration <= utcnow():
        if is_s3:
            raise _s3_error("ExpiredToken", "The provided token has expired.")
        message = "The security token included in the request is expired"
        raise principal.refusal("ExpiredTokenException", message, 400)
    return principal


def _trusted_names(principal_arn: str, account: str) -> set[str]:
    """How a trust policy may name this caller: itself, its role (for a session), its account."""
    names = {principal_arn, account, f"arn:aws:iam::{account}:root", "*"}
    if ":assumed-role/" in principal_arn:
        role = principal_arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
        names.add(f"arn:aws:iam::{account}:role/{role}")
    return names


def _require_trust(principal: _Principal, role_arn: str) -> None:
    """sts:AssumeRole also needs the role's trust policy to name the caller (moto's own trust
    check is part of the evaluation these patches replace)."""
    from moto.iam.models import iam_backends

    try:
        role = iam_backends[principal.account]["aws"].get_role_by_arn(role_arn)
    except Exception:
        return  # no such role: STS answers that itself
    trust = json.loads(role.assume_role_policy_document)
    names = _trusted_names(principal.arn, principal.account)
    allowed = False
    statements = trust.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if not action_matches(statement.get("Action"), "sts:AssumeRole"):
            continue
        named = (statement.get("Principal") or {}).get("AWS", [])
        named = {named} if isinstance(named, str) else set(named)
        if names & named:
            if statement.get("Effect") == "Deny":
                allowed = False
                break
            allowed = True
    if not allowed:
        message = (
            f"User: {principal.arn} is not authorized to perform: sts:AssumeRole on resource: "
            f"{role_arn} because the role's trust policy does not name it"
        )
        log.warning("access denied: %s", message)
        raise principal.refusal("AccessDeniedException", message)


def _document(policy: Any) -> Any:
    """A moto policy object (managed: its default version), inline text or dict → a document."""
    versions = getattr(policy, "versions", None)
    if versions:
        return json.loads(next(v for v in versions if v.is_default).document)
    if isinstance(policy, str):
        return json.loads(policy)
    document = policy["policy_document"] if isinstance(policy, Mapping) else policy
    return json.loads(document) if isinstance(document, str) else document


def _require(principal: _Principal, check: Check) -> None:
    context = {
        "aws:PrincipalArn": principal.arn,
        "aws:PrincipalAccount": principal.account,
        **{k: v for k, v in check.context.items() if v is not None},
    }
    try:
        decision = evaluate(principal.policies, check.action, check.resource, context)
    except UnsupportedCondition as exc:  # refused, and said why: never a silent allow
        message = f"{check.action} on {check.resource} for {principal.arn}: {exc}"
        log.error("access refused: %s", message)
        raise principal.refusal("AccessDeniedException", message) from exc
    if decision.allowed:
        return
    message = denial_message(principal.arn, check.action, check.resource, decision)
    log.warning("access denied: %s", message)
    raise principal.refusal("AccessDeniedException", message)


def _params(response: Any) -> Mapping[str, Any]:
    """The request's parameters as botocore's model shapes them (moto's own parser)."""
    params = getattr(response, "params", None)
    if not params:
        try:
            response.parse_parameters(response.normalized_request)
            params = response.params
        except Exception:
            params = None
    if params:
        return params  # type: ignore[no-any-return]
    try:
        body = json.loads(response.body or "{}")
        return body if isinstance(body, dict) else {}
    except (TypeError, ValueError):
        return {key: value[0] for key, value in (response.querystring or {}).items()}


def _checks(response: Any, iam_request: Any) -> list[Check]:
    service, operation = iam_request._action.split(":", 1)
    request = Request(
        service=service,
        operation=operation,
        params=_params(response),
        region=iam_request._region,
        account=iam_request.account_id,
        path=response.path,
        resolve_kms_key=lambda key: _resolve_kms_key(
            iam_request.account_id, iam_request._region, key
        ),
    )
    return checks(request)


def _resolve_kms_key(account: str, region: str, key: str) -> str:
    from moto.kms.models import kms_backends

    backend = kms_backends[account][region]
    key_id = backend.get_key_id_from_alias(key.split(":", 5)[-1]) if "alias/" in key else key
    return str(backend.describe_key(key_id or key).arn)


# ---------------------------------------------------------------- S3 (and its KMS calls)


# moto's names for S3 operations that IAM authorizes under another action.
_S3_IAM_ACTIONS = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:SelectObject": "s3:GetObject",
}


def _s3_checks(response: Any, iam_request: Any, resource: str) -> list[Check]:
    """moto's S3 action and ARN, with `s3:prefix` for listings, and the KMS permissions S3
    uses on the caller's behalf for SSE-KMS objects."""
    action = _S3_IAM_ACTIONS.get(iam_request._action, iam_request._action)
    data = iam_request._data or {}
    context: dict[str, Any] = {}
    if action == "s3:ListBucket":
        prefix = data.get("prefix")
        context["s3:prefix"] = (prefix[0] if isinstance(prefix, list) else prefix) or ""
    bucket, _, key = resource.split(":::", 1)[-1].partition("/")
    if action == "s3:DeleteObject" and not key and iam_request._method == "POST":
        return _multi_delete_checks(response, bucket)
    found = [Check(action, resource, context)]
    copy_source = response.headers.get("x-amz-copy-source")
    if copy_source and action == "s3:PutObject":
        source_bucket, _, source_key = copy_source.lstrip("/").partition("/")
        source_key = source_key.split("?", 1)[0]
        found.append(Check("s3:GetObject", f"arn:aws:s3:::{source_bucket}/{source_key}"))
        found += _kms_for_read(iam_request, source_bucket, source_key)
    if action == "s3:PutObject" and key:
        found += _kms_for_write(response, iam_request, bucket)
    elif action in ("s3:GetObject", "s3:GetObjectVersion") and iam_request._method == "GET":
        found += _kms_for_read(iam_request, bucket, key, _first(data.get("versionId")))
    return found


def _multi_delete_checks(response: Any, bucket: str) -> list[Check]:
    """DeleteObjects is authorized per object, as AWS does it: s3:DeleteObject on each key
    (s3:DeleteObjectVersion on each one named with a version), never on the bucket."""
    import xml.etree.ElementTree as ET

    body = response.body
    try:
        root = ET.fromstring(body.encode() if isinstance(body, str) else body)
    except ET.ParseError:
        return [Check("s3:DeleteObject", f"arn:aws:s3:::{bucket}")]  # S3 answers MalformedXML
    found = []
    for element in root.iter():
        if not element.tag.endswith("Object"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in element}
        action = "s3:DeleteObjectVersion" if fields.get("VersionId") else "s3:DeleteObject"
        found.append(Check(action, f"arn:aws:s3:::{bucket}/{fields.get('Key', '')}"))
    return found or [Check("s3:DeleteObject", f"arn:aws:s3:::{bucket}")]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _kms_for_write(response: Any, iam_request: Any, bucket_name: str) -> list[Check]:
    from moto.s3.models import s3_backends

    headers = response.headers
    algorithm = headers.get("x-amz-server-side-encryption")
    key_id = headers.get("x-amz-server-side-encryption-aws-kms-key-id")
    if not algorithm:
        try:
            bucket = s3_backends[iam_request.account_id]["aws"].get_bucket(bucket_name)
        except Exception:
            return []  # no such bucket: S3 answers NoSuchBucket after authorization
        default = ((bucket.encryption or {}).get("Rule") or {}).get(
            "ApplyServerSideEncryptionByDefault"
        ) or {}
        algorithm, key_id = default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")
    if algorithm not in ("aws:kms", "aws:kms:dsse"):
        return []
    return [Check("kms:GenerateDataKey", _kms_arn(iam_request, key_id))]


def _kms_for_read(
    iam_request: Any, bucket_name: str, key_name: str, version_id: str | None = None
) -> list[Check]:
    from moto.s3.models import s3_backends

    try:
        obj = s3_backends[iam_request.account_id]["aws"].get_object(
            bucket_name, key_name, version_id=version_id
        )
    except Exception:
        return []  # no such object: S3 answers NoSuchKey after authorization
    if obj is None or obj.encryption not in ("aws:kms", "aws:kms:dsse"):
        return []
    return [Check("kms:Decrypt", _kms_arn(iam_request, obj.kms_key_id))]


def _kms_arn(iam_request: Any, key_id: str | None) -> str:
    region, account = iam_request._region, iam_request.account_id
    if not key_id:  # the AWS managed key for S3
        return _resolve_kms_key(account, region, "alias/aws/s3")
    request = Request(
        "kms",
        "Decrypt",
        {},
        region,
        account,
        resolve_kms_key=lambda key: _resolve_kms_key(account, region, key),
    )
    return kms_key_arn(request, key_id)


# ---------------------------------------------------------------- signatures


def _signed_body(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_aws_request(self: Any) -> Any:
        """Sign over the body that was sent: a request without one signed an empty payload."""
        content_type = str(self._headers.get("Content-Type", ""))
        if self._body or "x-www-form-urlencoded" in content_type:
            return original(self)
        data, self._data = self._data, {}
        try:
            return original(self)
        finally:
            self._data = data

    return create_aws_request


_SENT_BODY = "_ferry_sent_body"


def _keep_sent_body(original: Callable[..., Any]) -> Callable[..., Any]:
    def decompress_request_body(self: Any, request: Any) -> None:
        """moto decompresses a gzip body (botocore compresses PutMetricData) before anything
        checks its signature, which covers the bytes sent: keep those for the check."""
        if request.content_encoding == "gzip" and self.allow_request_decompression:
            sent = request.get_data()
            setattr(self, _SENT_BODY, sent)
            request.stream = io.BytesIO(sent)
            request._cached_data = None  # werkzeug's cache of what get_data() read
        original(self, request)

    return decompress_request_body


# ---------------------------------------------------------------- Step Functions tasks


def _task_as_execution_role(original: Callable[..., Any]) -> Callable[..., Any]:
    def eval_execution(self: Any, env: Any) -> Any:
        """A task runs as its execution's role (`$$.Execution.RoleArn`)."""
        role = None
        with contextlib.suppress(AttributeError, KeyError, TypeError):
            role = env.states.context_object.context_object_data["Execution"]["RoleArn"]
        previous = getattr(_iam.task_role, "arn", None)
        _iam.task_role.arn = role
        try:
            return original(self, env)
        finally:
            _iam.task_role.arn = previous

    return eval_execution


def _task_client(original: Callable[..., Any]) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        """moto's client for a task's service call, signed as the task's role."""
        provider = _iam.role_credentials
        role = getattr(state_credentials, "role_arn", None) or getattr(_iam.task_role, "arn", None)
        if provider is None or not role:
            return original(region=region, service=service, state_credentials=state_credentials)
        import boto3
        from botocore.config import Config
        from moto.settings import moto_server_port
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import (
            TimeoutSeconds,
        )

        creds = provider(role, "states.amazonaws.com")
        return boto3.client(
            service,  # type: ignore[call-overload]
            region_name=region,
            endpoint_url=f"http://localhost:{moto_server_port()}",
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
        )

    return boto_client_for


_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task"
# Every module of the interpreter that imported `boto_client_for` by name.
_TASK_CLIENT_MODULES = (
    f"{_TASKS}.lambda_eval_utils",
    *(
        f"{_TASKS}.service.state_task_service_{name}"
        for name in (
            "unsupported",
            "glue",
            "events",
            "ecs",
            "sqs",
            "sfn",
            "dynamodb",
            "batch",
            "sns",
            "aws_sdk",
        )
    ),
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer"
    ".resource_eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader"
    ".eval.resource_eval_s3",
)


def iam_patches(patch: Callable[[str, str, str, Callable[[Any], Any]], Any]) -> tuple[Any, ...]:
    """The patches of this module, built with `moto_hooks.Patch` (passed in: no import cycle)."""
    return (
        patch(
            "moto.core.authorization",
            "ActionAuthenticatorMixin",
            "_authenticate_and_authorize_action",
            _authorize_action,
        ),
        patch("moto.iam.access_control", "IAMRequestBase", "_create_aws_request", _signed_body),
        patch("moto.core.responses", "BaseResponse", "decompress_request_body", _keep_sent_body),
        patch(
            f"{_TASKS}.state_task_lambda",
            "StateTaskLambda",
            "_eval_execution",
            _task_as_execution_role,
        ),
        patch(
            f"{_TASKS}.service.state_task_service",
            "StateTaskService",
            "_eval_execution",
            _task_as_execution_role,
        ),
        *(patch(module, "", "boto_client_for", _task_client) for module in _TASK_CLIENT_MODULES),
    )
