"""Writing the registry: version numbers, immutable version cards, stage and canary moves.

Every write is conditional: a version item is only ever created, never overwritten; a stage
pointer moves only from the revision the caller read, so two concurrent promoters cannot both
win, and only to a version that exists. Most methods return transaction items, so governance
commits them together with their audit entry.
"""

from __future__ import annotations

import json
from typing import Any

from ferry_core.card import Card
from ferry_core.clock import now_iso
from ferry_core.dynamo import decode, encode_all
from ferry_core.errors import RegistryConflict
from ferry_core.registry.reader import StagePointer
from ferry_core.registry.table import (
    CANARY_KEY,
    META_KEY,
    STAGES,
    Canary,
    HistoryItem,
    IndexItem,
    StageItem,
    VersionItem,
    key,
    stage_key,
    version_key,
)

# A version that may still go live: neither archived nor rejected.
_LIVE_VERSION = "attribute_exists(sk) AND NOT (#st IN (:ar, :rj))"
_DEAD_STATUSES = {":ar": "archived", ":rj": "rejected"}


class RegistryWriter:
    """Allocates version numbers, records immutable cards and moves stage pointers."""

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self._table = table

    def allocate_version(self, model: str) -> int:
        resp = self._ddb.update_item(
            TableName=self._table,
            Key=key(model, META_KEY),
            UpdateExpression=(
                "ADD latest_version :one SET created_at = if_not_exists(created_at, :now)"
            ),
            ExpressionAttributeValues=encode_all({":one": 1, ":now": now_iso()}),
            ReturnValues="UPDATED_NEW",
        )
        return int(decode(resp["Attributes"]["latest_version"]))

    def version_items(self, card: Card) -> list[dict[str, Any]]:
        """The transaction items that record a new version (never overwriting one)."""
        version = VersionItem(
            model=card.name,
            version=card.version,
            status=card.status,
            registered_at=card.lineage.registered_at or now_iso(),
            card=card.model_dump_json(),
        )
        return [
            self._put(version.to_item(), "attribute_not_exists(sk)"),
            {"Put": {"TableName": self._table, "Item": IndexItem(name=card.name).to_item()}},
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
        add their audit entry to the same transaction (`ferry_core.registry.governance`).
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        revision = (expected_revision or 0) + 1
        since = now_iso()
        pointer = StageItem(
            model=model, stage=stage, version=version, revision=revision, since=since, by=actor
        )
        if expected_revision is None:
            put = self._put(pointer.to_item(), "attribute_not_exists(sk)")
        else:
            put = self._put(pointer.to_item(), "revision = :rev", {":rev": expected_revision})
        history = HistoryItem(
            model=model,
            stage=stage,
            revision=revision,
            version=version,
            since=since,
            by=actor,
            reason=reason,
            event=event,
            restores=restores,
        )
        items = [
            put,
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": key(model, version_key(version)),
                    "ConditionExpression": _LIVE_VERSION,
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ExpressionAttributeValues": encode_all(_DEAD_STATUSES),
                }
            },
            self._put(history.to_item(), "attribute_not_exists(sk)"),
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

        For bootstrapping and tests; governed moves go through `ferry_core.registry.governance`,
        which writes the same items and the audit entry in one transaction.
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
        self, model: str, version: int, status: str, actor: str, approved_by: str | None = None
    ) -> dict[str, Any]:
        """An Update of a version's registry status (the card itself stays immutable).

        Only from a live status: an archived or rejected version stays so.
        """
        names = {"#st": "status"}
        values: dict[str, Any] = {":st": status, ":by": actor, ":at": now_iso(), **_DEAD_STATUSES}
        sets = ["#st = :st", "status_by = :by", "status_at = :at"]
        if approved_by is not None:
            names["#ab"] = "approved_by"
            values[":ab"] = approved_by
            sets.append("#ab = :ab")
        return {
            "Update": {
                "TableName": self._table,
                "Key": key(model, version_key(version)),
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": _LIVE_VERSION,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": encode_all(values),
            }
        }

    def validation_item(self, model: str, version: int, result: dict[str, Any]) -> dict[str, Any]:
        """An Update recording a version's latest gate result (the card stays immutable)."""
        values = {":v": json.dumps(result, sort_keys=True, default=str)}
        return {
            "Update": {
                "TableName": self._table,
                "Key": key(model, version_key(version)),
                "UpdateExpression": "SET validation = :v",
                "ConditionExpression": "attribute_exists(sk)",
                "ExpressionAttributeValues": encode_all(values),
            }
        }

    def unstage_items(
        self, model: str, stage: str, version: int, revision: int, actor: str, reason: str
    ) -> list[dict[str, Any]]:
        """Take `version` off `stage` (the pointer item keeps its revision counter)."""
        new, since = revision + 1, now_iso()
        history = HistoryItem(
            model=model,
            stage=stage,
            revision=new,
            version=version,
            since=since,
            by=actor,
            reason=reason,
            event="unstage",
        )
        values = {":new": new, ":rev": revision, ":v": version, ":at": since, ":by": actor}
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": key(model, stage_key(stage)),
                    "UpdateExpression": (
                        "REMOVE version SET revision = :new, since = :at, #by = :by"
                    ),
                    "ConditionExpression": "revision = :rev AND version = :v",
                    "ExpressionAttributeNames": {"#by": "by"},
                    "ExpressionAttributeValues": encode_all(values),
                }
            },
            self._put(history.to_item(), "attribute_not_exists(sk)"),
        ]

    def canary_put_item(
        self, model: str, version: int, percent: float, actor: str, run_id: str
    ) -> dict[str, Any]:
        """Start a canary: only when none is in progress."""
        canary = Canary(
            model=model,
            version=version,
            percent=float(percent),
            since=now_iso(),
            by=actor,
            run_id=run_id,
        )
        return self._put(canary.to_item(), "attribute_not_exists(sk)")

    def canary_delete_item(self, model: str, version: int) -> dict[str, Any]:
        """End the canary of `version` (and only that one)."""
        return {
            "Delete": {
                "TableName": self._table,
                "Key": key(model, CANARY_KEY),
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": encode_all({":v": version}),
            }
        }

    def not_live_item(self, model: str, stage: str, version: int) -> dict[str, Any]:
        """A ConditionCheck that `stage` does not point at `version` (archive/reject guard)."""
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": key(model, stage_key(stage)),
                "ConditionExpression": "attribute_not_exists(sk) OR version <> :v",
                "ExpressionAttributeValues": encode_all({":v": version}),
            }
        }

    def _put(
        self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        put["ConditionExpression"] = condition
        if values:
            put["ExpressionAttributeValues"] = encode_all(values)
        return {"Put": put}


def card_json(card: Card) -> bytes:
    """The canonical card.json bytes written beside the artifact."""
    return json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True).encode()
