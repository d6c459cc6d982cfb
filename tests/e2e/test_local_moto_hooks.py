"""moto_hooks: every patch of a moto internal goes in and comes out as a unit, on one moto."""

from __future__ import annotations

import pytest
from moto.core.config import default_user_config

from ferry_local import moto_hooks
from ferry_local.moto_hooks import PATCHES, MotoVersionError


def _current() -> dict[str, object]:
    return {p.name: p.owner_object().__dict__[p.attribute] for p in PATCHES}


def test_install_then_uninstall_restores_every_original() -> None:
    """Given moto untouched, when the hooks go in, every patched attribute is replaced; when
    they come out, every attribute is the very object it was, and so is moto's setting."""
    before = _current()
    sfn_before = default_user_config.get("stepfunctions", {}).get("execute_state_machine")
    moto_hooks.install()
    try:
        during = _current()
        assert all(during[name] is not before[name] for name in before)
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
    finally:
        moto_hooks.uninstall()
    assert not moto_hooks.is_installed()
    after = _current()
    assert all(after[name] is before[name] for name in before)
    restored = default_user_config.get("stepfunctions", {}).get("execute_state_machine")
    assert bool(restored) == bool(sfn_before)


def test_installs_nest_and_the_last_uninstall_restores() -> None:
    before = _current()
    with moto_hooks.installed():
        with moto_hooks.installed():
            pass
        assert moto_hooks.is_installed()
        assert all(_current()[n] is not before[n] for n in before)
    assert all(_current()[n] is before[n] for n in before)


def test_every_patched_attribute_exists_in_this_moto() -> None:
    for patch in PATCHES:
        assert patch.attribute in patch.owner_object().__dict__, f"{patch.name} is gone"


def test_another_moto_version_is_refused_with_the_reason() -> None:
    with pytest.raises(MotoVersionError, match=r"moto is 9\.9\.9.*written for moto 5\.2\.5"):
        moto_hooks.check_moto_version("9.9.9")
    moto_hooks.check_moto_version()  # the installed moto is the one they were written for


@pytest.mark.parametrize(
    ("failed", "total", "count", "percentage", "fails"),
    [
        (0, 5, 0, 0.0, False),  # nothing failed
        (1, 5, 0, 0.0, True),  # no threshold declared: any failed item fails the Map Run
        (2, 5, 2, 0.0, False),  # ToleratedFailureCount 2: two failures are tolerated
        (3, 5, 2, 0.0, True),  # ... a third is not
        (2, 5, 0, 40.0, False),  # ToleratedFailurePercentage 40: 40 % is tolerated
        (3, 5, 0, 40.0, True),  # ... 60 % is not
        (5, 5, 0, 100.0, False),  # 100 %: the run never fails on its items
        (3, 10, 2, 50.0, True),  # both declared: past either one fails it
    ],
)
def test_a_distributed_map_run_fails_past_its_tolerated_failures(
    failed: int, total: int, count: int, percentage: float, fails: bool
) -> None:
    """The threshold rule of the Map Run patch, as AWS documents it for Distributed Map."""
    assert moto_hooks.exceeds_tolerance(failed, total, count, percentage) is fails


def test_a_start_execution_task_runs_with_the_state_machines_names() -> None:
    """
    Given a state machine whose task starts another (`states:startExecution`, parameters
        `StateMachineArn`/`Input` as AWS's documentation writes them)
    When it runs on moto with the hooks installed
    Then the other machine is started with that input, and the task's result carries
        AWS's capitalized names (`ExecutionArn`, `StartDate` as an ISO date)
    """
    import json
    import time

    import boto3
    from moto import mock_aws

    role = "arn:aws:iam::123456789012:role/r"
    passing = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        moto_hooks.installed(),
    ):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        target = sfn.create_state_machine(
            name="target", roleArn=role, definition=json.dumps(passing)
        )["stateMachineArn"]
        task = {
            "Type": "Task",
            "Resource": "arn:aws:states:::states:startExecution",
            "Parameters": {"StateMachineArn": target, "Input": {"model.$": "$.model"}},
            "End": True,
        }
        starter = sfn.create_state_machine(
            name="starter",
            roleArn=role,
            definition=json.dumps({"StartAt": "S", "States": {"S": task}}),
        )["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=starter, input='{"model": "fraud"}')
        deadline = time.monotonic() + 30
        while (desc := sfn.describe_execution(executionArn=run["executionArn"]))[
            "status"
        ] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert desc["status"] == "SUCCEEDED", desc
        output = json.loads(desc["output"])
        assert set(output) == {"ExecutionArn", "StartDate"} and "T" in output["StartDate"]
        started = sfn.describe_execution(executionArn=output["ExecutionArn"])
        assert started["stateMachineArn"] == target
        assert json.loads(started["input"]) == {"model": "fraud"}
