"""The registry table's items: one typed record per kind, and the only code that turns them
into DynamoDB attributes and back.

Layout (partition key `model`, sort key `sk`):
- `META`                   — `latest_version`, the version counter (numbers are never reused)
- `V#000007`               — version 7: its card as JSON (exact floats, no Decimal round trip),
                             its mutable registry `status` (registered, approved, rejected,
                             archived) and who set it when, and the latest result of the
                             validation gate run on the registered version (JSON, with the
                             champion it was gated against); the card JSON itself never changes
- `STAGE#production`       — the stage pointer: `version`, `revision` (optimistic lock), `since`;
                             a rejected staging version is unstaged: the item keeps its
                             revision and loses its `version` (nothing is staged)
- `HIST#production#000003` — revision 3 of that pointer: which version, from when, by whom,
                             why, and for a rollback which revision it restored
- `CANARY`                 — a canary in progress: `version`, `percent` of default traffic the
                             scoring function sends it instead of production
- `LOCK#retrain`           — the retraining run that holds the model, until `expires_at`
- `APPROVAL#000007`        — the task token of a run waiting for version 7's approval
- partition `__index__`, sort key = model name — one item per model, so listing needs no Scan
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from ferry_core.dynamo import decode, decode_all, encode_all

INDEX_PARTITION = "__index__"
META_KEY = "META"
CANARY_KEY = "CANARY"
LOCK_KEY = "LOCK#retrain"
STAGE_PREFIX = "STAGE#"
VERSION_PREFIX = "V#"
APPROVAL_PREFIX = "APPROVAL#"
STAGES = ("production", "staging")

Item = dict[str, dict[str, Any]]


def version_key(version: int) -> str:
    return f"{VERSION_PREFIX}{version:06d}"


def stage_key(stage: str) -> str:
    return f"{STAGE_PREFIX}{stage}"


def history_prefix(stage: str) -> str:
    return f"HIST#{stage}#"


def history_key(stage: str, revision: int) -> str:
    return f"{history_prefix(stage)}{revision:06d}"


def approval_key(version: int) -> str:
    return f"{APPROVAL_PREFIX}{version:06d}"


def key(model: str, sk: str) -> Item:
    """The primary key of one item."""
    return encode_all({"model": model, "sk": sk})


def sort_key(item: Mapping[str, Any]) -> str:
    return decode(item["sk"])


class Record(BaseModel):
    """One registry item: `model` is the partition, `sk()` the sort key built from fields.

    Fields named in `key_only` live in the sort key alone; every other field that is not None
    is an attribute of the item.
    """

    model_config = ConfigDict(frozen=True)
    key_only: ClassVar[frozenset[str]] = frozenset()

    model: str

    def sk(self) -> str:
        raise NotImplementedError

    @classmethod
    def fields_of_sk(cls, sk: str) -> dict[str, Any]:
        """The fields a sort key carries (those it alone stores win over attributes)."""
        return {}

    def key(self) -> Item:
        return key(self.model, self.sk())

    def to_item(self) -> Item:
        attributes = self.model_dump(exclude={"model", *self.key_only}, exclude_none=True)
        return {**self.key(), **encode_all(attributes)}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self:
        values = decode_all(item)
        values.update(cls.fields_of_sk(values.pop("sk")))
        return cls.model_validate(values)


class MetaItem(Record):
    """The model's version counter (written by an atomic ADD, read when listing)."""

    latest_version: int = 0
    created_at: str | None = None

    def sk(self) -> str:
        return META_KEY


class IndexItem(BaseModel):
    """A model's entry in the `__index__` partition."""

    model_config = ConfigDict(frozen=True)

    name: str

    def to_item(self) -> Item:
        return key(INDEX_PARTITION, self.name)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self:
        return cls(name=sort_key(item))


class VersionItem(Record):
    """A registered version: its immutable card JSON and its mutable registry status."""

    version: int
    status: str
    registered_at: str
    card: str
    status_by: str | None = None
    status_at: str | None = None
    approved_by: str | None = None
    validation: str | None = None  # the latest gate result (JSON), `Governance.record_validation`

    def sk(self) -> str:
        return version_key(self.version)

    def facts(self) -> dict[str, Any]:
        """The registry facts beside the card, as `ferry show` reports them (the card aside;
        `version` as the item's number string; the gate result decoded)."""
        facts = self.model_dump(exclude={"model", "card"}, exclude_none=True)
        if self.validation:
            facts["validation"] = json.loads(self.validation)
        return {"sk": self.sk(), **facts, "version": str(self.version)}


class StageItem(Record):
    """A stage pointer; `version` is None while nothing is staged (the revision stays)."""

    key_only: ClassVar[frozenset[str]] = frozenset({"stage"})

    stage: str
    version: int | None = None
    revision: int
    since: str
    by: str = ""

    def sk(self) -> str:
        return stage_key(self.stage)

    @classmethod
    def fields_of_sk(cls, sk: str) -> dict[str, Any]:
        return {"stage": sk.removeprefix(STAGE_PREFIX)}


class HistoryItem(Record):
    """One revision of a stage pointer (`event` promote, rollback or unstage)."""

    key_only: ClassVar[frozenset[str]] = frozenset({"stage"})

    stage: str
    revision: int
    version: int
    since: str
    by: str = ""
    reason: str = ""
    event: str = "promote"
    restores: int | None = None

    def sk(self) -> str:
        return history_key(self.stage, self.revision)

    @classmethod
    def fields_of_sk(cls, sk: str) -> dict[str, Any]:
        _, stage, revision = sk.split("#", 2)
        return {"stage": stage, "revision": int(revision)}


class Canary(Record):
    """A canary in progress: `percent` of default (production) traffic goes to `version`."""

    version: int
    percent: float
    since: str
    by: str = ""
    run_id: str = ""

    def sk(self) -> str:
        return CANARY_KEY


class LockItem(Record):
    """The retraining run that holds a model, until `expires_at` (epoch seconds)."""

    run_id: str
    acquired_at: str
    expires_at: int

    def sk(self) -> str:
        return LOCK_KEY


class ApprovalItem(Record):
    """A run waiting for a version's approval: the execution's task token."""

    key_only: ClassVar[frozenset[str]] = frozenset({"version"})

    version: int
    task_token: str
    run_id: str
    requested_at: str

    def sk(self) -> str:
        return approval_key(self.version)

    @classmethod
    def fields_of_sk(cls, sk: str) -> dict[str, Any]:
        return {"version": int(sk.removeprefix(APPROVAL_PREFIX))}
