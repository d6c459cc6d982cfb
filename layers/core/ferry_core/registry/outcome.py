"""What a governance event did, as every caller of `Governance` receives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ferry_core.audit.table import AuditEntry


@dataclass
class Outcome:
    """What a governance event did: the audit entry, the published event, any warnings, and
    the Step Functions execution it started (a validation), if any."""

    event: str
    model: str
    version: int | None
    before: Any
    after: Any
    entry: AuditEntry | None
    event_id: str | None = None
    stage: str | None = None
    revision: int | None = None
    warnings: list[str] = field(default_factory=list)
    execution: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "event": self.event,
            "model": self.model,
            "version": self.version,
            "stage": self.stage,
            "revision": self.revision,
            "before": self.before,
            "after": self.after,
            "audit_seq": self.entry.seq if self.entry else None,
            "audit_hash": self.entry.hash if self.entry else None,
            "event_id": self.event_id,
            "warnings": self.warnings,
        }
        if self.execution is not None:
            out["execution"] = self.execution
        return out
