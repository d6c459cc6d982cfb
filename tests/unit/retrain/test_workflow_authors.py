"""Who a retraining run is by, and the ValidateVersion machine's record step, under moto."""

from __future__ import annotations

import pytest

from ferry_core.retrain.workflow import RunInput, Workflow
from tests.unit.retrain.workflow_support import MODEL, step

ALICE = "arn:aws:sts::123456789012:assumed-role/Ferry-dev-DataScientist/alice"


@pytest.mark.parametrize(
    ("fields", "author"),
    [
        ({"trigger": "manual", "requested_by": ALICE}, ALICE),
        (
            {"trigger": "drift", "requested_by": "alarm:Ferry-dev-model-x-drift"},
            "alarm:Ferry-dev-model-x-drift",
        ),
        ({"trigger": "schedule"}, "schedule"),
        ({"trigger": "drift"}, "alarm:unknown"),
        ({"trigger": "manual"}, "ferry-retrain"),
    ],
)
def test_a_run_is_by_its_requester_or_what_started_it(fields: dict, author: str) -> None:
    assert RunInput(model=MODEL, **fields).author() == author


def test_the_lock_step_hands_the_run_its_author(wf: Workflow) -> None:
    """Training reads `run.requested_by` (the state machine passes it on as `trained_by`)."""
    out = step(wf, "lock", "run-a", details={"trigger": "manual", "requested_by": ALICE})
    assert out["run"]["requested_by"] == ALICE


def test_record_validation_records_a_result_and_a_gate_that_did_not_run(
    wf: Workflow, registered
) -> None:
    """The machine's last step: the gate's report is recorded on the version and audited as
    `validate` by the requester; a Catch's error is recorded as a failed result with why."""
    execution = "arn:aws:states:us-east-1:123456789012:execution:Ferry-dev-ValidateVersion:e1"
    report = {"passed": True, "champion_version": None, "summary": "passed all 6 checks"}
    out = step(
        wf,
        "record_validation",
        "e1",
        version=registered.version,
        actor=ALICE,
        details={"result": report, "execution": execution},
    )
    assert out["passed"] is True and out["recorded"]["execution"] == execution
    record = wf.gov.reader.version_record(MODEL, registered.version)["validation"]
    assert (record["passed"], record["execution"]) == (True, execution)
    cause = '{"errorType": "ReferenceUnavailable", "errorMessage": "no reference rows"}'
    failed = step(
        wf,
        "record_validation",
        "e2",
        version=registered.version,
        actor=ALICE,
        details={"error": {"Error": "ReferenceUnavailable", "Cause": cause}},
    )
    assert failed["passed"] is False
    record = wf.gov.reader.version_record(MODEL, registered.version)["validation"]
    assert record["summary"] == "validation could not run: ReferenceUnavailable: no reference rows"
    entries = [e for e in wf.gov.audit.entries(MODEL) if e.event == "validate"]
    assert [(e.actor, e.details["passed"]) for e in entries] == [(ALICE, True), (ALICE, False)]
