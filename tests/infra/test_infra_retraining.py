"""The retrain-and-promote workflow in the synthesized templates (infra/retraining.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from app import feature_flags
from infra.config import ENVIRONMENTS
from infra.nag import add_nag_checks
from infra.stack import FerryStack


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    """The retrain state machine's definition, with CloudFormation references as placeholders."""
    (machine,) = [
        r
        for k, r in _resources(template, "AWS::StepFunctions::StateMachine").items()
        if k.startswith("RetrainStateMachine")
    ]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "REF" for p in parts))


def _function_env(template: dict[str, Any], prefix: str) -> dict[str, str]:
    (fn,) = [
        r
        for k, r in _resources(template, "AWS::Lambda::Function").items()
        if k.startswith(prefix) and "Environment" in r["Properties"]
    ]
    return fn["Properties"]["Environment"]["Variables"]


def test_the_state_machine_has_every_gate_and_failure_path(template_json: dict[str, Any]) -> None:
    """
    Given the synthesized template
    When I read the retrain state machine's definition
    Then Train → Validate → Decide → Register → approval → canary → Promote → Notify is there,
        Train/Validate/Register/Promote are caught into RejectRun, Lambda tasks retry, and the
        approval waits on a task token with a timeout read from the run's settings
    """
    states = _definition(template_json)["States"]
    for name in (
        "Lock",
        "Train",
        "Validate",
        "Decide",
        "Register",
        "Approval?",
        "AskApproval",
        "WaitForApproval",
        "ApprovalTimedOut",
        "Canary?",
        "StartCanary",
        "CanaryWindow",
        "EvaluateCanary",
        "RollbackCanary",
        "Promote",
        "RejectRun",
        "Notify",
        "Unlock",
        "AlreadyRunning",
    ):
        assert name in states, name
    for name in ("Train", "Validate", "Register", "Promote", "StartCanary", "EvaluateCanary"):
        catchers = {c["Next"] for c in states[name].get("Catch", [])}
        assert "RejectRun" in catchers, name
        assert states[name].get("Retry"), f"{name} has no Retry on transient errors"
    wait = states["WaitForApproval"]
    assert wait["Resource"].endswith(":::lambda:invoke.waitForTaskToken")
    assert wait["TimeoutSecondsPath"] == "$.settings.approval_timeout_seconds"
    assert {c["Next"] for c in wait["Catch"] if c["ErrorEquals"] == ["States.Timeout"]} == {
        "ApprovalTimedOut"
    }
    assert states["CanaryWindow"]["SecondsPath"] == "$.settings.canary_seconds"
    assert states["Notify"]["Resource"].endswith(":::sns:publish")
    assert states["Decide"]["Choices"][0]["Variable"] == "$.validation.passed"


def test_dev_needs_no_approval_and_prod_does_through_one_named_field(synthesis: Any) -> None:
    """The definition is the same everywhere; `approval_required` reaches the governance function
    (the lock step returns the run's settings), so dev and prod differ in that field only."""
    dev, prod = synthesis.templates["dev"], synthesis.templates["prod"]
    assert _definition(dev) == _definition(prod)
    assert _function_env(dev, "GovernanceFunction")["APPROVAL_REQUIRED"] == "false"
    assert _function_env(prod, "GovernanceFunction")["APPROVAL_REQUIRED"] == "true"
    assert ENVIRONMENTS["dev"].approval_required is False
    assert ENVIRONMENTS["prod"].approval_required is True


def test_the_drift_alarm_and_the_schedule_start_the_workflow(
    template_json: dict[str, Any], env: str
) -> None:
    machine = next(
        k
        for k in _resources(template_json, "AWS::StepFunctions::StateMachine")
        if k.startswith("RetrainStateMachine")
    )
    rules = _resources(template_json, "AWS::Events::Rule")
    drift = next(r for k, r in rules.items() if k.startswith("MonitoringDriftAlarmRule"))
    (target,) = drift["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": machine}
    paths = target["InputTransformer"]["InputPathsMap"]
    assert "dimensions.model" in " ".join(paths.values())
    assert "$.detail.alarmName" in paths.values()  # the run's author: alarm:NAME
    assert '"requested_by":"alarm:<' in target["InputTransformer"]["InputTemplate"].replace(" ", "")
    assert "DeadLetterConfig" in target
    assert "DeadLetterConfig" in target


def test_the_schedule_starts_a_run_for_every_live_model(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Given the retrain schedule of the config
    Then its rule starts a state machine (no model named) that lists the registry's model
        index, reads each model's production pointer, and starts the retraining workflow
        for each live model with trigger `schedule`; its role may query the registry and
        start that workflow and nothing else of either
    """
    machines = _resources(template_json, "AWS::StepFunctions::StateMachine")
    retrain = next(k for k in machines if k.startswith("RetrainStateMachine"))
    lister_id = next(k for k in machines if k.startswith("RetrainScheduleStateMachine"))
    rules = _resources(template_json, "AWS::Events::Rule")
    schedule = next(r for k, r in rules.items() if k.startswith("RetrainScheduleRule"))
    assert schedule["Properties"]["ScheduleExpression"] == ENVIRONMENTS[env].retrain_schedule
    (target,) = schedule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": lister_id} and "Input" not in target
    assert "DeadLetterConfig" in target
    text = json.dumps(machines[lister_id]["Properties"]["DefinitionString"])
    for needle in ("aws-sdk:dynamodb:query", "__index__", "STAGE#production", "startExecution"):
        assert needle in text, needle
    assert '\\"trigger\\":\\"schedule\\"' in text
    assert '\\"requested_by\\":\\"schedule\\"' in text  # the run's author
    assert {"Ref": retrain} in machines[lister_id]["Properties"]["DefinitionString"]["Fn::Join"][1]
    actions = {a for a, _ in _role_actions(template_json, "RetrainScheduleStateMachineRole")}
    assert {"dynamodb:Query", "dynamodb:GetItem", "states:StartExecution"} <= actions
    assert not {a for a in actions if a.startswith("dynamodb:") and "Item" in a} - {
        "dynamodb:GetItem"
    }


def test_a_failed_run_is_alarmed_on(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert any(k.startswith("MonitoringRetrainPipelineFailures") for k in alarms)


def _role_actions(template: dict[str, Any], role_prefix: str) -> list[tuple[str, Any]]:
    out = []
    for policy in _resources(template, "AWS::IAM::Policy").values():
        roles = [r.get("Ref", "") for r in policy["Properties"].get("Roles", [])]
        if not any(r.startswith(role_prefix) for r in roles):
            continue
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            out += [(a, st["Resource"]) for a in actions]
    return out


def test_training_and_validation_cannot_touch_the_registry_or_registered_versions(
    template_json: dict[str, Any],
) -> None:
    """Only governance registers: training writes candidates/, validation writes a report."""
    for role in ("RetrainTrainingRole", "RetrainValidationRole"):
        actions = _role_actions(template_json, role)
        assert actions, role
        writes = [
            (a, r) for a, r in actions if a.startswith("dynamodb:") and a != "dynamodb:GetItem"
        ]
        assert all(a == "dynamodb:Query" for a, _ in writes), (role, writes)
        for action, resource in actions:
            if action == "s3:PutObject":
                assert "candidates/" in json.dumps(resource), (role, resource)


@pytest.fixture(scope="module")
def sagemaker_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same stack with `training_backend="sagemaker"`, synthesized with cdk-nag."""
    config = ENVIRONMENTS["prod"].model_copy(
        update={"name": "sm", "training_backend": "sagemaker", "training_timeout_minutes": 240}
    )
    outdir = tmp_path_factory.mktemp("cdk-sm")
    app = App(outdir=str(outdir), context=feature_flags())
    FerryStack(app, config=config)
    add_nag_checks(app)
    app.synth()  # raises when a cdk-nag finding is not acknowledged
    return json.loads((Path(outdir) / "Ferry-sm.template.json").read_text())


def test_the_sagemaker_backend_runs_the_same_image_as_a_training_job(
    sagemaker_template: dict[str, Any],
) -> None:
    """
    Given training_backend="sagemaker" (training beyond Lambda's 15 minutes)
    When the stack is synthesized (cdk-nag clean)
    Then Train is a createTrainingJob.sync task running the training image's SageMaker entry
        point with a role that may only read training data and write candidates, and the
        state machine may pass only that role
    """
    train = _definition(sagemaker_template)["States"]["Train"]
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    spec = train["Parameters"]["AlgorithmSpecification"]
    assert spec["ContainerEntrypoint"][-1].endswith("sagemaker_entry.py")
    assert train["Parameters"]["StoppingCondition"]["MaxRuntimeInSeconds"] == 240 * 60
    assert {c["Next"] for c in train["Catch"]} == {"RejectRun"}
    roles = _resources(sagemaker_template, "AWS::IAM::Role")
    (sm_role,) = [k for k in roles if k.startswith("RetrainSageMakerTrainingRole")]
    principal = roles[sm_role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert principal["Principal"]["Service"] == "sagemaker.amazonaws.com"
    passes = [
        r
        for a, r in _role_actions(sagemaker_template, "RetrainStateMachineRole")
        if a == "iam:PassRole"
    ]
    assert passes and all(re.search(sm_role, json.dumps(r)) for r in passes)
    fn_names = set(_resources(sagemaker_template, "AWS::Lambda::Function"))
    assert any(k.startswith("RetrainTraining") for k in fn_names)  # kept for small retrains


def test_the_sagemaker_job_finds_trainers_and_knows_its_commit_and_deadline(
    sagemaker_template: dict[str, Any],
) -> None:
    """
    Given training_backend="sagemaker" with a 240-minute stopping condition
    When I read the training job's environment and its role
    Then the job reads the registry and registered trainers like the function, carries the
        synthesis's source commit, and bounds an owner's trainer by its own stopping condition
    """
    env = _definition(sagemaker_template)["States"]["Train"]["Parameters"]["Environment"]
    assert env["FERRY_JOB_SECONDS"] == str(240 * 60)
    assert {"REGISTRY_TABLE", "FERRY_LOCK_FILE"} <= set(env)
    assert "FERRY_SOURCE_COMMIT" not in env  # synthesized without the app's source context
    actions = _role_actions(sagemaker_template, "RetrainSageMakerTrainingRole")
    trainers = [r for a, r in actions if a == "s3:GetObject" and "trainer/" in json.dumps(r)]
    assert trainers and {"dynamodb:GetItem", "dynamodb:Query"} <= {a for a, _ in actions}
