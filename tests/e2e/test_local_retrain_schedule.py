"""Scheduled retraining covers every live model the registry holds when the schedule fires.

Runs `LocalPlatform` in this process. The stack's retrain schedule rule is fired through the
local EventBridge delivery (a `Scheduler` whose clock is moved on a week), so the real
rule target, its role, the schedule state machine (registry query, a Map over the models,
each model's production pointer) and its StartExecution calls all run as synthesized.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ferry_local.eventbridge import Dispatcher, RegionalClients, Scheduler
from ferry_local.platform import LocalPlatform
from tests.e2e.conftest import PlatformClient, register_and_promote

WEEK = 7 * 86_400


def _register(platform: LocalPlatform, built: Any, name: str, live: bool) -> None:
    """Registered through the governance API; a live one gated and promoted to production."""
    register_and_promote(PlatformClient(platform.info()), built, name, production=live)


def _machine_arn(platform: LocalPlatform, logical_prefix: str) -> str:
    assert platform.resolver is not None
    (lid,) = [
        lid
        for lid, resource in platform.resolver.resources.items()
        if lid.startswith(logical_prefix) and resource["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    return platform.resolver.arn(lid)


def _finished(sfn: Any, machine: str, timeout: float = 90.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [
            sfn.describe_execution(executionArn=e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=machine)["executions"]
        ]
        if runs and all(r["status"] != "RUNNING" for r in runs):
            return runs
        assert time.monotonic() < deadline, f"{machine} executions still running: {runs}"
        time.sleep(0.5)


def test_the_schedule_starts_a_run_for_each_live_model_and_no_other(
    tmp_path: Path, built: Any
) -> None:
    """
    Given a platform whose registry holds two live models and one never promoted, all
        registered after the stack was synthesized
    When the retrain schedule fires (a week later)
    Then the schedule's state machine succeeds and has started one retraining run per live
        model, with trigger `schedule`, and none for the model that is not live
    """
    with LocalPlatform(state_dir=tmp_path) as platform:
        for name, live in (("churn-a", True), ("churn-b", True), ("draft-c", False)):
            _register(platform, built, name, live)
        now = [time.time()]
        dispatcher = Dispatcher(
            RegionalClients(platform.clients), role_clients=platform.role_clients
        )
        scheduler = Scheduler(dispatcher, clock=lambda: now[0])
        scheduler.tick()  # every schedule rule is first seen now
        now[0] += WEEK
        fired = scheduler.tick()
        dispatcher.drain()
        lister = _machine_arn(platform, "RetrainScheduleStateMachine")
        assert any(
            arn.split("/")[-1].startswith("Ferry-local-RetrainScheduleRule") for arn in fired
        )
        assert all(d.ok for d in dispatcher.deliveries if d.target_arn == lister), [
            d.error for d in dispatcher.deliveries
        ]
        sfn = platform.clients["stepfunctions"]
        (listing,) = _finished(sfn, lister)
        assert listing["status"] == "SUCCEEDED", listing
        retrain = _machine_arn(platform, "RetrainStateMachine")
        started = [
            json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
            for e in sfn.list_executions(stateMachineArn=retrain)["executions"]
        ]
        assert sorted(r["model"] for r in started) == ["churn-a", "churn-b"]
        assert {r["trigger"] for r in started} == {"schedule"}
        dispatcher.shutdown()
