"""The retrain-and-promote workflow's governed steps (ferry_core/retrain/workflow.py) under moto.

Real registry and audit tables, real buckets, real CloudWatch metrics and alarms, and a real
(moto-interpreted) Step Functions execution waiting on a task token for the approval gate.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from ferry_core.card import Lineage
from ferry_core.errors import PromotionRefused
from ferry_core.registry.governance import Governance, GovernanceRequest, connect
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.approval import ApprovalGate, decide
from ferry_core.retrain.candidate import Bundle, CandidateUnavailable, write_bundle, write_report
from ferry_core.retrain.gate.policy import GatePolicy, ValidationRequest
from ferry_core.retrain.gate.validate import validate_candidate
from ferry_core.retrain.lock import RetrainLock, RetrainRunning
from ferry_core.retrain.workflow import RunInput, Workflow, WorkflowRequest, WorkflowSettings
from ferry_core.store import ModelStore, sha256_hex
from ferry_local.handlers import load_handler
from ferry_local.moto_stack import REGION

MODEL = "credit-risk"
LOCAL_ROLE = "arn:aws:iam::123456789012:role/ferry-local"


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def gov(aws, boto, tmp_path) -> Governance:
    return connect(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=None,
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=aws.anchor_bucket,
        cache_dir=str(tmp_path / "gov-cache"),
        env="local",
    )


@pytest.fixture
def cloudwatch(aws) -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def wf(gov: Governance, aws, boto, cloudwatch) -> Workflow:
    return Workflow(
        gov,
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        cloudwatch=cloudwatch,
        registry_table=aws.registry_table,
        model_bucket=aws.model_bucket,
    )


def step(wf: Workflow, action: str, run_id: str = "run-1", **fields: Any) -> dict[str, Any]:
    return wf.run(WorkflowRequest(action=action, model=MODEL, run_id=run_id, **fields))


def candidate(aws, boto, built, run_id: str, report: dict[str, Any] | None = None) -> Bundle:
    """A candidate bundle written as training writes it, with a validation report beside it
    (a minimal passing one unless `report` says otherwise; None-valued → no report)."""
    bundle = write_bundle(
        boto["s3"],
        aws.model_bucket,
        built,
        MODEL,
        run_id,
        Lineage(training_data_uri=f"s3://{aws.data_bucket}/training/{MODEL}/{run_id}.parquet"),
        training={"rows": 1600},
    )
    if report is None:
        report = {
            "passed": True,
            "source": "validation",
            "checks": [{"name": "parity", "passed": True, "message": "ok"}],
        }
    if report:
        write_report(boto["s3"], bundle, report)
    return bundle


def registered_candidate(wf: Workflow, aws, boto, built, run_id: str = "run-1") -> int:
    """A candidate registered (and staged) by the workflow; returns its version."""
    candidate(aws, boto, built, run_id)
    return step(wf, "register_candidate", run_id)["version"]


def audit(gov: Governance) -> list[tuple[str, int | None]]:
    return [(e.event, e.version) for e in gov.audit.entries(MODEL)]


def put_canary_metrics(
    cloudwatch: Any, variant: str, requests: int, errors: int, latency_ms: float
) -> None:
    """What the scoring function publishes per variant while a canary runs."""
    dims = [
        {"Name": "model", "Value": MODEL},
        {"Name": "variant", "Value": variant},
        {"Name": "service", "Value": "ferry-scoring"},
    ]
    cloudwatch.put_metric_data(
        Namespace="Ferry",
        MetricData=[
            {
                "MetricName": "CanaryRequests",
                "Dimensions": dims,
                "Value": requests,
                "Unit": "Count",
            },
            {"MetricName": "CanaryErrors5xx", "Dimensions": dims, "Value": errors, "Unit": "Count"},
            {
                "MetricName": "CanaryLatency",
                "Dimensions": dims,
                "Value": latency_ms,
                "Unit": "Milliseconds",
            },
        ],
    )


# --- the retrain lock ------------------------------------------------------------------------


def test_a_second_run_is_refused_and_told_who_holds_the_lock(wf: Workflow) -> None:
    """
    Given run-a holds credit-risk's retrain lock (and re-takes it: a retried task)
    When run-b asks for it (directly, and as the state machine's `lock` step)
    Then it is refused with a message naming run-a, and run-a still holds it; another
        model's lock is free
    """
    assert step(wf, "lock", "run-a")["locked"] is True
    assert step(wf, "lock", "run-a")["locked"] is True
    with pytest.raises(RetrainRunning, match="run run-a"):
        wf.lock.acquire(MODEL, "run-b", 3600)
    out = step(wf, "lock", "run-b")
    assert out["locked"] is False and "run-a" in out["message"]
    assert wf.lock.holder(MODEL) == "run-a"
    wf.lock.acquire("fraud", "run-b", 3600)
    assert wf.lock.holder("fraud") == "run-b"


def test_an_expired_lock_is_taken_over(aws, boto) -> None:
    """
    Given run-a took the lock at t=1000 for 60 s (a run that died)
    When run-b asks at t=1060 (not yet expired) and at t=1061 (expired)
    Then the first is refused and the second takes the lock over; run-a can no longer
        release it
    """
    now = [1000.0]
    lock = RetrainLock(boto["dynamodb"], aws.registry_table, clock=lambda: now[0])
    lock.acquire(MODEL, "run-a", 60)
    now[0] = 1060.0
    with pytest.raises(RetrainRunning, match="run-a"):
        lock.acquire(MODEL, "run-b", 60)
    now[0] = 1061.0
    lock.acquire(MODEL, "run-b", 60)
    assert lock.holder(MODEL) == "run-b"
    assert lock.release(MODEL, "run-a") is False
    assert lock.holder(MODEL) == "run-b"


def test_only_the_holder_releases_the_lock(wf: Workflow) -> None:
    wf.lock.acquire(MODEL, "run-a", 3600)
    assert step(wf, "unlock", "run-b") == {"released": False}
    assert wf.lock.holder(MODEL) == "run-a"
    assert step(wf, "unlock", "run-a") == {"released": True}
    assert wf.lock.holder(MODEL) is None
    assert wf.lock.release(MODEL, "run-a") is False  # nothing left to release
    wf.lock.acquire(MODEL, "run-b", 3600)  # the next run is free to start


def test_the_lock_step_returns_the_run_state(wf: Workflow, registered) -> None:
    """
    Given credit-risk has a production version
    When a run with overrides takes the lock
    Then the step returns the normalised input with its run id, the effective settings (a
        canary, since there is a champion) and an empty `registered`; an unknown override is
        refused before the lock is taken
    """
    with pytest.raises(ValidationError):
        step(wf, "lock", "run-9", details={"skip_validation": True})
    assert wf.lock.holder(MODEL) is None
    out = step(
        wf,
        "lock",
        "run-9",
        details={"trigger": "drift", "require_approval": True, "canary_percent": 5},
    )
    assert out["locked"] is True
    assert out["run"]["run_id"] == "run-9" and out["run"]["trigger"] == "drift"
    assert out["run"]["entry_point"] == "ferry_core.retrain.training:CreditRiskTrainer"
    settings = out["settings"]
    assert settings["approval_required"] is True
    assert (settings["canary"], settings["canary_percent"]) == (True, 5)
    assert settings["approve_command"] == f"ferry approve {MODEL} VERSION --env local"
    assert out["registered"] == {"version": None}


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


# --- the approval gate -----------------------------------------------------------------------


def test_decide_without_step_functions_only_records_the_decision(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    """
    Given two staged versions, each with an approval requested (its task token stored)
    When one is approved and the other rejected with no Step Functions client
    Then each decision is audited and recorded on the version, and no run is resumed
    """
    with pytest.raises(PromotionRefused, match="needs a version"):
        step(wf, "request_approval", "run-1", task_token="AQ-token==")
    for approved, run_id in ((True, "run-1"), (False, "run-2")):
        version = registered_candidate(wf, aws, boto, built, run_id)
        with pytest.raises(PromotionRefused, match="task token"):
            step(wf, "request_approval", run_id, version=version)
        out = step(wf, "request_approval", run_id, version=version, task_token=f"AQ-{run_id}==")
        assert out == {"pending": True, "version": version}
        pending = wf.approvals.pending(MODEL, version)
        assert (pending["task_token"], pending["run_id"]) == (f"AQ-{run_id}==", run_id)
        assert pending["requested_at"]

        outcome, run = decide(
            gov, wf.approvals, None, MODEL, version, approved=approved, actor="alice", reason="ok"
        )

        assert run is None
        event, status = ("approve", "approved") if approved else ("reject", "rejected")
        assert outcome.event == event
        entry = gov.audit.entries(MODEL)[-1]
        assert (entry.event, entry.version, entry.actor, entry.reason) == (
            event,
            version,
            "alice",
            "ok",
        )
        record = gov.reader.version_record(MODEL, version)
        assert record["status"] == status
        assert record.get("approved_by") == ("alice" if approved else None)


@pytest.fixture
def waiting_execution(aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str]]:
    """A real Step Functions execution (moto's interpreter) waiting on a task token, as the
    state machine's approval step does; yields (sfn client, execution ARN, the token)."""
    from moto.core.config import default_user_config

    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    sqs = boto3.client("sqs", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    url = sqs.create_queue(QueueName="ferry-approvals")["QueueUrl"]
    definition = {
        "StartAt": "WaitForApproval",
        "States": {
            "WaitForApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": url, "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name="ferry-approval", definition=json.dumps(definition), roleArn=LOCAL_ROLE
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run-1", input="{}")["executionArn"]
    token = None
    deadline = time.monotonic() + 10
    while token is None and time.monotonic() < deadline:
        for msg in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []):
            token = json.loads(msg["Body"])["token"]
        time.sleep(0.02)
    assert token, "the execution never reached its approval step"
    yield sfn, arn, token
    if sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        sfn.stop_execution(executionArn=arn)


def finished(sfn: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.02)


def test_an_approval_resumes_the_waiting_execution(
    wf: Workflow, gov: Governance, built, aws, boto, waiting_execution
) -> None:
    """
    Given run-1's execution waits at its approval step with v1's token stored
    When alice approves v1
    Then the approval is audited, the execution succeeds with her decision as its output, the
        pending approval is gone, and the outcome says which run was resumed
    """
    sfn, arn, token = waiting_execution
    version = registered_candidate(wf, aws, boto, built, "run-1")
    step(wf, "request_approval", "run-1", version=version, task_token=token)

    outcome, run = decide(
        gov, wf.approvals, sfn, MODEL, version, approved=True, actor="alice", reason="looks good"
    )

    assert run == "run-1"
    assert "decision passed to retraining run run-1" in outcome.warnings
    assert gov.audit.entries(MODEL)[-1].event == "approve"
    described = finished(sfn, arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {
        "approved": True,
        "approved_by": "alice",
        "reason": "looks good",
    }
    assert wf.approvals.pending(MODEL, version) is None


def test_a_rejection_fails_the_waiting_execution(
    wf: Workflow, gov: Governance, built, aws, boto, waiting_execution
) -> None:
    sfn, arn, token = waiting_execution
    version = registered_candidate(wf, aws, boto, built, "run-1")
    step(wf, "request_approval", "run-1", version=version, task_token=token)

    _, run = decide(
        gov, wf.approvals, sfn, MODEL, version, approved=False, actor="bob", reason="too risky"
    )

    assert run == "run-1"
    assert gov.audit.entries(MODEL)[-1].event == "reject"
    assert gov.reader.fresh_pointer(MODEL, "staging") is None  # a rejected version is unstaged
    described = finished(sfn, arn)
    assert described["status"] == "FAILED"
    assert described["error"] == "ApprovalRejected"  # (moto 5.2.5 drops SendTaskFailure's cause)
    assert wf.approvals.pending(MODEL, version) is None


def test_resolving_an_execution_that_no_longer_waits_is_tolerated(
    wf: Workflow, waiting_execution, aws, boto
) -> None:
    """
    Given a stored token whose execution already ended (resumed elsewhere), and one that was
        never a token
    When the approval gate resolves them
    Then InvalidToken is swallowed: the pending approvals are cleared and the run ids returned
    """
    sfn, arn, token = waiting_execution
    sfn.send_task_success(taskToken=token, output="{}")
    assert finished(sfn, arn)["status"] == "SUCCEEDED"
    gate = ApprovalGate(boto["dynamodb"], aws.registry_table)
    gate.request(MODEL, 1, token, "run-1")
    gate.request(MODEL, 2, "not-a-token", "run-2")
    assert gate.resolve(sfn, MODEL, 1, True, "alice", "") == "run-1"
    assert gate.resolve(sfn, MODEL, 2, False, "alice", "") == "run-2"
    assert gate.pending(MODEL, 1) is None and gate.pending(MODEL, 2) is None
    assert gate.resolve(sfn, MODEL, 1, True, "alice", "") is None  # nothing pending


# --- the canary --------------------------------------------------------------------------------


def test_start_canary_refuses_without_a_champion_or_a_percent(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    version = registered_candidate(wf, aws, boto, built, "run-1")
    with pytest.raises(PromotionRefused, match="no production version"):
        step(wf, "start_canary", "run-1", version=version, percent=10)
    with pytest.raises(PromotionRefused, match="needs a percent"):
        step(wf, "start_canary", "run-1", version=version)
    assert gov.reader.fresh_canary(MODEL) is None


def test_start_canary_refuses_a_version_that_cannot_go_live(
    wf: Workflow, gov: Governance, registered, built, aws, boto
) -> None:
    """A rejected candidate, and production itself, cannot be a canary."""
    version = registered_candidate(wf, aws, boto, built, "run-1")
    with pytest.raises(PromotionRefused, match="already production"):
        step(wf, "start_canary", "run-1", version=1, percent=10)
    gov.reject(MODEL, version, actor="carol", reason="no")
    with pytest.raises(PromotionRefused, match="rejected"):
        step(wf, "start_canary", "run-1", version=version, percent=10)
    assert gov.reader.fresh_canary(MODEL) is None


@pytest.fixture
def canary(wf: Workflow, gov: Governance, registered, built, aws, boto) -> int:
    """credit-risk v1 in production, run-1's v2 staged and in a 10 % canary."""
    version = registered_candidate(wf, aws, boto, built, "run-1")
    out = step(wf, "start_canary", "run-1", version=version, percent=10)
    assert out["event"] == "canary_start"
    return version


def test_a_healthy_canary_passes(wf: Workflow, canary: int, cloudwatch) -> None:
    put_canary_metrics(cloudwatch, "canary", 40, 0, 10.0)
    put_canary_metrics(cloudwatch, "champion", 400, 1, 9.0)
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is True, out["reasons"]
    assert out["summary"].startswith("canary healthy")
    assert (out["figures"]["canary_requests"], out["figures"]["champion_requests"]) == (40, 400)
    assert out["figures"]["champion_5xx"] == 1


def test_a_canary_with_an_error_spike_is_unhealthy(wf: Workflow, canary: int, cloudwatch) -> None:
    put_canary_metrics(cloudwatch, "canary", 40, 10, 10.0)
    put_canary_metrics(cloudwatch, "champion", 400, 2, 9.0)
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is False
    (reason,) = out["reasons"]
    assert "canary 5xx rate 25.00% vs production 0.50%" in reason
    assert out["summary"].startswith("canary unhealthy")


def test_a_canary_with_too_few_requests_is_unhealthy(wf: Workflow, canary: int, cloudwatch) -> None:
    """Too little traffic is no evidence of health: the verdict fails closed."""
    put_canary_metrics(cloudwatch, "canary", 5, 0, 10.0)
    put_canary_metrics(cloudwatch, "champion", 50, 0, 9.0)
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is False
    assert out["reasons"] == ["only 5 canary request(s), fewer than the 20 needed to judge it"]


def test_a_canary_during_an_alarm_on_the_model_is_unhealthy(
    wf: Workflow, canary: int, cloudwatch
) -> None:
    """
    Given healthy canary figures, an alarm on another model in ALARM, and credit-risk's
        latency alarm
    When credit-risk's alarm goes to ALARM
    Then the verdict is unhealthy and names that alarm (and only that one)
    """
    put_canary_metrics(cloudwatch, "canary", 40, 0, 10.0)
    put_canary_metrics(cloudwatch, "champion", 400, 0, 9.0)
    for model in (MODEL, "fraud"):
        cloudwatch.put_metric_alarm(
            AlarmName=f"{model}-p99-latency",
            Namespace="Ferry",
            MetricName="Latency",
            Dimensions=[{"Name": "model", "Value": model}],
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=100,
            ComparisonOperator="GreaterThanThreshold",
        )
    cloudwatch.set_alarm_state(AlarmName="fraud-p99-latency", StateValue="ALARM", StateReason="t")
    assert step(wf, "evaluate_canary", "run-1", version=canary)["healthy"] is True

    cloudwatch.set_alarm_state(
        AlarmName=f"{MODEL}-p99-latency", StateValue="ALARM", StateReason="p99 over 100 ms"
    )
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is False
    assert out["reasons"] == [f"alarm(s) in ALARM during the canary: {MODEL}-p99-latency"]


def test_evaluate_canary_needs_that_versions_canary_and_cloudwatch(
    wf: Workflow, gov: Governance, canary: int, aws, boto
) -> None:
    with pytest.raises(PromotionRefused, match="no canary in progress"):
        step(wf, "evaluate_canary", "run-1", version=1)
    blind = Workflow(
        gov,
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        cloudwatch=None,
        registry_table=aws.registry_table,
        model_bucket=aws.model_bucket,
    )
    with pytest.raises(PromotionRefused, match="no CloudWatch client"):
        step(blind, "evaluate_canary", "run-1", version=canary)


def test_promote_candidate_moves_production_and_stops_the_canary(
    wf: Workflow, gov: Governance, canary: int
) -> None:
    """
    Given v2 in a 10 % canary beside production v1 (started and audited)
    When the workflow promotes v2
    Then production is v2, the canary is over, and the audit trail says it ended promoted
    """
    live = gov.reader.fresh_canary(MODEL)
    assert (live.version, live.percent, live.run_id) == (canary, 10.0, "run-1")
    start = gov.audit.entries(MODEL)[-1]
    assert (start.event, start.version) == ("canary_start", canary)
    assert start.after == {"production": 1, "canary": canary, "percent": 10.0}
    assert gov.reader.fresh_pointer(MODEL, "production").version == 1

    out = step(wf, "promote_candidate", "run-1", version=canary, details={"verdict": "healthy"})
    assert out["promoted"]["after"] == {"production": canary}
    assert gov.reader.fresh_pointer(MODEL, "production").version == canary
    assert gov.reader.fresh_canary(MODEL) is None
    assert audit(gov)[-2:] == [("promote", canary), ("canary_stop", canary)]
    stop = gov.audit.entries(MODEL)[-1]
    assert stop.after == {"canary": None, "outcome": "promoted"}
    assert stop.details["outcome"] == "promoted"
    assert stop.details["run_id"] == "run-1" and stop.details["verdict"] == "healthy"
    assert out["canary"]["event"] == "canary_stop"


def test_promote_candidate_without_a_canary_is_a_switch(
    wf: Workflow, gov: Governance, registered, built, aws, boto
) -> None:
    version = registered_candidate(wf, aws, boto, built, "run-1")
    out = step(wf, "promote_candidate", "run-1", version=version)
    assert "canary" not in out
    assert gov.reader.fresh_pointer(MODEL, "production").version == version


def test_rollback_canary_stops_it_and_rejects_the_version(
    wf: Workflow, gov: Governance, canary: int
) -> None:
    """
    Given v2 in a canary beside production v1
    When the verdict rolls it back
    Then the canary is over, v2 is rejected and unstaged, production stays v1, and the audit
        trail records the stop (rolled back) and the rejection with the reason
    """
    out = step(wf, "rollback_canary", "run-1", version=canary, reason="5xx spike")
    assert gov.reader.fresh_canary(MODEL) is None
    assert gov.reader.version_record(MODEL, canary)["status"] == "rejected"
    assert gov.reader.fresh_pointer(MODEL, "production").version == 1
    assert gov.reader.fresh_pointer(MODEL, "staging") is None
    stop, reject = gov.audit.entries(MODEL)[-2:]
    assert (stop.event, stop.details["outcome"]) == ("canary_stop", "rolled_back")
    assert (reject.event, reject.version) == ("reject", canary)
    assert reject.reason == "canary rolled back: 5xx spike"
    assert out["rejected"]["after"]["status"] == "rejected"
    with pytest.raises(PromotionRefused):
        step(wf, "promote_candidate", "run-1", version=canary)


def test_reject_run_ends_a_running_canary(wf: Workflow, gov: Governance, canary: int) -> None:
    out = step(wf, "reject_run", "run-1", version=canary, reason="approval timed out")
    assert out["reason"] == "approval timed out"
    assert gov.reader.fresh_canary(MODEL) is None
    assert gov.reader.version_record(MODEL, canary)["status"] == "rejected"
    assert audit(gov)[-2:] == [("canary_stop", canary), ("reject", canary)]


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


def test_a_workflow_request_is_strict() -> None:
    with pytest.raises(ValidationError):
        WorkflowRequest(action="promote", model=MODEL, run_id="run-1")
    with pytest.raises(ValidationError):
        WorkflowRequest(action="start_canary", model=MODEL, run_id="run-1", percent=80)
    with pytest.raises(ValidationError):
        WorkflowRequest(action="lock", model=MODEL, run_id="../etc")
