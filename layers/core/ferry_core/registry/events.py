"""Governance events on EventBridge (`source: ferry.registry`), so other systems react to them.

Published after the registry and audit writes committed: the audit chain is the record, the
event is the notification. A failed publish is reported to the caller, never undoes the event.
"""

from __future__ import annotations

import json
from typing import Any

from ferry_core.audit.table import AuditEntry

SOURCE = "ferry.registry"
DETAIL_TYPES = {
    "register": "Model Version Registered",
    "validate": "Model Version Validated",
    "promote": "Model Version Promoted",
    "rollback": "Model Version Rolled Back",
    "archive": "Model Version Archived",
    "approve": "Model Version Approved",
    "reject": "Model Version Rejected",
    "batch_run": "Batch Run Recorded",
}


def detail_of(entry: AuditEntry, env: str | None = None) -> dict[str, Any]:
    """The event detail: the audit entry itself (with its hash, so receivers can cite it)."""
    detail = entry.as_dict()
    if env:
        detail["environment"] = env
    return detail


class EventPublisher:
    """Puts one EventBridge event per governance event on a bus (the default bus unless told)."""

    def __init__(self, events_client: Any, bus: str = "default", env: str | None = None) -> None:
        self._events = events_client
        self._bus = bus
        self._env = env

    def publish(self, entry: AuditEntry) -> str:
        """Publish and return the event id; raises RuntimeError when EventBridge refused it."""
        resp = self._events.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": DETAIL_TYPES[entry.event],
                    "Detail": json.dumps(detail_of(entry, self._env), sort_keys=True),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        (result,) = resp["Entries"]
        if resp.get("FailedEntryCount") or "EventId" not in result:
            code, message = result.get("ErrorCode"), result.get("ErrorMessage")
            raise RuntimeError(f"EventBridge refused the event: {code} {message}")
        return result["EventId"]
