"""Following a retraining run: states in order, the outcome from the output or the failure."""

from __future__ import annotations

import json
from typing import Any

from ferry_core.retrain.runs import run_states, start_run, wait_run

ARN = "arn:aws:states:us-east-1:123456789012:execution:retrain:run-1"


class FakeStepFunctions:
    """A Step Functions client whose execution enters one more state per describe call."""

    def __init__(self, states: list[str], final: dict[str, Any], pages: int = 1) -> None:
        self.states, self.final, self.pages = states, final, pages
        self.entered = 0
        self.started: dict[str, Any] = {}

    def start_execution(self, stateMachineArn: str, input: str) -> dict[str, Any]:
        self.started = {"machine": stateMachineArn, "input": json.loads(input)}
        return {"executionArn": ARN}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.entered = min(self.entered + 1, len(self.states))
        if self.entered < len(self.states):
            return {"name": "run-1", "status": "RUNNING"}
        return {"name": "run-1", **self.final}

    def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
        events = [{"stateEnteredEventDetails": {"name": s}} for s in self.states[: self.entered]]
        half = len(events) // 2
        if self.pages == 2 and "nextToken" not in kwargs:
            return {"events": events[:half], "nextToken": "more"}
        if self.pages == 2:
            return {"events": events[half:]}
        return {"events": [*events, {"type": "TaskScheduled"}]}


def test_a_run_is_started_with_the_model_in_its_input() -> None:
    sfn = FakeStepFunctions(["Lock"], {"status": "SUCCEEDED"})
    assert start_run(sfn, "machine-arn", "credit-risk", {"trigger": "manual"}) == ARN
    assert sfn.started == {
        "machine": "machine-arn",
        "input": {"model": "credit-risk", "trigger": "manual"},
    }


def test_each_state_is_heard_once_in_order_and_the_output_is_the_outcome() -> None:
    """
    Given a run that enters Lock, Train, Promote and succeeds with an output
    When it is followed to its end
    Then every state is heard once, in order, and the outcome is the run's output
    """
    output = {"status": "promoted", "version": 3}
    sfn = FakeStepFunctions(
        ["Lock", "Train", "Promote"], {"status": "SUCCEEDED", "output": json.dumps(output)}
    )
    heard: list[str] = []
    result = wait_run(sfn, ARN, timeout_s=10, on_state=heard.append, poll_s=0)
    assert heard == ["Lock", "Train", "Promote"] == result["states"]
    assert result == {
        "run_id": "run-1",
        "execution_arn": ARN,
        "status": "SUCCEEDED",
        "outcome": output,
        "states": heard,
    }


def test_a_failed_run_without_output_reports_its_cause() -> None:
    sfn = FakeStepFunctions(["Lock"], {"status": "FAILED", "cause": "training failed"})
    result = wait_run(sfn, ARN, timeout_s=10, poll_s=0)
    assert result["outcome"] == {"status": "failed", "reason": "training failed"}


def test_states_are_read_across_history_pages() -> None:
    sfn = FakeStepFunctions(["A", "B", "C", "D"], {"status": "SUCCEEDED"}, pages=2)
    sfn.entered = 4
    assert run_states(sfn, ARN) == ["A", "B", "C", "D"]
