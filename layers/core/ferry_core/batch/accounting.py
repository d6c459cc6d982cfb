"""Row accounting of a batch run, and its one entry in the audit trail.

Every run, and every part of a fanned-out run, keeps `rows_in = rows_scored + rows_rejected`;
a succeeded run is audited exactly once, even when a crash makes the queue deliver it again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferry_core.dynamo import encode_all
from ferry_core.errors import TransactionRefused

ACTOR = "ferry-batch"
# The idempotency table's TTL attribute (epoch seconds), the one Powertools' records use too.
TTL_ATTRIBUTE = "expiration"

AuditAppend = Callable[..., Any]
"""`AuditLog.append`: (model, action, actor, *, version, details, transact) → entry."""


@dataclass
class Counts:
    """Row accounting of a run or a part: rows_in = rows_scored + rows_rejected, always."""

    rows_in: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.rows_in += other.rows_in
        self.rows_scored += other.rows_scored
        self.rows_rejected += other.rows_rejected
        self.problems.update(other.problems)
        self.warnings.update(other.warnings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_scored": self.rows_scored,
            "rows_rejected": self.rows_rejected,
            "problems": dict(sorted(self.problems.items())),
            "warnings": dict(sorted(self.warnings.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        return cls(
            d["rows_in"],
            d["rows_scored"],
            d["rows_rejected"],
            Counter(d.get("problems", {})),
            Counter(d.get("warnings", {})),
        )


def once_per_run(
    table: str,
    clock: Callable[[], str],
    *,
    keep_seconds: int,
    epoch: Callable[[], float] = time.time,
) -> Callable[[str], dict[str, Any]]:
    """The marker written in the audit entry's transaction: a second entry for a run is refused.

    Returns, for a run id, a TransactWriteItems `Put` on `table` (the idempotency table) that
    fails when the run's marker already exists. The marker carries the table's TTL attribute,
    `keep_seconds` ahead (the table's retention): a run is never redelivered after that.
    """

    def marker(rid: str) -> dict[str, Any]:
        expires = int(epoch()) + keep_seconds
        item = {"id": f"batch-audit#{rid}", "at": clock(), TTL_ATTRIBUTE: expires}
        return {
            "Put": {
                "TableName": table,
                "Item": encode_all(item),
                "ConditionExpression": "attribute_not_exists(id)",
            }
        }

    return marker


def record_batch_run(
    append: AuditAppend, manifest: dict[str, Any], once: dict[str, Any] | None = None
) -> bool:
    """Write the run to the audit trail (`AuditLog.append`), at most once per run.

    `once` is a conditional Put written in the same transaction: when it already exists the
    append is refused and nothing is written. Returns whether an entry was written.
    """
    model = manifest["model"]
    try:
        append(
            model["name"],
            "batch_run",
            ACTOR,
            version=model["version"],
            details={
                "run_id": manifest["run_id"],
                "input": {
                    k: manifest["input"][k] for k in ("bucket", "key", "version_id", "sha256")
                },
                "rows_in": manifest["rows_in"],
                "rows_scored": manifest["rows_scored"],
                "rows_rejected": manifest["rows_rejected"],
                "manifest": manifest["outputs"]["manifest"],
            },
            transact=[once] if once else (),
        )
    except TransactionRefused:
        return False
    return True


_SUMMARY = ("status", "reason", "run_id", "rows_in", "rows_scored", "rows_rejected", "outputs")


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's headline: status, reason, row accounting and where the outputs are."""
    return {k: manifest.get(k) for k in _SUMMARY}


def metric_points(manifest: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(metric, unit name, value) of a run finished here, published per model.

    `BatchFailures` for a failed run (the alarm's metric), rows and speed for a succeeded
    one; nothing for a duplicate delivery or a run that did not finish in this call.
    """
    if manifest.get("duplicate") or manifest.get("status") not in ("succeeded", "failed"):
        return []
    if manifest["status"] == "failed":
        return [("BatchFailures", "Count", 1)]
    return [
        ("RowsScored", "Count", manifest["rows_scored"]),
        ("RowsRejected", "Count", manifest["rows_rejected"]),
        ("FileSeconds", "Seconds", manifest.get("seconds") or 0),
        ("RowsPerSecond", "CountPerSecond", manifest.get("rows_per_second") or 0),
    ]
