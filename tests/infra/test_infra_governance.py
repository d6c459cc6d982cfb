"""Governance in the template: only the promotion path writes stage pointers; anchors are locked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Template

from infra.config import ENVIRONMENTS
from infra.stack import stack_name

if TYPE_CHECKING:
    from conftest import Synthesis

REGISTRY_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:*",
    "*",
}


def _logical_id(template: Template, resource_type: str, id_part: str) -> str:
    (logical_id,) = [i for i in template.find_resources(resource_type) if id_part in i]
    return logical_id


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


def _statements_by_role(template: Template) -> dict[str, list[dict[str, Any]]]:
    """Every role's statements, inline or through attached policies."""
    out: dict[str, list[dict[str, Any]]] = {}
    for role_id, role in template.find_resources("AWS::IAM::Role").items():
        out[role_id] = [
            s
            for p in role["Properties"].get("Policies", [])
            for s in p["PolicyDocument"]["Statement"]
        ]
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for ref in policy["Properties"].get("Roles", []):
            out.setdefault(ref["Ref"], []).extend(
                policy["Properties"]["PolicyDocument"]["Statement"]
            )
    return out


def _table_arn(template: Template, id_part: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [_logical_id(template, "AWS::DynamoDB::Table", id_part), "Arn"]}


def _writes_on(statements: list[dict[str, Any]], arn: dict[str, Any]) -> set[str]:
    return {
        a
        for s in statements
        if s["Effect"] == "Allow" and (arn in _resources(s) or "*" in _resources(s))
        for a in _actions(s) & REGISTRY_WRITES
    }


def test_only_the_governance_role_can_write_the_registry(template: Template) -> None:
    """
    Given every role in the stack
    When I collect the DynamoDB write actions each is allowed on the registry table
    Then the scoring role has none, the governance role has its conditional Put/Update (and
        Delete, for the retrain workflow's lock, approval and canary items), and no other
        function or service role has any (only the promotion path moves stage pointers)
    And of the people's roles, exactly those who record governance decisions with the `ferry`
        command (data scientist, approver, admin) may write it; only those who decide
        (approver, admin) may Delete, which answering an approval request does; the API
        client's role may not write at all
    """
    registry = _table_arn(template, "Registry")
    roles = _statements_by_role(template)
    scoring = _logical_id(template, "AWS::IAM::Role", "ScoringRole")
    governance = _logical_id(template, "AWS::IAM::Role", "GovernanceRole")
    assert _writes_on(roles[scoring], registry) == set()
    assert _writes_on(roles[governance], registry) == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    people = {
        role: persona
        for persona in ("client", "data-scientist", "approver", "admin")
        for role in [_logical_id(template, "AWS::IAM::Role", f"Access{_camel(persona)}Role")]
    }
    writers = {role for role, st in roles.items() if _writes_on(st, registry)}
    assert writers - set(people) == {governance}
    assert {people[r] for r in writers & set(people)} == {"data-scientist", "approver", "admin"}
    deleters = {
        people[r]
        for r in writers & set(people)
        if "dynamodb:DeleteItem" in _writes_on(roles[r], registry)
    }
    assert deleters == {"approver", "admin"}


def _camel(persona: str) -> str:
    return "".join(part.capitalize() for part in persona.split("-"))


def test_governance_appends_to_the_audit_table_but_cannot_rewrite_it(template: Template) -> None:
    audit = _table_arn(template, "Audit")
    governance = _logical_id(template, "AWS::IAM::Role", "GovernanceRole")
    assert _writes_on(_statements_by_role(template)[governance], audit) == {"dynamodb:PutItem"}


def test_governance_publishes_only_ferry_registry_events_on_the_default_bus(
    template: Template,
) -> None:
    governance = _logical_id(template, "AWS::IAM::Role", "GovernanceRole")
    (statement,) = [
        s for s in _statements_by_role(template)[governance] if "events:PutEvents" in _actions(s)
    ]
    assert statement["Condition"] == {"StringEquals": {"events:source": "ferry.registry"}}
    assert "event-bus/default" in json.dumps(statement["Resource"])


def test_anchor_bucket_is_compliance_locked_versioned_encrypted_and_private(
    template: Template, env: str
) -> None:
    """
    Given an environment's audit_anchor_retention_days
    When I read the anchor bucket and its policy
    Then Object Lock is on in COMPLIANCE mode for that many days, versioning is on, objects are
        KMS-encrypted with the bucket's own key, public access is blocked and TLS is required
    """
    bucket_id = _logical_id(template, "AWS::S3::Bucket", "GovernanceAnchorBucket")
    props = template.find_resources("AWS::S3::Bucket")[bucket_id]["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {
            "DefaultRetention": {
                "Mode": "COMPLIANCE",
                "Days": ENVIRONMENTS[env].audit_anchor_retention_days,
            }
        },
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (sse,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = _logical_id(template, "AWS::KMS::Key", "GovernanceAnchorKey")
    assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (policy,) = [
        p
        for p in template.find_resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    deny_tls = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert deny_tls


def test_governance_function_settings_come_from_config(template: Template, env: str) -> None:
    function_id = _logical_id(template, "AWS::Lambda::Function", "GovernanceFunction")
    variables = template.find_resources("AWS::Lambda::Function")[function_id]["Properties"][
        "Environment"
    ]["Variables"]
    assert variables["APPROVAL_REQUIRED"] == str(ENVIRONMENTS[env].approval_required).lower()
    assert variables["AUDIT_ANCHOR_BUCKET"] == {
        "Ref": _logical_id(template, "AWS::S3::Bucket", "GovernanceAnchorBucket")
    }
    assert variables["FERRY_ENV"] == env


def test_governance_image_context_holds_only_what_the_image_copies(synthesis: Synthesis) -> None:
    manifest_path = synthesis.outdir / f"{stack_name(ENVIRONMENTS['dev'])}.assets.json"
    manifest = json.loads(manifest_path.read_text())
    (image,) = [
        i
        for i in manifest["dockerImages"].values()
        if i["source"]["dockerFile"] == "functions/governance/Dockerfile"
    ]
    context = synthesis.outdir / image["source"]["directory"]
    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    assert "functions/governance/handler.py" in files
    allowed = ("functions/governance/", "layers/core/", "requirements/runtime.txt")
    assert [f for f in files if not f.startswith(allowed)] == []
    assert [f for f in files if "__pycache__" in Path(f).parts] == []
