"""The retrain-and-promote workflow's governed steps (ferry_core/retrain/workflow.py) under moto.

Real registry and audit tables, real buckets, real CloudWatch metrics and alarms, and a real
(moto-interpreted) Step Functions execution waiting on a task token for the approval gate.
"""

from __future__ import annotations

import json
import typing

import pytest
from pydantic import ValidationError

from ferry_core.errors import PromotionRefused
from ferry_core.governance.requests import GovernanceRequest
from ferry_core.registry.governance import Governance
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.approval import decide
from ferry_core.retrain.candidate import CandidateUnavailable
from ferry_core.retrain.gate.policy import GatePolicy, ValidationRequest
from ferry_core.retrain.gate.validate import validate_candidate
from ferry_core.retrain.workflow import RunInput, Workflow, WorkflowRequest, WorkflowSettings
from ferry_core.store import ModelStore, sha256_hex
from ferry_local.handlers import load_handler
from tests.unit.retrain.workflow_support import (
    MODEL,
    audit,
    candidate,
    registered_candidate,
    step,
)

# --- effective settings ----------------------------------------------------------------------


@pytest.mark.parametrize("env_requires", [False, True])
@pytest.mark.parametrize("run_requires", [False, True])
def test_require_approval_only_adds_an_approval(env_requires: bool, run_requires: bool) -> None:
    settings = WorkflowSettings(approval_required=env_requires)
    run = RunInput(model=MODEL, require_approval=run_requires)
    assert settings.effective(run, True)["approval_required"] is (env_requires or run_requires)


@pytest.mark.parametrize(("asked", "effective"), [(None, 3600), (60, 60), (7200, 3600)])
def test_the_approval_timeout_can_only_be_shortened(asked: int | None, effective: int) -> None:
    settings = WorkflowSettings(approval_timeout_seconds=3600)
    run = RunInput(model=MODEL, approval_timeout_seconds=asked)
    assert settings.effective(run, True)["approval_timeout_seconds"] == effective


def test_a_canary_needs_a_champion() -> None:
    """With the environment's 10 % canary, a first version switches (nothing to compare)."""
    settings = WorkflowSettings(canary_percent=10, canary_seconds=300)
    run = RunInput(model=MODEL)
    first, later = settings.effective(run, False), settings.effective(run, True)
    assert (first["canary"], first["canary_percent"]) == (False, 10)
    assert (later["canary"], later["canary_percent"], later["canary_seconds"]) == (True, 10, 300)


def test_canary_percent_zero_is_a_switch_and_a_run_may_ask_for_a_canary() -> None:
    with_canary, without = WorkflowSettings(canary_percent=10), WorkflowSettings()
    switch = with_canary.effective(RunInput(model=MODEL, canary_percent=0), True)
    assert (switch["canary"], switch["canary_percent"]) == (False, 0)
    asked = without.effective(RunInput(model=MODEL, canary_percent=5, canary_seconds=60), True)
    assert (asked["canary"], asked["canary_percent"], asked["canary_seconds"]) == (True, 5, 60)


# --- register_candidate ----------------------------------------------------------------------


def test_register_candidate_registers_stages_and_audits_the_next_version(
    wf: Workflow, gov: Governance, registered, built, aws, boto, tmp_path
) -> None:
    """
    Given credit-risk v1 in production and a candidate the validation step passed
    When the workflow registers the candidate
    Then it is v2, its card carries the validation report and the run id, its artifacts are
        copied to models/credit-risk/v2/ and hash to the card, it is staged (production
        stays v1), and the audit trail has its register and promote(staging) entries
    """
    s3 = boto["s3"]
    candidate(aws, boto, built, "run-7", report={})
    run = validate_candidate(
        s3,
        aws.model_bucket,
        RegistryReader(boto["dynamodb"], aws.registry_table),
        ModelStore(s3, tmp_path / "gate-cache"),
        ValidationRequest(model=MODEL, run_id="run-7"),
        GatePolicy(segment_floor=0.5, latency_p99_ms=1000, latency_runs=20),
    )
    assert run.report.passed, run.report.summary()

    out = step(wf, "register_candidate", "run-7", actor="ferry-retrain")

    assert out["version"] == 2
    card = gov.reader.card(MODEL, 2)
    report = json.loads(
        s3.get_object(Bucket=aws.model_bucket, Key=f"candidates/{MODEL}/run-7/validation.json")[
            "Body"
        ].read()
    )
    assert card.validation["passed"] is True
    assert card.validation["checks"] == report["checks"]
    assert card.validation["candidate"]["run_id"] == "run-7"
    assert card.lineage.registered_by == "ferry-retrain"
    assert card.lineage.training_data_uri.endswith("/run-7.parquet")

    assert card.artifact.uri == f"s3://{aws.model_bucket}/models/{MODEL}/v2/model.onnx"
    model_obj = s3.get_object(
        Bucket=aws.model_bucket,
        Key=f"models/{MODEL}/v2/model.onnx",
        VersionId=card.artifact.s3_version_id,
    )
    assert sha256_hex(model_obj["Body"].read()) == card.artifact.sha256 == out["artifact_sha256"]
    assert card.artifact.sha256 == sha256_hex(built.onnx_bytes)
    ref = s3.get_object(Bucket=aws.model_bucket, Key=f"models/{MODEL}/v2/reference.parquet")
    assert sha256_hex(ref["Body"].read()) == card.artifact.reference_sha256
    stored_card = json.loads(
        s3.get_object(Bucket=aws.model_bucket, Key=f"models/{MODEL}/v2/card.json")["Body"].read()
    )
    assert stored_card["version"] == 2

    assert gov.reader.fresh_pointer(MODEL, "staging").version == 2
    assert gov.reader.fresh_pointer(MODEL, "production").version == 1
    assert out["staged"]["after"] == {"staging": 2}
    assert audit(gov) == [("register", 2), ("promote", 2)]
    entries = gov.audit.entries(MODEL)
    assert entries[0].details["validation_passed"] is True
    assert entries[1].details["stage"] == "staging"


def test_a_retried_register_candidate_does_not_allocate_another_version(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    """The task retried after its first attempt registered finds that version again."""
    candidate(aws, boto, built, "run-1")
    first = step(wf, "register_candidate", "run-1")
    again = step(wf, "register_candidate", "run-1")
    assert first["version"] == again["version"] == 1
    assert again["registered"] == "already registered by this run"
    assert [c.version for c in gov.reader.versions(MODEL)] == [1]
    assert gov.reader.models()[0]["latest_version"] == 1
    assert audit(gov) == [("register", 1), ("promote", 1)]
    # another run's candidate is the next version
    candidate(aws, boto, built, "run-2")
    assert step(wf, "register_candidate", "run-2")["version"] == 2


def test_register_candidate_refuses_a_bundle_without_a_passing_report(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    """No report, a failed report, a report without a verdict: nothing is registered."""
    refusals = [
        ({}, "has no validation report"),
        ({"passed": False, "checks": [{"name": "metrics", "passed": False}]}, "did not pass"),
        ({"checks": []}, "did not pass validation"),
    ]
    for i, (report, message) in enumerate(refusals):
        candidate(aws, boto, built, f"run-{i}", report=report)
        with pytest.raises(PromotionRefused, match=message):
            step(wf, "register_candidate", f"run-{i}")
    assert not gov.reader.model_exists(MODEL)
    assert gov.reader.models() == []
    listed = boto["s3"].list_objects_v2(Bucket=aws.model_bucket, Prefix="models/")
    assert listed.get("KeyCount", 0) == 0
    assert audit(gov) == []


# --- reject_run --------------------------------------------------------------------------------


LAMBDA_ERROR = {
    "Error": "TrainingFailed",
    "Cause": json.dumps(
        {
            "errorMessage": "training data lacks column(s) age",
            "errorType": "TrainingFailed",
            "requestId": "5b6d",
            "stackTrace": ['  File "/var/task/handler.py", line 36, in lambda_handler\n'],
        }
    ),
}


def test_reject_run_turns_a_lambda_error_into_a_readable_reason_for_the_model(
    wf: Workflow, gov: Governance
) -> None:
    """
    Given a run whose training step failed (nothing registered)
    When the Catch path's reject_run gets the Lambda error
    Then the reason is the error type and message (not the raw Cause JSON), and the audit
        trail has one `reject` entry for the model with no version, the run id and the error
    """
    out = step(wf, "reject_run", "run-3", error=LAMBDA_ERROR)
    reason = out["reason"]
    assert reason.startswith("TrainingFailed: training data")
    assert reason.count("TrainingFailed") == 1
    assert "training data lacks column(s) age" in reason
    assert "stackTrace" not in reason and "{" not in reason
    (entry,) = gov.audit.entries(MODEL)
    assert (entry.event, entry.version, entry.reason) == ("reject", None, reason)
    assert entry.after == {"run": "rejected"}
    assert entry.details["run_id"] == "run-3"
    assert entry.details["error"]["Error"] == "TrainingFailed"
    assert out["rejected"]["version"] is None


def test_reject_run_reasons_from_other_errors(wf: Workflow, gov: Governance) -> None:
    """A Cause that is not JSON is kept as it is; an error without a Cause is its name."""
    timeout = {"Error": "States.Timeout", "Cause": "the approval timed out"}
    out = step(wf, "reject_run", "run-3", error=timeout)
    assert out["reason"] == "States.Timeout: the approval timed out"
    out = step(wf, "reject_run", "run-4", error={"Error": "States.TaskFailed"})
    assert out["reason"] == "States.TaskFailed"
    assert [e.reason for e in gov.audit.entries(MODEL)] == [
        "States.Timeout: the approval timed out",
        "States.TaskFailed",
    ]


def test_reject_run_rejects_and_unstages_the_staged_version(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    """
    Given run-1 registered v1 and staged it, and asked for an approval
    When the run ends on its Catch path with v1
    Then v1 is rejected, staging points at nothing (the pointer item keeps its revision),
        the pending approval is gone, and a later candidate can still be staged
    """
    version = registered_candidate(wf, aws, boto, built, "run-1")
    step(wf, "request_approval", "run-1", version=version, task_token="token-1")
    staged, revision = gov.reader.fresh_stage(MODEL, "staging")
    assert (staged.version, revision) == (version, 1)

    out = step(wf, "reject_run", "run-1", version=version, error=LAMBDA_ERROR)

    assert out["rejected"]["event"] == "reject" and out["rejected"]["version"] == version
    assert gov.reader.version_record(MODEL, version)["status"] == "rejected"
    assert gov.reader.fresh_stage(MODEL, "staging") == (None, 2)
    assert wf.approvals.pending(MODEL, version) is None
    entry = gov.audit.entries(MODEL)[-1]
    assert (entry.event, entry.version) == ("reject", version)
    assert entry.after == {"status": "rejected", "staging": None}
    assert entry.details["run_id"] == "run-1"
    assert [h.event for h in gov.reader.history(MODEL, "staging")] == ["promote", "unstage"]

    later = registered_candidate(wf, aws, boto, built, "run-2")
    assert later == 2
    pointer = gov.reader.fresh_pointer(MODEL, "staging")
    assert (pointer.version, pointer.revision) == (2, 3)


def test_reject_run_after_an_operator_rejection_keeps_the_operators_reason(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    """
    Given an operator rejected v1 at the approval gate with a reason
    When the run ends on its Catch path
    Then nothing more is recorded and the run's reason is the operator's
    """
    version = registered_candidate(wf, aws, boto, built, "run-1")
    decide(
        gov, wf.approvals, None, MODEL, version, approved=False, actor="carol", reason="bias 18-30"
    )
    before = audit(gov)
    error = {"Error": "ApprovalRejected", "Cause": "rejected by carol: bias 18-30"}

    out = step(wf, "reject_run", "run-1", version=version, error=error)

    assert out == {"rejected": "already rejected", "reason": "rejected by carol: bias 18-30"}
    assert audit(gov) == before


def test_reject_run_never_rejects_a_version_already_in_production(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    """
    Given run-1's v1 went live and a later step of the run failed
    When the Catch path's reject_run names v1
    Then production keeps serving v1 (not rejected) and the run's end is audited with why
        the version could not be rejected
    """
    version = registered_candidate(wf, aws, boto, built, "run-1")
    step(wf, "promote_candidate", "run-1", version=version)

    out = step(wf, "reject_run", "run-1", version=version, reason="notify failed")

    assert out["reason"] == "notify failed"
    assert gov.reader.fresh_pointer(MODEL, "production").version == version
    assert gov.reader.version_record(MODEL, version)["status"] != "rejected"
    entry = gov.audit.entries(MODEL)[-1]
    assert (entry.event, entry.version, entry.after) == ("reject", version, {"run": "rejected"})
    assert "live in production" in entry.details["reject_refused"]


# --- the request contract ----------------------------------------------------------------------


def _actions(model: type) -> set[str]:
    return set(typing.get_args(model.model_fields["action"].annotation))


def test_workflow_and_governance_action_names_are_disjoint() -> None:
    """The governance function routes by action name: a name in both would be ambiguous."""
    workflow, governance = _actions(WorkflowRequest), _actions(GovernanceRequest)
    assert workflow and governance
    assert workflow.isdisjoint(governance)
    assert workflow == load_handler("governance").WORKFLOW_ACTIONS


def test_every_workflow_action_is_dispatched(wf: Workflow) -> None:
    """Each action reaches its step (no KeyError): without a version or a bundle, the steps
    that need one refuse with a reason."""
    needs_version = {
        "request_approval",
        "start_canary",
        "evaluate_canary",
        "promote_candidate",
        "rollback_canary",
        "record_validation",
    }
    for action in sorted(_actions(WorkflowRequest)):
        if action in needs_version:
            with pytest.raises(PromotionRefused, match="needs a version"):
                step(wf, action)
        elif action == "register_candidate":
            with pytest.raises(CandidateUnavailable):
                step(wf, action)
        else:
            assert isinstance(step(wf, action), dict)


def test_the_run_author_is_who_requested_it(wf: Workflow) -> None:
    """The lock step hands the state machine the run's author as its steps' actor: whoever
    requested the run (the retrain route's verified caller, `alarm:NAME`, `schedule`); a run
    input cannot name an actor of its own."""
    requested = {"requested_by": "alarm:Ferry-local-model-credit-risk-drift"}
    locked = step(wf, "lock", "run-author", details=requested)
    assert locked["run"]["actor"] == locked["run"]["requested_by"] == requested["requested_by"]
    step(wf, "unlock", "run-author")
    assert step(wf, "lock", "run-default")["run"]["actor"] == "ferry-retrain"
    with pytest.raises(ValidationError):
        RunInput(model=MODEL, actor="mallory")


def test_a_workflow_request_is_strict() -> None:
    with pytest.raises(ValidationError):
        WorkflowRequest(action="promote", model=MODEL, run_id="run-1")
    with pytest.raises(ValidationError):
        WorkflowRequest(action="start_canary", model=MODEL, run_id="run-1", percent=80)
    with pytest.raises(ValidationError):
        WorkflowRequest(action="lock", model=MODEL, run_id="../etc")
