"""One retraining run per model at a time: a lock item in the registry table with an expiry
(the state machine's own timeout), so a run that died cannot block the next one forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ferry_core.clock import now_iso
from ferry_core.dynamo import encode_all
from ferry_core.errors import FerryError
from ferry_core.registry.table import LOCK_KEY, LockItem, key


class RetrainRunning(FerryError):
    """Another retraining run holds the model's lock."""

    code = "retrain_running"


class RetrainLock:
    """One retraining run per model: `LOCK#retrain` in the registry table, with an expiry."""

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], float] = time.time) -> None:
        self._ddb, self._table, self._clock = dynamodb, table, clock

    def acquire(self, model: str, run_id: str, seconds: int) -> None:
        now = int(self._clock())
        lock = LockItem(model=model, run_id=run_id, acquired_at=now_iso(), expires_at=now + seconds)
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=lock.to_item(),
                # Free, expired, or already ours (a retried task).
                ConditionExpression="attribute_not_exists(sk) OR expires_at < :now OR run_id = :r",
                ExpressionAttributeValues=encode_all({":now": now, ":r": run_id}),
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            holder = self.holder(model)
            raise RetrainRunning(
                f"{model} is already being retrained by run {holder or '?'}; one run at a time"
            ) from exc

    def holder(self, model: str) -> str | None:
        item = self._ddb.get_item(
            TableName=self._table, Key=key(model, LOCK_KEY), ConsistentRead=True
        ).get("Item")
        return LockItem.from_item(item).run_id if item else None

    def release(self, model: str, run_id: str) -> bool:
        """Release the lock if this run holds it (a no-op otherwise, never someone else's)."""
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key=key(model, LOCK_KEY),
                ConditionExpression="run_id = :r",
                ExpressionAttributeValues=encode_all({":r": run_id}),
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True
