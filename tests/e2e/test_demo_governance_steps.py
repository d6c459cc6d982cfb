"""The governance chapter of `ferry demo`: every step holds on the local platform, each change
made through the governance API by the person the story names."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from ferry_cli.demo.governance import governance_steps
from tests.e2e.conftest import RunningPlatform

SERVICES = ("s3", "dynamodb")


class StepFailed(Exception):
    pass


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


def _steps(platform: RunningPlatform, built: Any, model: str, served: Any) -> dict[str, Any]:
    outputs = platform.outputs
    res = SimpleNamespace(
        model_bucket=outputs["ModelBucketName"],
        registry_table=outputs["RegistryTableName"],
        audit_table=outputs["AuditTableName"],
        anchor_bucket=outputs["AuditAnchorBucketName"],
    )

    def acting_as(identity: str) -> dict[str, Any]:
        return {name: platform.client(name, identity) for name in SERVICES}

    def govern(identity: str, route: str, body: dict[str, Any]) -> tuple[int, Any]:
        status, _, answer = platform.request(
            "POST", f"/v1/governance/{route}", body, identity=identity
        )
        return status, answer

    console = Console(record=True, width=140)
    steps = governance_steps(console, acting_as, govern, res, built, _expect, served, model)
    return {"console": console, "steps": dict(steps)}


def test_demo_steps_register_promote_refuse_roll_back_and_verify(
    local_platform: RunningPlatform, candidate: Any
) -> None:
    model = "demo-steps"

    def served_version() -> int:
        deadline = time.monotonic() + 15  # the scorer trusts a stage pointer for a few seconds
        while True:
            status, _, card = local_platform.request("GET", f"/v1/models/{model}")
            if (status == 200 and card["version"] == 1) or time.monotonic() > deadline:
                return int(card["version"])
            time.sleep(0.5)

    made = _steps(local_platform, candidate, model, served_version)
    outcomes = [fn() for fn in made["steps"].values()]
    assert len(outcomes) == 5 and all(outcomes)
    assert "refused" in outcomes[2] and "rolled back to v1" in outcomes[3]
    text = made["console"].export_text()
    assert "has no validation results" in text
    assert f"entry 2 of {model} (register) was altered" in text and "AccessDenied" in text


def test_a_failing_expectation_fails_the_step(
    local_platform: RunningPlatform, candidate: Any
) -> None:
    steps = _steps(local_platform, candidate, "demo-steps-failing", lambda: 99)["steps"]
    for title in list(steps)[:3]:
        steps[title]()
    with pytest.raises(StepFailed, match="scoring serves v99"):
        steps["Roll production back to the previous version"]()
