"""The registry table's item layout: each kind of item is pinned attribute by attribute, so
tables written before the registry code moved read and compare exactly as before."""

from __future__ import annotations

from typing import Any

import pytest

from ferry_core.registry import writer
from ferry_core.registry.table import (
    ApprovalItem,
    Canary,
    HistoryItem,
    IndexItem,
    LockItem,
    StageItem,
    VersionItem,
)
from ferry_core.registry.writer import RegistryWriter

AT = "2026-01-02T03:04:05.678Z"


@pytest.fixture
def writer_at(monkeypatch: pytest.MonkeyPatch) -> RegistryWriter:
    monkeypatch.setattr(writer, "now_iso", lambda: AT)
    return RegistryWriter(None, "reg")


def _s(v: str) -> dict[str, str]:
    return {"S": v}


def _n(v: str) -> dict[str, str]:
    return {"N": v}


ITEMS: list[tuple[Any, dict[str, Any]]] = [
    (
        VersionItem(model="m", version=7, status="registered", registered_at=AT, card="{}"),
        {
            "model": _s("m"),
            "sk": _s("V#000007"),
            "version": _n("7"),
            "status": _s("registered"),
            "registered_at": _s(AT),
            "card": _s("{}"),
        },
    ),
    (IndexItem(name="m"), {"model": _s("__index__"), "sk": _s("m")}),
    (
        StageItem(model="m", stage="production", version=3, revision=1, since=AT, by="alice"),
        {
            "model": _s("m"),
            "sk": _s("STAGE#production"),
            "version": _n("3"),
            "revision": _n("1"),
            "since": _s(AT),
            "by": _s("alice"),
        },
    ),
    (
        HistoryItem(
            model="m",
            stage="staging",
            revision=3,
            version=4,
            since=AT,
            by="bob",
            reason="",
            event="rollback",
            restores=1,
        ),
        {
            "model": _s("m"),
            "sk": _s("HIST#staging#000003"),
            "version": _n("4"),
            "revision": _n("3"),
            "since": _s(AT),
            "by": _s("bob"),
            "reason": _s(""),
            "event": _s("rollback"),
            "restores": _n("1"),
        },
    ),
    (
        Canary(model="m", version=4, percent=12.5, since=AT, by="eve", run_id="run-1"),
        {
            "model": _s("m"),
            "sk": _s("CANARY"),
            "version": _n("4"),
            "percent": _n("12.5"),
            "since": _s(AT),
            "by": _s("eve"),
            "run_id": _s("run-1"),
        },
    ),
    (
        LockItem(model="m", run_id="run-1", acquired_at=AT, expires_at=1060),
        {
            "model": _s("m"),
            "sk": _s("LOCK#retrain"),
            "run_id": _s("run-1"),
            "acquired_at": _s(AT),
            "expires_at": _n("1060"),
        },
    ),
    (
        ApprovalItem(model="m", version=3, task_token="tok", run_id="run-1", requested_at=AT),
        {
            "model": _s("m"),
            "sk": _s("APPROVAL#000003"),
            "task_token": _s("tok"),
            "run_id": _s("run-1"),
            "requested_at": _s(AT),
        },
    ),
]


@pytest.mark.parametrize(("record", "item"), ITEMS, ids=lambda x: type(x).__name__)
def test_each_item_kind_keeps_its_layout(record: Any, item: dict[str, Any]) -> None:
    assert record.to_item() == item
    assert type(record).from_item(item) == record


def test_an_unstaged_pointer_and_an_older_history_item_read() -> None:
    """Given a pointer whose version was removed and a history item without optional
    attributes, both read with their defaults."""
    unstaged = {"model": _s("m"), "sk": _s("STAGE#staging"), "revision": _n("2"), "since": _s(AT)}
    assert StageItem.from_item(unstaged).version is None
    bare = {
        "model": _s("m"),
        "sk": _s("HIST#production#000001"),
        "version": _n("1"),
        "revision": _n("1"),
        "since": _s(AT),
    }
    h = HistoryItem.from_item(bare)
    assert (h.stage, h.revision, h.by, h.reason, h.event, h.restores) == (
        "production",
        1,
        "",
        "",
        "promote",
        None,
    )


def test_version_facts_are_reported_as_before() -> None:
    approved = VersionItem(
        model="m",
        version=7,
        status="approved",
        registered_at=AT,
        card="{}",
        status_by="carol",
        status_at=AT,
        approved_by="carol",
    )
    assert approved.facts() == {
        "sk": "V#000007",
        "version": "7",
        "status": "approved",
        "registered_at": AT,
        "status_by": "carol",
        "status_at": AT,
        "approved_by": "carol",
    }


def test_writer_transactions_carry_the_same_items(writer_at: RegistryWriter) -> None:
    items, pointer = writer_at.stage_items("m", "staging", 4, 2, "bob", "", "rollback", 1)
    assert items[0]["Put"]["Item"] == ITEMS[2][1] | {
        "sk": _s("STAGE#staging"),
        "version": _n("4"),
        "revision": _n("3"),
        "by": _s("bob"),
    }
    assert items[0]["Put"]["ExpressionAttributeValues"] == {":rev": _n("2")}
    assert items[2]["Put"]["Item"] == ITEMS[3][1]
    assert (pointer.version, pointer.revision, pointer.since) == (4, 3, AT)
    canary = writer_at.canary_put_item("m", 4, 12.5, "eve", "run-1")
    assert canary["Put"]["Item"] == ITEMS[4][1]
    update = writer_at.status_item("m", 7, "approved", "carol", approved_by="carol")["Update"]
    assert update["Key"] == {"model": _s("m"), "sk": _s("V#000007")}
    assert update["ExpressionAttributeValues"][":ab"] == _s("carol")
