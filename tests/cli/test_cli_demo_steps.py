"""The governance part of `ferry demo`: every step holds on the in-process platform."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from ferry_cli.demo.governance import governance_steps
from ferry_local.events import LambdaContext, http_api_event
from ferry_local.handlers import load_handler


class StepFailed(Exception):
    pass


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


def test_demo_steps_register_promote_refuse_roll_back_and_verify(aws, boto, candidate) -> None:
    scoring = load_handler("scoring")
    scoring.service.cache_clear()

    def served_version() -> int:
        scoring.service().registry._pointers.clear()
        resp = scoring.lambda_handler(
            http_api_event("GET", "/v1/models/credit-risk", routes=scoring.ROUTES),
            LambdaContext("ferry-scoring"),
        )
        return json.loads(resp["body"])["version"]

    console = Console(record=True, width=140)
    steps = governance_steps(console, boto, aws, candidate, _expect, served_version)
    outcomes = [fn() for _, fn in steps]
    scoring.service.cache_clear()
    assert len(outcomes) == 5 and all(outcomes)
    assert "refused" in outcomes[2] and "rolled back to v1" in outcomes[3]
    text = console.export_text()
    assert (
        "has no validation results" in text
        and "entry 2 of credit-risk (register) was altered" in text
    )


def test_a_failing_expectation_fails_the_step(aws, boto, candidate) -> None:
    steps = dict(governance_steps(Console(record=True), boto, aws, candidate, _expect, lambda: 99))
    for title in list(steps)[:3]:
        steps[title]()
    with pytest.raises(StepFailed, match="scoring serves v99"):
        steps["Roll production back to the previous version"]()
