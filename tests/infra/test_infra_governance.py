"""Governance in the template: only the governance function writes the registry and audit tables;
anchors are locked."""

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


def test_only_the_governance_role_can_write_the_registry_and_audit(template: Template) -> None:
    """
    Given every role in the stack
    When I collect the DynamoDB write actions each is allowed on the registry and audit tables
    Then the governance role has its conditional Put/Update on the registry (and Delete, for
        the retrain workflow's lock, approval and canary items) and Put on the audit table
    And no other role writes the registry; of the others only batch scoring's roles append to
        the audit table (each batch run's own entry); no persona writes either (people reach
        the governance function through the API)
    """
    registry, audit = _table_arn(template, "Registry"), _table_arn(template, "Audit")
    roles = _statements_by_role(template)
    governance = _logical_id(template, "AWS::IAM::Role", "GovernanceRole")
    assert _writes_on(roles[governance], registry) == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert {role for role, st in roles.items() if _writes_on(st, registry)} == {governance}
    audit_writers = {role for role, st in roles.items() if _writes_on(st, audit)} - {governance}
    assert audit_writers and all(role.startswith("Batch") for role in audit_writers)
    for persona in ("client", "data-scientist", "approver", "admin"):
        role = _logical_id(template, "AWS::IAM::Role", f"Access{_camel(persona)}Role")
        assert role in roles and not _writes_on(roles[role], registry) | _writes_on(
            roles[role], audit
        )


def test_governance_starts_retraining_and_resumes_runs(template: Template) -> None:
    """The governance role may start the retraining state machine (by its stack-derived name,
    so the machine that invokes the function is no dependency of it) and resume runs."""
    governance = _logical_id(template, "AWS::IAM::Role", "GovernanceRole")
    statements = _statements_by_role(template)[governance]
    (start,) = [s for s in statements if s.get("Sid") == "StartRetraining"]
    assert "AWS::StackName" in json.dumps(start["Resource"])
    assert "stateMachine:" in json.dumps(start["Resource"])
    (resume,) = [s for s in statements if "states:SendTaskSuccess" in _actions(s)]
    assert _actions(resume) == {"states:SendTaskSuccess", "states:SendTaskFailure"}
    (machine,) = [
        r
        for lid, r in template.find_resources("AWS::StepFunctions::StateMachine").items()
        if lid.startswith("RetrainStateMachine")
    ]
    function_id = _logical_id(template, "AWS::Lambda::Function", "GovernanceFunction")
    variables = template.find_resources("AWS::Lambda::Function")[function_id]["Properties"][
        "Environment"
    ]["Variables"]
    name = json.dumps(machine["Properties"]["StateMachineName"])
    assert "AWS::StackName" in name and "-Retrain" in name
    assert "-Retrain" in json.dumps(variables["RETRAIN_STATE_MACHINE_ARN"])
    assert json.dumps(start["Resource"]) == json.dumps(variables["RETRAIN_STATE_MACHINE_ARN"])


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
