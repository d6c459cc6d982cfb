"""Runs of the retrain-and-promote state machine, as a client starts and follows them.

`ferry retrain` and the demo start a run with its input (see
`ferry_core.retrain.workflow.RunInput`), then follow the states it enters until it
ends, promoted or not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def start_run(
    sfn: Any,
    machine_arn: str,
    model: str,
    run_input: dict[str, Any],
    requested_by: str | None = None,
) -> str:
    """Start one run; returns its execution ARN (the run id is the execution name).

    `requested_by` is the run's author, the verified identity starting it: training records
    it as the version's `trained_by`, so its author cannot approve the version (four eyes).
    """
    document = {"model": model, **run_input}
    if requested_by is not None:
        document["requested_by"] = requested_by
    resp = sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(document))
    return resp["executionArn"]


def run_states(sfn: Any, execution_arn: str) -> list[str]:
    """The states the run has entered so far, in order."""
    names: list[str] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        for event in page["events"]:
            details = event.get("stateEnteredEventDetails")
            if details:
                names.append(details["name"])
        if not page.get("nextToken"):
            return names
        kwargs["nextToken"] = page["nextToken"]


def wait_run(
    sfn: Any,
    execution_arn: str,
    timeout_s: float,
    on_state: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Poll until the run ends (or `timeout_s`): its id, execution status, outcome and states.

    `on_state` hears each state as the run enters it. The outcome is the run's output, or
    `{"status": "failed", "reason": …}` when the execution failed without one.
    """
    seen = 0
    deadline = time.monotonic() + timeout_s
    while True:
        desc = sfn.describe_execution(executionArn=execution_arn)
        states = run_states(sfn, execution_arn)
        for name in states[seen:]:
            if on_state:
                on_state(name)
        seen = len(states)
        if desc["status"] in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    outcome: dict[str, Any] = {}
    if desc.get("output"):
        outcome = json.loads(desc["output"])
    elif desc.get("cause"):
        outcome = {"status": "failed", "reason": desc["cause"]}
    return {
        "run_id": desc["name"],
        "execution_arn": execution_arn,
        "status": desc["status"],
        "outcome": outcome,
        "states": states,
    }
