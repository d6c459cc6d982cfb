"""Pending approvals: a retraining run waiting for an operator's decision on its version.

The run stores its Step Functions task token beside the version (`request`); the governance
function's approve or reject route (`ferry approve|reject`) records the decision in the audit
trail, as the verified caller, and then resumes the run (`decide`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ferry_core.clock import now_iso
from ferry_core.registry.governance import Governance, Outcome
from ferry_core.registry.table import ApprovalItem, approval_key, key

log = logging.getLogger("ferry.workflow")


class ApprovalGate:
    """Pending approvals: the task token of a waiting execution, stored beside the version."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb, self._table = dynamodb, table

    def request(self, model: str, version: int, token: str, run_id: str) -> None:
        item = ApprovalItem(
            model=model, version=version, task_token=token, run_id=run_id, requested_at=now_iso()
        )
        self._ddb.put_item(TableName=self._table, Item=item.to_item())

    def pending(self, model: str, version: int) -> dict[str, str] | None:
        """The waiting run's `task_token`, `run_id` and `requested_at`, or None."""
        item = self._ddb.get_item(
            TableName=self._table, Key=key(model, approval_key(version)), ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return ApprovalItem.from_item(item).model_dump(
            include={"task_token", "run_id", "requested_at"}
        )

    def clear(self, model: str, version: int) -> None:
        self._ddb.delete_item(TableName=self._table, Key=key(model, approval_key(version)))

    def resolve(
        self, sfn: Any, model: str, version: int, approved: bool, actor: str, reason: str
    ) -> str | None:
        """Resume the waiting execution (if any); returns its run id. The decision itself is
        recorded by `Governance.approve`/`reject` before this is called."""
        pending = self.pending(model, version)
        if pending is None:
            return None
        token = pending["task_token"]
        try:
            if approved:
                sfn.send_task_success(
                    taskToken=token,
                    output=json.dumps({"approved": True, "approved_by": actor, "reason": reason}),
                )
            else:
                sfn.send_task_failure(
                    taskToken=token,
                    error="ApprovalRejected",
                    cause=f"rejected by {actor}: {reason or 'no reason given'}"[:32_000],
                )
        except (sfn.exceptions.TaskTimedOut, sfn.exceptions.InvalidToken) as exc:
            # The run already timed out or ended: nothing waits; the decision stands anyway.
            log.warning(
                "run %s no longer waits for %s v%s: %s", pending["run_id"], model, version, exc
            )
        self.clear(model, version)
        return pending["run_id"]


def decide(
    gov: Governance,
    gate: ApprovalGate,
    sfn: Any | None,
    model: str,
    version: int,
    *,
    approved: bool,
    actor: str,
    reason: str = "",
) -> tuple[Outcome, str | None]:
    """An operator's approval or rejection: audited first, then the waiting run (if any) is
    resumed, so a decision is never acted on without its record. Returns the resumed run id."""
    if approved:
        outcome = gov.approve(model, version, actor=actor, reason=reason)
    else:
        outcome = gov.reject(model, version, actor=actor, reason=reason)
    run = gate.resolve(sfn, model, version, approved, actor, reason) if sfn is not None else None
    if run:
        outcome.warnings.append(f"decision passed to retraining run {run}")
    return outcome, run
