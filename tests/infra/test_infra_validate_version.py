"""The ValidateVersion state machine and who may start it (infra/validate_version.py)."""

from __future__ import annotations

import json
from typing import Any

from ferry_local.template import Resolver


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _machine(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((logical_id, machine),) = [
        (k, r)
        for k, r in _resources(template, "AWS::StepFunctions::StateMachine").items()
        if k.startswith("RetrainValidateVersion")
    ]
    return logical_id, machine


def _definition(machine: dict[str, Any]) -> dict[str, Any]:
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "REF" for p in parts))


def _function(template: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, fn),) = [
        (k, r)
        for k, r in _resources(template, "AWS::Lambda::Function").items()
        if k.startswith(prefix) and "Environment" in r["Properties"]
    ]
    return logical_id, fn


def _statements(template: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
    """Every policy statement with the roles it is attached to."""
    out = []
    for policy in _resources(template, "AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"].get("Roles", [])]
        out += [(roles, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    return out


def test_the_machine_validates_then_records_and_records_a_gate_that_could_not_run(
    template_json: dict[str, Any],
) -> None:
    """
    Given the synthesized stack
    When I read the ValidateVersion definition
    Then it invokes the validation function with the model and version, then the governance
        function's `record_validation` as the identity that asked (`requested_by`), with the
        gate's report and the execution's ARN
    And a validation that fails is caught and recorded too, and the execution then fails
    """
    _, machine = _machine(template_json)
    definition = _definition(machine)
    states = definition["States"]
    assert definition["StartAt"] == "Validate"
    validate, record, not_run = states["Validate"], states["Record"], states["RecordNotRun"]
    assert validate["Parameters"]["Payload"] == {"model.$": "$.model", "version.$": "$.version"}
    assert validate["ResultSelector"] == {"report.$": "$.Payload.report"}
    assert validate["Next"] == "Record"
    (catch,) = validate["Catch"]
    assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "RecordNotRun")
    payload = record["Parameters"]["Payload"]
    assert payload["action"] == "record_validation"
    assert payload["actor.$"] == "$.requested_by"
    assert payload["run_id.$"] == "$$.Execution.Name"
    assert payload["details"] == {
        "result.$": "$.validation.report",
        "execution.$": "$$.Execution.Id",
    }
    assert not_run["Parameters"]["Payload"]["details"]["error.$"] == "$.error"
    assert states[not_run["Next"]]["Type"] == "Fail"
    assert states[record["Next"]]["Type"] == "Succeed"


def test_the_governance_function_alone_may_start_it_by_its_computed_arn(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Given the machine, named after the stack, and the governance function
    When I resolve the ARN the function's environment and role name (computed, so the machine
        and the function that it invokes do not refer to each other)
    Then it is the machine's ARN; the governance role may StartExecution on it, and no other
        role may start it
    """
    resolver = Resolver(template_json, stack_name=f"Ferry-{env}")
    machine_id, _ = _machine(template_json)
    assert resolver.physical_id(machine_id) == f"Ferry-{env}-ValidateVersion"
    arn = resolver.arn(machine_id)
    _, governance = _function(template_json, "GovernanceFunction")
    variable = governance["Properties"]["Environment"]["Variables"]["VALIDATION_STATE_MACHINE_ARN"]
    assert resolver.resolve(variable) == arn
    starters = {
        role
        for roles, s in _statements(template_json)
        if "states:StartExecution" in json.dumps(s["Action"])
        and arn in json.dumps(resolver.resolve(s["Resource"]))
        for role in roles
    }
    (governance_role,) = [
        k for k in _resources(template_json, "AWS::IAM::Role") if k.startswith("GovernanceRole")
    ]
    assert starters == {governance_role}


def test_runs_started_by_a_rule_name_their_author(template_json: dict[str, Any]) -> None:
    """The drift rule names the alarm (`alarm:<name>`), the schedule `schedule`: the run's
    `requested_by`, which training records as the version's `trained_by`."""
    rules = _resources(template_json, "AWS::Events::Rule")
    drift = next(r for k, r in rules.items() if k.startswith("MonitoringDriftAlarmRule"))
    (target,) = drift["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    assert '"requested_by":"alarm:<' in transformer["InputTemplate"].replace(" ", "")
    assert "$.detail.alarmName" in transformer["InputPathsMap"].values()
    machines = _resources(template_json, "AWS::StepFunctions::StateMachine")
    schedule = next(m for k, m in machines.items() if k.startswith("RetrainScheduleStateMachine"))
    assert '\\"requested_by\\":\\"schedule\\"' in json.dumps(
        schedule["Properties"]["DefinitionString"]
    )
