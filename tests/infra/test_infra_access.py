"""The people's roles in the template: one per persona, least privilege, assumable in-account."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from infra.access import LIST_ACTIONS, PERSONAS, output_id
from infra.api import ROUTES

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
    Then no action is a wildcard; Resource * appears only for CloudWatch reads, for resuming
        a run by its task token and for the services' List actions (no resource-level
        permission exists for them); nobody may delete objects, and the only item anyone may
        delete is a registry item, by those who decide (an answered approval request)
    """
    registry = _table_id(template, "Registry")
    for persona in PERSONAS:
        role_id, _ = _role(template, persona)
        for statement in _statements(template, role_id):
            assert statement["Effect"] == "Allow"
            actions = _actions(statement)
            assert not any("*" in a for a in actions), (persona, actions)
            deletes = {a for a in actions if "Delete" in a}
            if deletes:
                assert persona in ("approver", "admin"), (persona, deletes)
                assert deletes == actions == {"dynamodb:DeleteItem"}, (persona, actions)
                assert _resources(statement) == [{"Fn::GetAtt": [registry, "Arn"]}], statement
            if "*" in _resources(statement):
                assert actions <= {
                    "cloudwatch:GetMetricData",
                    "cloudwatch:GetMetricStatistics",
                    "cloudwatch:ListMetrics",
                    "cloudwatch:DescribeAlarms",
                    "states:SendTaskSuccess",
                    "states:SendTaskFailure",
                    *LIST_ACTIONS,
                }, (persona, actions)


def _table_id(template: Template, name: str) -> str:
    (table_id,) = [
        lid
        for lid in template.find_resources("AWS::DynamoDB::Table")
        if lid.startswith(f"Tables{name}Table")
    ]
    return table_id


def test_only_people_who_decide_can_resume_runs_and_only_writers_start_them(
    template: Template,
) -> None:
    def allowed(persona: str) -> set[str]:
        role_id, _ = _role(template, persona)
        return {a for s in _statements(template, role_id) for a in _actions(s)}

    assert "states:SendTaskSuccess" in allowed("approver")
    assert "states:SendTaskSuccess" not in allowed("data-scientist")
    assert "states:StartExecution" in allowed("data-scientist")
    assert "states:StartExecution" not in allowed("approver")
    assert "s3:PutObject" in allowed("data-scientist")
