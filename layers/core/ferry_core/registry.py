"""The model registry on DynamoDB: immutable version cards and stage pointers.

Table layout (partition key `model`, sort key `sk`):
- `META`                   — `latest_version`, the version counter (numbers are never reused)
- `V#000007`               — version 7: its card as JSON (exact floats, no Decimal round trip)
- `STAGE#production`       — the stage pointer: `version`, `revision` (optimistic lock), `since`;
                             a rejected staging version is unstaged: the item keeps its
                             revision and loses its `version` (nothing is staged)
- `CANARY`                 — a canary in progress (issue 6): `version`, `percent` of default
                             traffic the scoring function sends it instead of production
- `HIST#production#000003` — revision 3 of that pointer: which version, from when, by whom,
                             why, and for a rollback which revision it restored
- the version item also carries its mutable registry `status` (registered, rejected,
  archived) and approval (`approved_by`, `approved_at`); the card JSON itself never changes
- partition `__index__`, sort key = model name — one item per model, so listing needs no Scan

Reads are cached: version cards forever (immutable), stage pointers for a few seconds so a
promotion is seen within seconds without a DynamoDB read per request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry_core.card import Card
from ferry_core.errors import ModelNotFound, ModelUnavailable, RegistryConflict, VersionNotFound

INDEX_PARTITION = "__index__"
CANARY_KEY = "CANARY"
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
STAGES = ("production", "staging")


def version_key(version: int) -> str:
    return f"V#{version:06d}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StagePointer:
    """Which version a stage points at, and the revision that guards its next move."""

    model: str
    stage: str
    version: int
    revision: int
    since: str


@dataclass(frozen=True)
class Canary:
    """A canary in progress: `percent` of default (production) traffic goes to `version`."""

    model: str
    version: int
    percent: float
    since: str
    run_id: str


def _canary(model: str, item: dict[str, Any]) -> Canary:
    return Canary(
        model=model,
        version=int(item["version"]["N"]),
        percent=float(item["percent"]["N"]),
        since=item["since"]["S"],
        run_id=item.get("run_id", {}).get("S", ""),
    )


@dataclass(frozen=True)
class StageRevision:
    """One revision of a stage pointer: which version was live from `since` to `until`."""

    model: str
    stage: str
    revision: int
    version: int
    since: str
    until: str | None
    by: str
    reason: str
    event: str
    restores: int | None


class RegistryReader:
    """Resolves (model, version or stage) to a card, with a short cache for stage pointers."""

    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        pointer_ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ddb = dynamodb_client
        self._table = table
        self._ttl = pointer_ttl_seconds
        self._clock = clock
        self._cards: dict[tuple[str, int], Card] = {}
        self._pointers: dict[tuple[str, str], tuple[float, StagePointer | None]] = {}
        self._canaries: dict[tuple[str, str], tuple[float, Canary | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, model: str, version: int | None = None, stage: str | None = None) -> Card:
        """The card of a pinned version, or of the version a stage points at."""
        if not MODEL_NAME.match(model):
            raise ModelNotFound(f"no model named {model[:70]!r}")
        if version is None:
            pointer = self.pointer(model, stage or "production")
            if pointer is None:
                if not self.model_exists(model):
                    raise ModelNotFound(f"no model named {model!r}")
                raise ModelNotFound(f"model {model!r} has no {stage or 'production'} version")
            version = pointer.version
        return self.card(model, version)

    def card(self, model: str, version: int) -> Card:
        key = (model, version)
        cached = self._cards.get(key)
        if cached is not None:
            return cached
        item = self._get(model, version_key(version))
        if item is None:
            if not self.model_exists(model):
                raise ModelNotFound(f"no model named {model!r}")
            raise VersionNotFound(f"model {model!r} has no version {version}")
        card = Card.model_validate_json(item["card"]["S"])
        with self._lock:
            self._cards[key] = card
        return card

    def pointer(self, model: str, stage: str) -> StagePointer | None:
        key = (model, stage)
        hit = self._pointers.get(key)
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        item = self._get(model, f"STAGE#{stage}")
        pointer = _pointer(model, stage, item) if item else None
        with self._lock:
            self._pointers[key] = (now, pointer)
        return pointer

    def canary(self, model: str) -> Canary | None:
        """The canary in progress for `model`, cached like a stage pointer."""
        key = (model, "__canary__")
        hit = self._canaries.get(key)
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        item = self._get(model, CANARY_KEY)
        canary = _canary(model, item) if item else None
        with self._lock:
            self._canaries[key] = (now, canary)
        return canary

    def fresh_canary(self, model: str) -> Canary | None:
        item = self._get(model, CANARY_KEY)
        return _canary(model, item) if item else None

    def fresh_stage(self, model: str, stage: str) -> tuple[StagePointer | None, int | None]:
        """The pointer and its item's revision from ONE read (an unstaged item has a revision
        and no pointer): a stage move must be conditioned on exactly what it saw."""
        item = self._get(model, f"STAGE#{stage}")
        if item is None:
            return None, None
        return _pointer(model, stage, item), int(item["revision"]["N"])

    def model_exists(self, model: str) -> bool:
        return self._get(INDEX_PARTITION, model) is not None

    def models(self) -> list[dict[str, Any]]:
        """Every model with its stage pointers and latest version (uncached: a listing)."""
        out = []
        for item in self._query(INDEX_PARTITION):
            name = item["sk"]["S"]
            stages: dict[str, int | None] = dict.fromkeys(STAGES)
            latest = 0
            for it in self._query(name, "STAGE#"):
                if "version" in it:
                    stages[it["sk"]["S"].split("#", 1)[1]] = int(it["version"]["N"])
            meta = self._get(name, "META")
            if meta:
                latest = int(meta["latest_version"]["N"])
            out.append({"name": name, "stages": stages, "latest_version": latest})
        return out

    def versions(self, model: str) -> list[Card]:
        return [Card.model_validate_json(i["card"]["S"]) for i in self._query(model, "V#")]

    def version_record(self, model: str, version: int) -> dict[str, Any]:
        """A version's mutable registry facts (uncached): status, approval, who and when."""
        item = self._get(model, version_key(version))
        if item is None:
            if not self.model_exists(model):
                raise ModelNotFound(f"no model named {model!r}")
            raise VersionNotFound(f"model {model!r} has no version {version}")
        return {k: next(iter(v.values())) for k, v in item.items() if k not in ("card", "model")}

    def version_records(self, model: str) -> list[dict[str, Any]]:
        return [
            {k: next(iter(v.values())) for k, v in i.items() if k not in ("card", "model")}
            for i in self._query(model, "V#")
        ]

    def fresh_pointer(self, model: str, stage: str) -> StagePointer | None:
        """The pointer as DynamoDB holds it now (no cache): what a stage move must start from."""
        item = self._get(model, f"STAGE#{stage}")
        return _pointer(model, stage, item) if item else None

    def history(self, model: str, stage: str) -> list[StageRevision]:
        """Every revision of a stage pointer, oldest first, with when each stopped being live."""
        items = self._query(model, f"HIST#{stage}#")
        out: list[StageRevision] = []
        for i, item in enumerate(items):
            until = items[i + 1]["since"]["S"] if i + 1 < len(items) else None
            out.append(
                StageRevision(
                    model=model,
                    stage=stage,
                    revision=int(item["sk"]["S"].rsplit("#", 1)[1]),
                    version=int(item["version"]["N"]),
                    since=item["since"]["S"],
                    until=until,
                    by=item.get("by", {}).get("S", ""),
                    reason=item.get("reason", {}).get("S", ""),
                    event=item.get("event", {}).get("S", "promote"),
                    restores=int(item["restores"]["N"]) if "restores" in item else None,
                )
            )
        return out

    def _get(self, model: str, sk: str) -> dict[str, Any] | None:
        try:
            resp = self._ddb.get_item(
                TableName=self._table,
                Key={"model": {"S": model}, "sk": {"S": sk}},
                ConsistentRead=True,
            )
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"the model registry cannot be read right now: {exc}") from exc
        return resp.get("Item")

    def _query(self, model: str, prefix: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "model"},
            "ExpressionAttributeValues": {":m": {"S": model}},
        }
        if prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :p)"
            kwargs["ExpressionAttributeValues"][":p"] = {"S": prefix}
        items: list[dict[str, Any]] = []
        try:
            for page in self._ddb.get_paginator("query").paginate(**kwargs):
                items.extend(page.get("Items", []))
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"the model registry cannot be read right now: {exc}") from exc
        return items


def _pointer(model: str, stage: str, item: dict[str, Any]) -> StagePointer | None:
    if "version" not in item:  # unstaged: the item only keeps the revision counter
        return None
    return StagePointer(
        model=model,
        stage=stage,
        version=int(item["version"]["N"]),
        revision=int(item["revision"]["N"]),
        since=item["since"]["S"],
    )


class RegistryWriter:
    """Allocates version numbers, records immutable cards and moves stage pointers.

    Every write is conditional: a version item is only ever created, never overwritten; a
    stage pointer moves only from the revision the caller read, so two concurrent promoters
    cannot both win, and only to a version that exists.
    """

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    def allocate_version(self, model: str) -> int:
        resp = self._ddb.update_item(
            TableName=self._table,
            Key={"model": {"S": model}, "sk": {"S": "META"}},
            UpdateExpression=(
                "ADD latest_version :one SET created_at = if_not_exists(created_at, :now)"
            ),
            ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": now_iso()}},
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["latest_version"]["N"])

    def version_items(self, card: Card) -> list[dict[str, Any]]:
        """The transaction items that record a new version (never overwriting one)."""
        return [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "model": {"S": card.name},
                        "sk": {"S": version_key(card.version)},
                        "version": {"N": str(card.version)},
                        "status": {"S": card.status},
                        "registered_at": {"S": card.lineage.registered_at or now_iso()},
                        "card": {"S": card.model_dump_json()},
                    },
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"model": {"S": INDEX_PARTITION}, "sk": {"S": card.name}},
                }
            },
        ]

    def put_version(self, card: Card) -> None:
        """Record a new version's card; refuses to overwrite an existing version."""
        try:
            self._ddb.transact_write_items(TransactItems=self.version_items(card))
        except self._ddb.exceptions.TransactionCanceledException as exc:
            raise RegistryConflict(f"{card.name} v{card.version} is already registered") from exc

    def stage_items(
        self,
        model: str,
        stage: str,
        version: int,
        expected_revision: int | None,
        actor: str,
        reason: str = "",
        event: str = "promote",
        restores: int | None = None,
    ) -> tuple[list[dict[str, Any]], StagePointer]:
        """The transaction items of a stage move, and the pointer they would leave.

        Pointer Put guarded by the revision the caller read; a ConditionCheck that the version
        exists and is neither archived nor rejected; a HIST item for the new revision. Callers
        add their audit entry to the same transaction (`ferry_core.governance`).
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        revision = (expected_revision or 0) + 1
        since = now_iso()
        if expected_revision is None:
            condition = "attribute_not_exists(sk)"
            values: dict[str, Any] = {}
        else:
            condition = "revision = :rev"
            values = {":rev": {"N": str(expected_revision)}}
        pointer_item = {
            "model": {"S": model},
            "sk": {"S": f"STAGE#{stage}"},
            "version": {"N": str(version)},
            "revision": {"N": str(revision)},
            "since": {"S": since},
            "by": {"S": actor},
        }
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": pointer_item,
            "ConditionExpression": condition,
        }
        if values:
            put["ExpressionAttributeValues"] = values
        history = {
            "model": {"S": model},
            "sk": {"S": f"HIST#{stage}#{revision:06d}"},
            "version": {"N": str(version)},
            "revision": {"N": str(revision)},
            "since": {"S": since},
            "by": {"S": actor},
            "reason": {"S": reason},
            "event": {"S": event},
        }
        if restores is not None:
            history["restores"] = {"N": str(restores)}
        items = [
            {"Put": put},
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": {"model": {"S": model}, "sk": {"S": version_key(version)}},
                    "ConditionExpression": "attribute_exists(sk) AND NOT (#st IN (:ar, :rj))",
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ExpressionAttributeValues": {
                        ":ar": {"S": "archived"},
                        ":rj": {"S": "rejected"},
                    },
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": history,
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
        ]
        return items, StagePointer(model, stage, version, revision, since)

    def set_stage(
        self,
        model: str,
        stage: str,
        version: int,
        expected_revision: int | None,
        actor: str,
        reason: str = "",
    ) -> StagePointer:
        """Move a stage pointer with optimistic locking, without an audit entry.

        For bootstrapping and tests; governed moves go through `ferry_core.governance`, which
        writes the same items and the audit entry in one transaction.
        """
        items, pointer = self.stage_items(model, stage, version, expected_revision, actor, reason)
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except self._ddb.exceptions.TransactionCanceledException as exc:
            raise RegistryConflict(
                f"could not move {model} {stage} to v{version}: the pointer changed since it was "
                "read, or the version does not exist"
            ) from exc
        return pointer

    def status_item(
        self, model: str, version: int, status: str, actor: str, extra: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """An Update of a version's registry status (the card itself stays immutable).

        Only from a live status: an archived or rejected version stays so.
        """
        names = {"#st": "status"}
        values: dict[str, Any] = {
            ":st": {"S": status},
            ":by": {"S": actor},
            ":at": {"S": now_iso()},
            ":ar": {"S": "archived"},
            ":rj": {"S": "rejected"},
        }
        sets = ["#st = :st", "status_by = :by", "status_at = :at"]
        for i, (k, v) in enumerate(sorted((extra or {}).items())):
            names[f"#x{i}"] = k
            values[f":x{i}"] = {"S": v}
            sets.append(f"#x{i} = :x{i}")
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"model": {"S": model}, "sk": {"S": version_key(version)}},
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": "attribute_exists(sk) AND NOT (#st IN (:ar, :rj))",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def unstage_items(
        self, model: str, stage: str, version: int, revision: int, actor: str, reason: str
    ) -> list[dict[str, Any]]:
        """Take `version` off `stage` (the pointer item keeps its revision counter)."""
        new, since = revision + 1, now_iso()
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"model": {"S": model}, "sk": {"S": f"STAGE#{stage}"}},
                    "UpdateExpression": (
                        "REMOVE version SET revision = :new, since = :at, #by = :by"
                    ),
                    "ConditionExpression": "revision = :rev AND version = :v",
                    "ExpressionAttributeNames": {"#by": "by"},
                    "ExpressionAttributeValues": {
                        ":new": {"N": str(new)},
                        ":rev": {"N": str(revision)},
                        ":v": {"N": str(version)},
                        ":at": {"S": since},
                        ":by": {"S": actor},
                    },
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "model": {"S": model},
                        "sk": {"S": f"HIST#{stage}#{new:06d}"},
                        "version": {"N": str(version)},
                        "revision": {"N": str(new)},
                        "since": {"S": since},
                        "by": {"S": actor},
                        "reason": {"S": reason},
                        "event": {"S": "unstage"},
                    },
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
        ]

    def canary_put_item(
        self, model: str, version: int, percent: float, actor: str, run_id: str
    ) -> dict[str, Any]:
        """Start a canary: only when none is in progress."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "model": {"S": model},
                    "sk": {"S": CANARY_KEY},
                    "version": {"N": str(version)},
                    "percent": {"N": repr(float(percent))},
                    "since": {"S": now_iso()},
                    "by": {"S": actor},
                    "run_id": {"S": run_id},
                },
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }

    def canary_delete_item(self, model: str, version: int) -> dict[str, Any]:
        """End the canary of `version` (and only that one)."""
        return {
            "Delete": {
                "TableName": self._table,
                "Key": {"model": {"S": model}, "sk": {"S": CANARY_KEY}},
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        }

    def not_live_item(self, model: str, stage: str, version: int) -> dict[str, Any]:
        """A ConditionCheck that `stage` does not point at `version` (archive/reject guard)."""
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": {"model": {"S": model}, "sk": {"S": f"STAGE#{stage}"}},
                "ConditionExpression": "attribute_not_exists(sk) OR version <> :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        }


def card_json(card: Card) -> bytes:
    """The canonical card.json bytes written beside the artifact."""
    return json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True).encode()
