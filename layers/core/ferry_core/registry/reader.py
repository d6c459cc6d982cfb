"""Reading the registry: (model, version or stage) to a card, stage pointers, history, listing.

Reads are cached: version cards forever (immutable), stage pointers and canaries for
`pointer_ttl_seconds`, so a request needs no DynamoDB read. `refresh` re-reads every cached
pointer and canary in one batch: a background refresher (`ferry_core.registry.refresh`) calls
it every second, so a stage change reaches a warm scorer in about a second while the TTL only
bounds how stale an entry gets when those reads fail. Each entry keeps the time its read
started, and an entry is only replaced by a read that started later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry_core.card import Card
from ferry_core.dynamo import decode, encode_all
from ferry_core.errors import ModelNotFound, ModelUnavailable, VersionNotFound
from ferry_core.names import is_model_name
from ferry_core.registry.table import (
    CANARY_KEY,
    INDEX_PARTITION,
    META_KEY,
    STAGE_PREFIX,
    STAGES,
    VERSION_PREFIX,
    Canary,
    HistoryItem,
    IndexItem,
    MetaItem,
    StageItem,
    VersionItem,
    history_prefix,
    key,
    sort_key,
    stage_key,
    version_key,
)

BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
Entry = tuple[float, Any]  # (when its read started, the value)


@dataclass(frozen=True)
class StagePointer:
    """Which version a stage points at, and the revision that guards its next move."""

    model: str
    stage: str
    version: int
    revision: int
    since: str


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


def _pointer(item: StageItem) -> StagePointer | None:
    if item.version is None:  # unstaged: the item only keeps the revision counter
        return None
    return StagePointer(item.model, item.stage, item.version, item.revision, item.since)


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
        self._canaries: dict[str, tuple[float, Canary | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, model: str, version: int | None = None, stage: str | None = None) -> Card:
        """The card of a pinned version, or of the version a stage points at."""
        if not is_model_name(model):
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
        key_ = (model, version)
        cached = self._cards.get(key_)
        if cached is not None:
            return cached
        card = Card.model_validate_json(self.version_item(model, version).card)
        with self._lock:
            self._cards[key_] = card
        return card

    def pointer(self, model: str, stage: str) -> StagePointer | None:
        """The stage pointer, cached for `pointer_ttl_seconds`."""
        hit = self._pointers.get((model, stage))
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        pointer = self.fresh_pointer(model, stage)
        self._keep(self._pointers, (model, stage), now, pointer)
        return pointer

    def canary(self, model: str) -> Canary | None:
        """The canary in progress for `model`, cached like a stage pointer."""
        hit = self._canaries.get(model)
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        canary = self.fresh_canary(model)
        self._keep(self._canaries, model, now, canary)
        return canary

    def _keep(self, cache: dict[Any, Entry], key_: Any, started: float, value: Any) -> None:
        """Cache `value` unless a read that started later already did (reads may overlap)."""
        with self._lock:
            hit = cache.get(key_)
            if hit is None or hit[0] <= started:
                cache[key_] = (started, value)

    def refresh(self) -> int:
        """Re-read every cached stage pointer and canary of the models this reader served a
        card of (one BatchGetItem per 100 keys); returns how many keys were read.

        Only models with a cached card: a name that never resolved (a typo, a probe) is not
        re-read every second. Keys DynamoDB leaves unprocessed keep their entry (it ages).
        Raises `ModelUnavailable` when the registry cannot be read.
        """
        with self._lock:
            served = {model for model, _ in self._cards}
            wanted: dict[tuple[str, str], tuple[dict[Any, Entry], Any]] = {
                (m, stage_key(stage)): (self._pointers, (m, stage))
                for m, stage in self._pointers
                if m in served
            }
            wanted |= {(m, CANARY_KEY): (self._canaries, m) for m in self._canaries if m in served}
        keys = list(wanted)
        read = 0
        for start in range(0, len(keys), BATCH_GET_KEYS):
            chunk = keys[start : start + BATCH_GET_KEYS]
            started = self._clock()
            found, unprocessed = self._batch_get(chunk)
            for model_sk in chunk:
                if model_sk in unprocessed:
                    continue
                item = found.get(model_sk)
                cache, key_ = wanted[model_sk]
                if cache is self._canaries:
                    value: Any = Canary.from_item(item) if item else None
                else:
                    value = _pointer(StageItem.from_item(item)) if item else None
                self._keep(cache, key_, started, value)
                read += 1
        return read

    def _batch_get(
        self, keys: list[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], set[tuple[str, str]]]:
        """(items found by (model, sk), keys left unprocessed) of one consistent BatchGetItem."""
        request = {"Keys": [key(m, sk) for m, sk in keys], "ConsistentRead": True}
        try:
            resp = self._ddb.batch_get_item(RequestItems={self._table: request})
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"the model registry cannot be read right now: {exc}") from exc
        found = {
            (decode(i["model"]), sort_key(i)): i
            for i in resp.get("Responses", {}).get(self._table, [])
        }
        left = resp.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
        return found, {(decode(k["model"]), sort_key(k)) for k in left}

    def fresh_canary(self, model: str) -> Canary | None:
        item = self._get(model, CANARY_KEY)
        return Canary.from_item(item) if item else None

    def fresh_stage(self, model: str, stage: str) -> tuple[StagePointer | None, int | None]:
        """The pointer and its item's revision from ONE read (an unstaged item has a revision
        and no pointer): a stage move must be conditioned on exactly what it saw."""
        item = self._get(model, stage_key(stage))
        if item is None:
            return None, None
        record = StageItem.from_item(item)
        return _pointer(record), record.revision

    def fresh_pointer(self, model: str, stage: str) -> StagePointer | None:
        """The pointer as DynamoDB holds it now (no cache): what a stage move must start from."""
        return self.fresh_stage(model, stage)[0]

    def model_exists(self, model: str) -> bool:
        return self._get(INDEX_PARTITION, model) is not None

    def models(self) -> list[dict[str, Any]]:
        """Every model with its stage pointers and latest version (uncached: a listing)."""
        out = []
        for item in self._query(INDEX_PARTITION):
            name = IndexItem.from_item(item).name
            stages: dict[str, int | None] = dict.fromkeys(STAGES)
            for record in map(StageItem.from_item, self._query(name, STAGE_PREFIX)):
                if record.version is not None:
                    stages[record.stage] = record.version
            meta = self._get(name, META_KEY)
            latest = MetaItem.from_item(meta).latest_version if meta else 0
            out.append({"name": name, "stages": stages, "latest_version": latest})
        return out

    def versions(self, model: str) -> list[Card]:
        return [Card.model_validate_json(v.card) for v in self.version_items(model)]

    def version_item(self, model: str, version: int) -> VersionItem:
        """A version's item (uncached: its status changes)."""
        item = self._get(model, version_key(version))
        if item is None:
            if not self.model_exists(model):
                raise ModelNotFound(f"no model named {model!r}")
            raise VersionNotFound(f"model {model!r} has no version {version}")
        return VersionItem.from_item(item)

    def version_items(self, model: str) -> list[VersionItem]:
        return [VersionItem.from_item(i) for i in self._query(model, VERSION_PREFIX)]

    def version_record(self, model: str, version: int) -> dict[str, Any]:
        """A version's mutable registry facts (uncached): status, approval, who and when."""
        return self.version_item(model, version).facts()

    def version_records(self, model: str) -> list[dict[str, Any]]:
        return [v.facts() for v in self.version_items(model)]

    def history(self, model: str, stage: str) -> list[StageRevision]:
        """Every revision of a stage pointer, oldest first, with when each stopped being live."""
        items = [HistoryItem.from_item(i) for i in self._query(model, history_prefix(stage))]
        return [
            StageRevision(
                model=model,
                stage=stage,
                revision=h.revision,
                version=h.version,
                since=h.since,
                until=items[i + 1].since if i + 1 < len(items) else None,
                by=h.by,
                reason=h.reason,
                event=h.event,
                restores=h.restores,
            )
            for i, h in enumerate(items)
        ]

    def stage_item_counts(self, model: str) -> dict[str, int]:
        """How many pointer items each stage has (one, by key design): a consistency probe."""
        counts: dict[str, int] = {}
        for record in map(StageItem.from_item, self._query(model, STAGE_PREFIX, consistent=True)):
            counts[record.stage] = counts.get(record.stage, 0) + 1
        return counts

    def _get(self, model: str, sk: str) -> dict[str, Any] | None:
        try:
            resp = self._ddb.get_item(
                TableName=self._table, Key=key(model, sk), ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"the model registry cannot be read right now: {exc}") from exc
        return resp.get("Item")

    def _query(
        self, model: str, prefix: str | None = None, consistent: bool = False
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "model"},
            "ExpressionAttributeValues": encode_all({":m": model}),
        }
        if prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :p)"
            kwargs["ExpressionAttributeValues"].update(encode_all({":p": prefix}))
        if consistent:
            kwargs["ConsistentRead"] = True
        items: list[dict[str, Any]] = []
        try:
            for page in self._ddb.get_paginator("query").paginate(**kwargs):
                items.extend(page.get("Items", []))
        except (BotoCoreError, ClientError) as exc:
            raise ModelUnavailable(f"the model registry cannot be read right now: {exc}") from exc
        return items
