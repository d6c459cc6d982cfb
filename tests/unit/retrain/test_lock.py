"""The retrain lock: one run per model, expiry and release (ferry_core/retrain/lock.py).

Real registry and audit tables, real buckets and real CloudWatch metrics under moto.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ferry_core.retrain.lock import RetrainLock, RetrainRunning
from ferry_core.retrain.workflow import Workflow
from tests.unit.retrain.workflow_support import (
    MODEL,
    step,
)


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
    assert out["run"]["entry_point"] is None  # the model's own trainer (trainer_choice.py)
    settings = out["settings"]
    assert settings["approval_required"] is True
    assert (settings["canary"], settings["canary_percent"]) == (True, 5)
    assert settings["approve_command"] == f"ferry approve {MODEL} VERSION --env local"
    assert out["registered"] == {"version": None}
