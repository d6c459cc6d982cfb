"""Local identities: named principals with credentials of their persona's role in the stack.

The stack defines one IAM role per persona (`infra/access.py`) and names each in an output
`Identity<Persona>RoleArn`. The local platform assumes each role through the local STS, as a
person does from SSO, and writes the credentials to `.ferry/local.json` under `identities`, so
every command, test, bench and example acts as a persona with exactly that role's permissions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

OUTPUT = re.compile(r"^Identity(?P<persona>[A-Za-z0-9]+)RoleArn$")
SESSION_SECONDS = 12 * 3600  # the roles' maximum session duration


@dataclass(frozen=True)
class Identity:
    """A persona's temporary credentials (an assumed-role session) and whose they are."""

    name: str
    role_arn: str
    arn: str  # the assumed-role principal, as STS GetCallerIdentity names it
    access_key_id: str
    secret_access_key: str
    session_token: str

    def boto3_kwargs(self) -> dict[str, str]:
        """For `boto3.client(..., **identity.boto3_kwargs())` or a `boto3.Session`."""
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }

    def environment(self) -> dict[str, str]:
        """The same credentials as the AWS SDKs' and CLIs' environment variables."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    def to_json(self) -> dict[str, str]:
        document = asdict(self)
        del document["name"]
        return document


def persona_name(output_key: str) -> str | None:
    """`IdentityDataScientistRoleArn` → `data-scientist`; None for any other output."""
    match = OUTPUT.match(output_key)
    if match is None:
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", "-", match["persona"]).lower()


def persona_roles(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The stack's personas and their role ARNs, from its outputs."""
    roles = {}
    for key, value in outputs.items():
        name = persona_name(key)
        if name is not None:
            roles[name] = str(value)
    return roles


def create_identities(
    sts: Any, outputs: Mapping[str, Any], *, seconds: int = SESSION_SECONDS, prefix: str = ""
) -> dict[str, Identity]:
    """Assume each persona's role with `sts`, the session named `{prefix}{persona}`.

    A caller that is itself an assumed role (a CI job) chains roles, which AWS limits to one
    hour: it passes a shorter `seconds`."""
    identities = {}
    for name, role_arn in sorted(persona_roles(outputs).items()):
        answer = sts.assume_role(
            RoleArn=role_arn, RoleSessionName=f"{prefix}{name}", DurationSeconds=seconds
        )
        credentials = answer["Credentials"]
        identities[name] = Identity(
            name=name,
            role_arn=role_arn,
            arn=answer["AssumedRoleUser"]["Arn"],
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
        )
    return identities


def load_identities(document: Mapping[str, Any]) -> dict[str, Identity]:
    """The `identities` of a `.ferry/local.json` document (empty when it has none)."""
    found = document.get("identities") or {}
    return {name: Identity(name=name, **fields) for name, fields in found.items()}
