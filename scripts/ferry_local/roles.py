"""The stack's IAM roles and their policies, created in moto as CloudFormation would create them:
a role with its inline `Policies` and `ManagedPolicyArns`, each AWS::IAM::Policy as an inline
policy of its roles, each AWS::IAM::ManagedPolicy attached to its roles. The platform then
authorizes every request against them (`moto_iam.py`). A condition key or operator the local
evaluator cannot evaluate is reported (`BuildReport.warnings`), never silently ignored.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ferry_local.iam_policy import unsupported_keys, unsupported_operators
from ferry_local.iam_resources import SUPPORTED_CONDITION_KEYS
from ferry_local.moto_iam import ensure_aws_managed_policy


class Build(Protocol):
    """What these creators need of `resources._Build`."""

    resolver: Any
    clients: Any
    report: Any

    def props(self, logical_id: str) -> dict[str, Any]: ...


def create_role(b: Build, lid: str) -> None:
    props = b.props(lid)
    name = b.resolver.physical_id(lid)
    iam = b.clients["iam"]
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            b.resolver.resolve(props.get("AssumeRolePolicyDocument", {}))
        ),
        Description=props.get("Description", ""),
        MaxSessionDuration=int(props.get("MaxSessionDuration", 3600)),
    )["Role"]
    b.resolver.set(lid, arn=role["Arn"], attributes={"RoleId": role["RoleId"]})
    for policy in props.get("Policies", []):
        _check_conditions(b, lid, policy["PolicyDocument"])
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    for arn in props.get("ManagedPolicyArns", []):
        ensure_aws_managed_policy(b.resolver.account_id, arn)
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)


def _check_conditions(b: Build, lid: str, document: dict[str, Any]) -> None:
    """A condition key the platform does not supply cannot match: say so, loudly."""
    missing = unsupported_keys([document], set(SUPPORTED_CONDITION_KEYS))
    if missing:
        b.report.warnings.append(
            f"{lid}: condition keys {sorted(missing)} are not evaluated locally; the "
            "statements using them never match here (in AWS they may)"
        )
    operators = unsupported_operators(document)
    if operators:
        b.report.warnings.append(
            f"{lid}: condition operators {sorted(operators)} are not evaluated locally; a "
            "request reaching a statement that uses them is refused with an error"
        )


def _role_names(b: Build, props: dict[str, Any], lid: str) -> list[str]:
    for kind in ("Users", "Groups"):
        if props.get(kind):
            b.report.warnings.append(f"{lid}: attached to {kind.lower()}, which are not emulated")
    return [str(role).rsplit("/", 1)[-1] for role in props.get("Roles", [])]


def create_policy(b: Build, lid: str) -> None:
    """AWS::IAM::Policy: an inline policy on each of its roles."""
    props = b.props(lid)
    _check_conditions(b, lid, props["PolicyDocument"])
    for role in _role_names(b, props, lid):
        b.clients["iam"].put_role_policy(
            RoleName=role,
            PolicyName=props["PolicyName"],
            PolicyDocument=json.dumps(props["PolicyDocument"]),
        )


def create_managed_policy(b: Build, lid: str) -> None:
    """AWS::IAM::ManagedPolicy: created, then attached to each of its roles."""
    props = b.props(lid)
    _check_conditions(b, lid, props["PolicyDocument"])
    iam = b.clients["iam"]
    arn = iam.create_policy(
        PolicyName=props.get("ManagedPolicyName") or b.resolver.physical_id(lid),
        Path=props.get("Path", "/"),
        PolicyDocument=json.dumps(props["PolicyDocument"]),
        Description=props.get("Description", ""),
    )["Policy"]["Arn"]
    b.resolver.set(lid, ref=arn)
    for role in _role_names(b, props, lid):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
