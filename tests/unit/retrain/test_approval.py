"""The approval gate: decisions and the waiting execution (ferry_core/retrain/approval.py).

Real registry and audit tables, real buckets and real CloudWatch metrics under moto.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ferry_core.errors import PromotionRefused
from ferry_core.registry.governance import Governance
from ferry_core.retrain.approval import ApprovalGate, decide
from ferry_core.retrain.workflow import Workflow
from ferry_local.moto_stack import REGION
from tests.unit.retrain.workflow_support import (
    LOCAL_ROLE,
    MODEL,
    registered_candidate,
    step,
)


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
