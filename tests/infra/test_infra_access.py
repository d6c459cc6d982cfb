"""The people's roles in the template: one per persona, least privilege, assumable in-account."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from infra.access import GOVERNANCE_GRANTS, LIST_ACTIONS, PERSONAS, output_id
from infra.api import GOVERNANCE_ROUTES, ROUTES

STAGES = ("production", "staging")

ROLE_IDS = {p: "Access" + "".join(x.capitalize() for x in p.split("-")) + "Role" for p in PERSONAS}


def _role(template: Template, persona: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in template.find_resources("AWS::IAM::Role").items()
        if lid.startswith(ROLE_IDS[persona]) and "Policy" not in lid
    ]
    return found


def _statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    return [
        s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"].get("Roles", [])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


def test_each_persona_has_a_role_assumable_from_this_account_and_an_output(
    template: Template, template_json: dict[str, Any]
) -> None:
    for persona in PERSONAS:
        role_id, role = _role(template, persona)
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Action"] == "sts:AssumeRole"
        assert ":root" in json.dumps(trust["Principal"])  # this account only, no other
        assert role["Properties"]["MaxSessionDuration"] == 12 * 3600
        output = template_json["Outputs"][output_id(persona)]
        assert output["Value"] == {"Fn::GetAtt": [role_id, "Arn"]}


def test_the_client_may_only_invoke_the_api_routes(template: Template) -> None:
    """
    Given the API client's role
    Then its only action is execute-api:Invoke, on exactly the API's routes (a path parameter
        as *), of this stage's API and stage: no bucket, table, queue or function
    """
    role_id, _ = _role(template, "client")
    (statement,) = _statements(template, role_id)
    assert _actions(statement) == {"execute-api:Invoke"}
    routes = {json.dumps(r) for r in _resources(statement)}
    assert len(routes) == len(ROUTES)
    for method, path in ROUTES:
        tail = "/" + method + path.replace("{model}", "*")
        assert any(tail in r and "$default" in r for r in routes), (method, path)


def test_no_persona_has_a_wildcard_action_or_write_access_to_data_it_does_not_own(
    template: Template,
) -> None:
    """
    Given every persona role's statements
    Then no action is a wildcard; Resource * appears only for CloudWatch reads and for the
        services' List actions (no resource-level permission exists for them); nobody may
        delete anything, resume a run, publish events or start a run directly
    """
    for persona in PERSONAS:
        role_id, _ = _role(template, persona)
        for statement in _statements(template, role_id):
            assert statement["Effect"] == "Allow"
            actions = _actions(statement)
            assert not any("*" in a for a in actions), (persona, actions)
            assert not {a for a in actions if "Delete" in a}, (persona, actions)
            forbidden = {
                "states:SendTaskSuccess",
                "states:SendTaskFailure",
                "states:StartExecution",
                "events:PutEvents",
            }
            assert not actions & forbidden, (persona, actions)
            if "*" in _resources(statement):
                assert actions <= {
                    "cloudwatch:GetMetricData",
                    "cloudwatch:GetMetricStatistics",
                    "cloudwatch:ListMetrics",
                    "cloudwatch:DescribeAlarms",
                    *LIST_ACTIONS,
                }, (persona, actions)


def _table_id(template: Template, name: str) -> str:
    (table_id,) = [
        lid
        for lid in template.find_resources("AWS::DynamoDB::Table")
        if lid.startswith(f"Tables{name}Table")
    ]
    return table_id


def _allowed(template: Template, persona: str) -> list[dict[str, Any]]:
    role_id, _ = _role(template, persona)
    return _statements(template, role_id)


def test_governance_routes_are_invoked_only_by_the_personas_the_contract_names(
    template: Template,
) -> None:
    """
    Given the table of who may call which governance route
    Then each persona may invoke exactly its routes (production promotion only by approver
        and admin), the client none, and every granted path is one of the API's routes
    """
    routes = {path.replace("{stage}", stage) for _, path in GOVERNANCE_ROUTES for stage in STAGES}
    assert set(GOVERNANCE_GRANTS) == routes
    assert GOVERNANCE_GRANTS["/v1/governance/promote/production"] == ("approver", "admin")
    for persona in PERSONAS:
        invoked = {
            json.dumps(r)
            for s in _allowed(template, persona)
            if "execute-api:Invoke" in _actions(s)
            for r in _resources(s)
        }
        governed = {r for r in invoked if "/v1/governance/" in r}
        want = {path for path, who in GOVERNANCE_GRANTS.items() if persona in who}
        assert len(governed) == len(want), (persona, governed)
        for path in want:
            assert any(f"/POST{path}" in r and "$default" in r for r in governed), (persona, path)


def test_only_registrants_upload_candidates_and_nobody_writes_models(template: Template) -> None:
    """Data scientists and admins may put candidate bundles under candidates/ (KMS data keys to
    encrypt them); no persona may write under models/ or the anchors."""
    for persona in PERSONAS:
        puts = [s for s in _allowed(template, persona) if "s3:PutObject" in _actions(s)]
        targets = json.dumps([r for s in puts for r in _resources(s)])
        assert "models/" not in targets and "anchors/" not in targets, persona
        uploads = "candidates/*" in targets
        assert uploads == (persona in ("data-scientist", "admin")), persona
        if uploads:
            keys = [s for s in _allowed(template, persona) if "kms:GenerateDataKey" in _actions(s)]
            assert keys, persona
