"""Appending to and verifying a model's hash chain in the audit table.

Each entry's `prev_hash` is the hash of the entry before it (64 zeros for the first). Entries
are written with `attribute_not_exists(seq)` on `seq = last + 1`, so two writers can never both
take a number; the loser retries on the new head. A caller can make its own writes atomic with
the entry (`append(..., transact=[...])`): a stage move never lands without its audit entry or
vice versa. After each append the head is anchored (`ferry_core.audit.anchors`), and `verify`
compares the chain with its anchors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ferry_core.audit.anchors import AnchorStore
from ferry_core.audit.table import AuditEntry, AuditTable, item_seq
from ferry_core.clock import now_iso
from ferry_core.errors import AnchorFailed, AuditWriteFailed, TransactionRefused

GENESIS = "0" * 64
EVENTS = (
    "register",
    "validate",
    "promote",
    "rollback",
    "archive",
    "approve",
    "reject",
    "batch_run",
    "canary_start",
    "canary_stop",
)
MAX_ATTEMPTS = 50


@dataclass
class VerifyReport:
    """The verdict on one model's chain: `ok`, or the first bad entry and why."""

    model: str
    entries: int
    head_seq: int
    head_hash: str
    anchors: int
    ok: bool = True
    problems: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, seq: int | None, problem: str, message: str) -> None:
        self.ok = False
        self.problems.append({"seq": seq, "problem": problem, "message": message})

    @property
    def first_problem(self) -> str | None:
        return self.problems[0]["message"] if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    """Appends to and verifies the per-model hash chains in the audit table."""

    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        anchor: AnchorStore | None = None,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._ddb = dynamodb_client
        self.table = AuditTable(dynamodb_client, table)
        self.anchor = anchor
        self._clock = clock

    # -- writing ---------------------------------------------------------------------------
    def head(self, model: str) -> AuditEntry | None:
        item = self.table.head_item(model)
        return AuditEntry.from_item(item) if item else None

    def next_entry(
        self,
        model: str,
        event: str,
        actor: str,
        head: AuditEntry | None,
        *,
        version: int | None = None,
        before: Any = None,
        after: Any = None,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """The entry that follows `head`, hashed."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")

        def plain(value: Any) -> Any:  # exactly what a reader will rebuild from the stored JSON
            return json.loads(json.dumps(value, sort_keys=True))

        draft = AuditEntry(
            model=model,
            seq=head.seq + 1 if head else 1,
            event=event,
            actor=actor,
            at=self._clock(),
            version=version,
            before=plain(before),
            after=plain(after),
            reason=reason,
            details=plain(dict(details or {})),
            prev_hash=head.hash if head else GENESIS,
            hash="",
        )
        return AuditEntry(**{**draft.as_dict(), "hash": draft.computed_hash()})

    def append(
        self,
        model: str,
        event: str,
        actor: str,
        *,
        version: int | None = None,
        before: Any = None,
        after: Any = None,
        reason: str = "",
        details: dict[str, Any] | None = None,
        transact: Sequence[dict[str, Any]] = (),
    ) -> AuditEntry:
        """Append one entry (atomically with `transact`, the caller's own conditional writes).

        Retries when another writer took the sequence number; raises `TransactionRefused`
        (nothing written) when one of the caller's items failed its condition.
        """
        for attempt in range(MAX_ATTEMPTS):
            entry = self.next_entry(
                model,
                event,
                actor,
                self.head(model),
                version=version,
                before=before,
                after=after,
                reason=reason,
                details=details,
            )
            try:
                self._ddb.transact_write_items(
                    TransactItems=[*transact, self.table.put_item(entry)]
                )
            except self._ddb.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons", [])
                mine = [r.get("Code", "None") for r in reasons[: len(transact)]]
                if any(code == "ConditionalCheckFailed" for code in mine):
                    raise TransactionRefused(
                        f"{event} of {model} refused: a registry condition no longer holds",
                        reasons[: len(transact)],
                    ) from exc
                time.sleep(min(0.2, 0.005 * (attempt + 1)))  # lost the seq race: next head
                continue
            self._anchor(entry)
            return entry
        raise AuditWriteFailed(f"could not append to the audit chain of {model}: contention")

    def _anchor(self, entry: AuditEntry) -> None:
        if self.anchor is None:
            return
        try:
            self.anchor.write(entry)
        except Exception as exc:  # botocore errors: the event stands, the anchor is late
            raise AnchorFailed(
                f"{entry.event} recorded as audit entry {entry.seq} of {entry.model}, but its "
                f"anchor could not be written ({exc}); the next event anchors the chain again",
                entry,
            ) from exc

    # -- reading ---------------------------------------------------------------------------
    def items(self, model: str) -> list[dict[str, Any]]:
        return self.table.items(model)

    def entries(self, model: str) -> list[AuditEntry]:
        """The chain of `model`, oldest first (malformed items are skipped; `verify` names them)."""
        out = []
        for item in self.items(model):
            try:
                out.append(AuditEntry.from_item(item))
            except ValueError:
                continue
        return out

    def models(self) -> list[str]:
        """Every model with an audit chain."""
        return self.table.models()

    # -- verifying -------------------------------------------------------------------------
    def verify(self, model: str, items: list[dict[str, Any]] | None = None) -> VerifyReport:
        """Recompute every hash, check seq continuity and links, and compare with the anchors.

        `items` verifies a copy of the chain (an export, a restored backup) instead of the
        table's, against the same anchors.
        """
        items = self.items(model) if items is None else items
        report = VerifyReport(model, len(items), 0, GENESIS, 0)
        expected_seq, prev = 1, GENESIS
        chain: dict[int, str] = {}
        for item in sorted(items, key=item_seq):
            seq = item_seq(item)
            try:
                entry = AuditEntry.from_item(item)
            except ValueError as exc:
                report.fail(seq, "malformed", f"entry {seq} of {model} is malformed: {exc}")
                return report
            if entry.model != model:
                report.fail(seq, "altered", f"entry {seq} of {model} names model {entry.model}")
                return report
            if seq != expected_seq:
                report.fail(
                    expected_seq,
                    "missing",
                    f"entry {expected_seq} of {model} is missing (next present is {seq})",
                )
                return report
            if entry.computed_hash() != entry.hash:
                report.fail(
                    seq,
                    "altered",
                    f"entry {seq} of {model} ({entry.event}) was altered: its content does not "
                    "hash to its recorded hash",
                )
                return report
            if entry.prev_hash != prev:
                report.fail(
                    seq,
                    "reordered",
                    f"entry {seq} of {model} ({entry.event}) does not link to entry {seq - 1}: "
                    "entries were reordered, replaced or removed",
                )
                return report
            chain[seq] = entry.hash
            prev, expected_seq = entry.hash, seq + 1
        report.head_seq, report.head_hash = expected_seq - 1, prev
        if self.anchor is not None:
            self._check_anchors(report, chain)
        return report

    def _check_anchors(self, report: VerifyReport, chain: dict[int, str]) -> None:
        anchors = self.anchor.anchors(report.model) if self.anchor else []
        report.anchors = len(anchors)
        model = report.model
        for a in anchors:
            if a.versions > 1:
                report.fail(
                    a.seq,
                    "anchor_rewritten",
                    f"anchor {a.seq} of {model} has {a.versions} versions: someone tried to "
                    "overwrite it (the original, locked version is the one compared)",
                )
                return
            if a.seq not in chain:
                report.fail(
                    a.seq,
                    "missing",
                    f"entry {a.seq} of {model} is anchored but missing from the table "
                    f"(the table ends at entry {report.head_seq})",
                )
                return
            if chain[a.seq] != a.hash:
                report.fail(
                    a.seq,
                    "rewritten",
                    f"entry {a.seq} of {model} does not match its anchor: the chain was "
                    "rewritten from this entry on (hashes recomputed to look intact)",
                )
                return
        last = anchors[-1].seq if anchors else 0
        if report.head_seq > last:
            report.fail(
                last + 1,
                "unanchored",
                f"entries {last + 1}..{report.head_seq} of {model} are not anchored "
                "(appended outside Ferry, or an anchor write failed; the next event re-anchors)",
            )


def verify_all(log: AuditLog, models: Iterable[str] | None = None) -> list[VerifyReport]:
    """Verify every model's chain (or the given ones)."""
    return [log.verify(m) for m in (models if models is not None else log.models())]
