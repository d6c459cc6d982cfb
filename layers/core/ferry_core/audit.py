"""The audit trail: an append-only, hash-chained log per model, anchored outside DynamoDB.

Each entry `{model, seq, event, actor, at, version, before, after, reason, details, prev_hash,
hash}` carries `hash = sha256(canonical JSON of the entry without "hash")`, and `prev_hash` is
the hash of the entry before it (64 zeros for the first). Entries are written with
`attribute_not_exists(seq)` on `seq = last + 1`, so two writers can never both take a number;
the loser retries on the new head. A caller can make its own writes atomic with the entry
(`append(..., transact=[...])`): a stage move never lands without its audit entry or vice versa.

After each append the head hash is written to an S3 bucket with Object Lock in compliance mode
(`AnchorStore`). Someone who can rewrite the table, and recompute every hash so the chain looks
intact, still cannot change the anchors, and `verify` compares the chain with them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ferry_core.errors import AnchorFailed, AuditWriteFailed, TransactionRefused
from ferry_core.registry import now_iso

GENESIS = "0" * 64
EVENTS = (
    "register",
    "promote",
    "rollback",
    "archive",
    "approve",
    "reject",
    "batch_run",
    "canary_start",
    "canary_stop",
)
ANCHOR_PREFIX = "anchors/"
_JSON_FIELDS = ("before", "after", "details")
_FIELDS = (
    "model",
    "seq",
    "event",
    "actor",
    "at",
    "version",
    "before",
    "after",
    "reason",
    "details",
    "prev_hash",
    "hash",
)
MAX_ATTEMPTS = 50


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class AuditEntry:
    """One link of a model's chain."""

    model: str
    seq: int
    event: str
    actor: str
    at: str
    version: int | None
    before: Any
    after: Any
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """Everything the hash covers (the entry without its own hash)."""
        d = asdict(self)
        d.pop("hash")
        return d

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical(self.body())).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item; JSON-valued fields are stored as JSON strings (exact, no Decimal)."""
        item: dict[str, Any] = {
            "model": {"S": self.model},
            "seq": {"N": str(self.seq)},
            "event": {"S": self.event},
            "actor": {"S": self.actor},
            "at": {"S": self.at},
            "reason": {"S": self.reason},
            "prev_hash": {"S": self.prev_hash},
            "hash": {"S": self.hash},
        }
        item["version"] = {"NULL": True} if self.version is None else {"N": str(self.version)}
        for name in _JSON_FIELDS:
            item[name] = {"S": json.dumps(getattr(self, name), sort_keys=True)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> AuditEntry:
        """Rebuild an entry from its item; `ValueError` if the item is not a well-formed entry."""
        extra = set(item) - set(_FIELDS)
        missing = set(_FIELDS) - set(item)
        if extra or missing:
            raise ValueError(
                f"unexpected attributes {sorted(extra)}" if extra else f"missing {sorted(missing)}"
            )
        try:
            version = item["version"]
            values: dict[str, Any] = {
                "model": item["model"]["S"],
                "seq": int(item["seq"]["N"]),
                "event": item["event"]["S"],
                "actor": item["actor"]["S"],
                "at": item["at"]["S"],
                "version": None if "NULL" in version else int(version["N"]),
                "reason": item["reason"]["S"],
                "prev_hash": item["prev_hash"]["S"],
                "hash": item["hash"]["S"],
            }
            for name in _JSON_FIELDS:
                values[name] = json.loads(item[name]["S"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed attribute: {exc}") from exc
        return cls(**values)


@dataclass(frozen=True)
class Anchor:
    """The head of a model's chain as it was when an entry was appended."""

    model: str
    seq: int
    hash: str
    at: str
    versions: int = 1  # S3 object versions under this key; more than one is itself tampering


class AnchorStore:
    """Head hashes in an S3 bucket with Object Lock (compliance mode, default retention).

    One object per entry, `anchors/{model}/{seq:012d}.json`, written with `If-None-Match: *`.
    The bucket's default retention locks each one; no principal can delete or shorten it.
    """

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    @staticmethod
    def key(model: str, seq: int) -> str:
        return f"{ANCHOR_PREFIX}{model}/{seq:012d}.json"

    def write(self, entry: AuditEntry) -> None:
        """Anchor `entry`; an anchor already there is fine only if it is this very entry's.

        botocore retries a PutObject whose answer was lost; the retry then meets the object
        the first attempt created (412): that is a success, not a failed anchor.
        """
        body = canonical(
            {"model": entry.model, "seq": entry.seq, "hash": entry.hash, "at": now_iso()}
        )
        key = self.key(entry.model, entry.seq)
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code not in ("PreconditionFailed", "412"):
                raise
            there = json.loads(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            if (there.get("seq"), there.get("hash")) != (entry.seq, entry.hash):
                raise

    def anchors(self, model: str) -> list[Anchor]:
        """Every anchor of `model`, oldest first, read from the OLDEST version of each key.

        A later version of an anchor key can only be an attempt to rewrite it; it is counted
        (and reported by `verify`) but never believed.
        """
        oldest: dict[str, tuple[str, int]] = {}  # key -> (version id, versions seen)
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{ANCHOR_PREFIX}{model}/"):
            for v in page.get("Versions", []):
                # Versions of a key are listed newest first: the last one seen is the oldest.
                seen = oldest.get(v["Key"], ("", 0))[1]
                oldest[v["Key"]] = (v["VersionId"], seen + 1)
        out = []
        for key in sorted(oldest):
            vid, count = oldest[key]
            obj = self._s3.get_object(Bucket=self.bucket, Key=key, VersionId=vid)
            data = json.loads(obj["Body"].read())
            out.append(Anchor(data["model"], int(data["seq"]), data["hash"], data["at"], count))
        return out


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
        self._table = table
        self.anchor = anchor
        self._clock = clock

    # -- writing ---------------------------------------------------------------------------
    def head(self, model: str) -> AuditEntry | None:
        resp = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="#m = :m",
            ExpressionAttributeNames={"#m": "model"},
            ExpressionAttributeValues={":m": {"S": model}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = resp.get("Items", [])
        return AuditEntry.from_item(items[0]) if items else None

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
            put = {
                "Put": {
                    "TableName": self._table,
                    "Item": entry.to_item(),
                    "ConditionExpression": "attribute_not_exists(seq)",
                }
            }
            try:
                self._ddb.transact_write_items(TransactItems=[*transact, put])
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
        kwargs = {
            "TableName": self._table,
            "KeyConditionExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "model"},
            "ExpressionAttributeValues": {":m": {"S": model}},
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        for page in self._ddb.get_paginator("query").paginate(**kwargs):
            out.extend(page.get("Items", []))
        return out

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
        """Every model with an audit chain (a full scan: verification reads everything anyway)."""
        names: set[str] = set()
        for page in self._ddb.get_paginator("scan").paginate(
            TableName=self._table,
            ProjectionExpression="#m",
            ExpressionAttributeNames={"#m": "model"},
        ):
            names.update(i["model"]["S"] for i in page.get("Items", []))
        return sorted(names)

    # -- verifying -------------------------------------------------------------------------
    def verify(self, model: str) -> VerifyReport:
        """Recompute every hash, check seq continuity and links, and compare with the anchors."""
        items = self.items(model)
        report = VerifyReport(model, len(items), 0, GENESIS, 0)
        expected_seq, prev = 1, GENESIS
        chain: dict[int, str] = {}
        for item in sorted(items, key=lambda i: int(i.get("seq", {}).get("N", "0"))):
            seq = int(item["seq"]["N"])
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


__all__ = [
    "EVENTS",
    "GENESIS",
    "Anchor",
    "AnchorFailed",
    "AnchorStore",
    "AuditEntry",
    "AuditLog",
    "AuditWriteFailed",
    "TransactionRefused",
    "VerifyReport",
    "verify_all",
]
