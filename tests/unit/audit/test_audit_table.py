"""The audit table's entry encoding: the stored item and the hash of a fixed entry are pinned,
so existing chains still read and verify exactly as they were written."""

from __future__ import annotations

import dataclasses

import pytest

from ferry_core.audit.chain import GENESIS
from ferry_core.audit.table import AuditEntry, AuditTable, item_seq

AT = "2026-01-02T03:04:05.678Z"
ENTRY = AuditEntry(
    model="m",
    seq=2,
    event="promote",
    actor="alice",
    at=AT,
    version=3,
    before={"production": 2},
    after={"production": 3},
    reason="why — ünïcode",
    details={"stage": "production", "revision": 3, "x": [1.5, None, True]},
    prev_hash="a" * 64,
    hash="cc0f064e48e1919d8243e2591a7544f2333108acfd6fa077af68807dbd049210",
)
ITEM = {
    "model": {"S": "m"},
    "seq": {"N": "2"},
    "event": {"S": "promote"},
    "actor": {"S": "alice"},
    "at": {"S": AT},
    "version": {"N": "3"},
    "before": {"S": '{"production": 2}'},
    "after": {"S": '{"production": 3}'},
    "reason": {"S": "why — ünïcode"},
    "details": {"S": '{"revision": 3, "stage": "production", "x": [1.5, null, true]}'},
    "prev_hash": {"S": "a" * 64},
    "hash": {"S": "cc0f064e48e1919d8243e2591a7544f2333108acfd6fa077af68807dbd049210"},
}


def test_a_fixed_entry_hashes_and_stores_as_before() -> None:
    """Given an entry written before the audit code moved, its hash and item are unchanged."""
    assert ENTRY.computed_hash() == ENTRY.hash
    assert ENTRY.to_item() == ITEM
    assert AuditEntry.from_item(ITEM) == ENTRY


def test_a_first_entry_with_no_version_stores_null() -> None:
    first = dataclasses.replace(
        ENTRY, seq=1, version=None, before=None, details={}, prev_hash=GENESIS, hash=""
    )
    first = dataclasses.replace(first, hash=first.computed_hash())
    assert first.hash == "31a6fc4bf918ca81ee07350cbce09f37b34a7a70b8fa7e7c39edaad5a5d9eac4"
    item = first.to_item()
    assert (item["version"], item["before"], item["details"]) == (
        {"NULL": True},
        {"S": "null"},
        {"S": "{}"},
    )
    assert AuditEntry.from_item(item) == first


@pytest.mark.parametrize(
    ("attribute", "value", "problem"),
    [
        ("seq", {"S": "2"}, "malformed"),
        ("seq", {"N": "2.5"}, "malformed"),
        ("actor", {"N": "7"}, "malformed"),
        ("details", {"S": "{not json"}, "malformed"),
        ("extra", {"S": "x"}, "unexpected attributes"),
    ],
)
def test_an_item_of_other_types_is_malformed(attribute: str, value: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AuditEntry.from_item({**ITEM, attribute: value})


def test_missing_attribute_and_item_seq() -> None:
    without_actor = {k: v for k, v in ITEM.items() if k != "actor"}
    with pytest.raises(ValueError, match="missing"):
        AuditEntry.from_item(without_actor)
    assert (item_seq(ITEM), item_seq({})) == (2, 0)
    assert AuditTable(None, "audit").key("m", 2) == {"model": {"S": "m"}, "seq": {"N": "2"}}
