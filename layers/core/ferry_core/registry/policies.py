"""The policies the platform owns, checked where every governance change runs.

- Four eyes: nobody approves a version they registered or whose training run they started.
  Identities compare as full principal ARNs (the verified caller of the governance API), so
  `arn:…:assumed-role/approver/alice` and `arn:…:assumed-role/approver/bob` are two people.
- The gate before production: a version goes to production only with a PASSED result of the
  validation function (schema, parity, metrics, segments, scenarios, latency) gated against
  the version in production NOW. Registration's own quick checks are not that gate; a result
  against an earlier champion is stale once production moved.
- Starting a validation: the `ValidateVersion` state machine gates a registered version and
  records the result through the governance function (`Governance.record_validation`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ferry_core.card import Card
from ferry_core.errors import GovernanceForbidden

# Where a gate result comes from: the validation function's report (`GateReport.as_dict`).
GATE_SOURCE = "validation"


def four_eyes_problem(card: Card, actor: str, registrants: list[str]) -> GovernanceForbidden | None:
    """Why `actor` may not approve `card`, or None. `registrants` are the actors of its
    `register` audit entries (the chain's own record, beside the card's lineage)."""
    who = f"{card.name} v{card.version}"
    if actor == card.lineage.registered_by or actor in registrants:
        return GovernanceForbidden(
            f"{actor} registered {who}: a version is approved by someone other than its "
            "registrant (four eyes)"
        )
    if actor == card.lineage.trained_by:
        return GovernanceForbidden(
            f"{actor} started the training run of {who}: a version is approved by someone "
            "other than its trainer (four eyes)"
        )
    return None


def gate_result(card: Card, recorded: str | None) -> dict[str, Any] | None:
    """The latest gate result of a version: the one recorded on its registry item by a
    validation of the registered version, else the report its retraining run was registered
    with (a candidate gated before registration). Registration's own checks are not one."""
    if recorded:
        return json.loads(recorded)
    if card.validation and card.validation.get("source") == GATE_SOURCE:
        return card.validation
    return None


def _label(version: int | None) -> str:
    return f"v{version}" if version is not None else "no production version"


def production_gate_problem(
    card: Card, result: dict[str, Any] | None, production: int | None
) -> str | None:
    """Why `card` may not go to production while `production` is live, or None."""
    who, rerun = f"{card.name} v{card.version}", f"`ferry validate {card.name} {card.version}`"
    if result is None:
        return (
            f"{who} has no result from the validation gate against the current production "
            f"version ({_label(production)}); registration's own checks do not suffice for "
            f"production: run {rerun}"
        )
    against = result.get("champion_version")
    if result.get("passed") is not True:
        summary = result.get("summary") or "the gate did not pass"
        return f"{who} did not pass the validation gate: {summary}"
    if against != production:
        return (
            f"{who} was validated against {_label(against)}, but production is now "
            f"{_label(production)}: run {rerun} to gate it against the current champion"
        )
    return None


@dataclass(frozen=True)
class ValidationStarter:
    """Starts the `ValidateVersion` state machine for one registered version."""

    sfn: Any
    state_machine_arn: str

    def start(self, model: str, version: int, requested_by: str) -> str:
        """The execution's ARN; the result is recorded when the execution ends."""
        payload = {"model": model, "version": version, "requested_by": requested_by}
        resp = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, input=json.dumps(payload)
        )
        return str(resp["executionArn"])


def wait_for_gate(
    reader: Any, model: str, version: int, execution: str | None, timeout: float = 300
) -> dict[str, Any] | None:
    """The gate result that `execution` (a ValidateVersion run: registration and
    `POST /v1/governance/validate` start one) recorded on the version; with no execution, what
    is recorded now; None when nothing was recorded within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = reader.version_record(model, version).get("validation") or {}
        if result and (execution is None or result.get("execution") == execution):
            return result
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)
