"""Who the platform's own work runs as, and the role sessions AWS services would hold.

- The platform principal: an IAM role the platform creates for itself, before anything else,
  allowed everything. It stands for CloudFormation (creating the stack's resources), for the
  snapshot and restore of buckets and tables, and for the AWS services the platform plays
  (the alarm evaluator, EventBridge deliveries without a role, S3 notifications). Its
  credentials never leave this process: not in local.json, never given to a function.
- Role sessions for services: a function runs with a session of its execution role (the
  Lambda service assumes it), a state machine's tasks with its role, an EventBridge target
  with the target's role. AWS only issues one when the role's trust policy names that
  service as a principal; `session()` checks the same, then issues it through moto's STS
  (the services assume roles themselves, not through a caller's credentials). Sessions are
  cached per (role, service) and renewed before they expire.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ferry_local.iam_policy import action_matches
from ferry_local.moto_iam import SessionCredentials

PLATFORM_ROLE = "ferry-local-platform"
PLATFORM_SERVICE = "cloudformation.amazonaws.com"
SESSION_SECONDS = 3600
RENEW_BEFORE = timedelta(minutes=5)
_ALLOW_EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


class UntrustedService(Exception):
    """A role's trust policy does not let this service assume it (AWS refuses it too)."""


def trusts(trust_policy: Mapping[str, Any] | str, service: str) -> bool:
    """Does this trust policy let `service` (e.g. lambda.amazonaws.com) call sts:AssumeRole?"""
    doc = json.loads(trust_policy) if isinstance(trust_policy, str) else trust_policy
    allowed = False
    statements = doc.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if not action_matches(statement.get("Action"), "sts:AssumeRole"):
            continue
        principal = statement.get("Principal") or {}
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        named = service in ([services] if isinstance(services, str) else services)
        if named and statement.get("Effect") == "Deny":
            return False
        allowed = allowed or (named and statement.get("Effect") == "Allow")
    return allowed


class Principals:
    """The platform principal and the service-held role sessions of one moto account."""

    def __init__(
        self, account_id: str, region: str, *, session_seconds: int = SESSION_SECONDS
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.session_seconds = session_seconds
        self._sessions: dict[tuple[str, str], SessionCredentials] = {}
        self._lock = threading.Lock()
        self.platform_role_arn = ""

    def create_platform_role(self) -> str:
        """The platform's own role, allowed everything (created in moto, not in the stack)."""
        iam = self._iam()
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": PLATFORM_SERVICE},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam.create_role(
            role_name=PLATFORM_ROLE,
            assume_role_policy_document=json.dumps(trust),
            path="/",
            permissions_boundary=None,
            description="The local platform's own work: never a person's, never a function's",
            tags=[],
            max_session_duration=None,
        )
        iam.put_role_policy(PLATFORM_ROLE, "everything", json.dumps(_ALLOW_EVERYTHING))
        self.platform_role_arn = str(role.arn)
        return self.platform_role_arn

    def platform_session(self) -> SessionCredentials:
        if not self.platform_role_arn:
            self.create_platform_role()
        return self.session(self.platform_role_arn, PLATFORM_SERVICE)

    def session(self, role_arn: str, service: str) -> SessionCredentials:
        """A session of `role_arn` as `service` holds it (renewed before it expires)."""
        from moto.core.utils import utcnow

        with self._lock:
            held = self._sessions.get((role_arn, service))
            if held is not None and held.expiration - utcnow() > RENEW_BEFORE:
                return held
            role = self._iam().get_role_by_arn(role_arn)
            if not trusts(role.assume_role_policy_document, service):
                raise UntrustedService(f"{role_arn} does not trust {service} to assume it")
            issued = self._sts().assume_role(
                region_name=self.region,
                role_session_name=f"{service.split('.')[0]}-{uuid.uuid4().hex[:12]}",
                role_arn=role_arn,
                policy=None,
                duration=self.session_seconds,
                external_id=None,
            )
            held = SessionCredentials(
                issued.access_key_id,
                issued.secret_access_key,
                issued.session_token,
                issued.expiration,
            )
            self._sessions[role_arn, service] = held
            return held

    def _iam(self) -> Any:
        from moto.iam.models import iam_backends

        return iam_backends[self.account_id]["aws"]

    def _sts(self) -> Any:
        from moto.sts.models import sts_backends

        return sts_backends[self.account_id]["aws"]
