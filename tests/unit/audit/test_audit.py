"""The audit chain: appends link by hash, tampering of every kind is named by `verify`."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import pytest

from ferry_core.audit.anchors import AnchorStore
from ferry_core.audit.chain import GENESIS, AuditLog
from ferry_core.audit.table import AuditEntry, canonical
from ferry_core.errors import AnchorFailed
from ferry_local import moto_hooks

MODEL = "credit-risk"


@pytest.fixture
def log(aws, boto) -> AuditLog:
    return AuditLog(boto["dynamodb"], aws.audit_table, AnchorStore(boto["s3"], aws.anchor_bucket))


def _fill(log: AuditLog, n: int = 5) -> list[AuditEntry]:
    return [
        log.append(
            MODEL,
            "promote",
            f"user{i}",
            version=i,
            before={"production": i - 1},
            after={"production": i},
            reason=f"r{i}",
            details={"score": 0.1 * i},
        )
        for i in range(1, n + 1)
    ]


def _item(boto, aws, seq: int) -> dict[str, Any]:
    return boto["dynamodb"].get_item(
        TableName=aws.audit_table, Key={"model": {"S": MODEL}, "seq": {"N": str(seq)}}
    )["Item"]


def _put(boto, aws, item: dict[str, Any]) -> None:
    boto["dynamodb"].put_item(TableName=aws.audit_table, Item=item)


def _rehash(item: dict[str, Any], prev: str) -> dict[str, Any]:
    """What an attacker with table write access does: recompute the entry's hash."""
    entry = AuditEntry.from_item(item)
    fixed = AuditEntry(**{**entry.as_dict(), "prev_hash": prev, "hash": ""})
    return AuditEntry(**{**fixed.as_dict(), "hash": fixed.computed_hash()}).to_item()


def test_entries_link_by_hash_of_their_canonical_json(log: AuditLog) -> None:
    """Given five appends, each entry's hash is sha256 of its canonical JSON without `hash`,
    and each prev_hash is the previous entry's hash (GENESIS first)."""
    entries = _fill(log)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    for prev, e in zip([None, *entries], entries, strict=False):
        body = {k: v for k, v in e.as_dict().items() if k != "hash"}
        assert e.hash == hashlib.sha256(canonical(body)).hexdigest()
        if prev:
            assert e.prev_hash == prev.hash
    assert log.entries(MODEL) == entries
    report = log.verify(MODEL)
    assert report.ok, report.problems
    assert (report.entries, report.anchors, report.head_seq) == (5, 5, 5)


def test_anchors_are_locked_in_compliance_mode(log: AuditLog, boto, aws) -> None:
    """Given an append, its anchor object holds the head hash under COMPLIANCE retention and
    cannot be deleted."""
    (entry,) = _fill(log, 1)
    key = AnchorStore.key(MODEL, 1)
    head = boto["s3"].head_object(Bucket=aws.anchor_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    body = json.loads(boto["s3"].get_object(Bucket=aws.anchor_bucket, Key=key)["Body"].read())
    assert (body["seq"], body["hash"]) == (1, entry.hash)
    with pytest.raises(Exception, match="AccessDenied"):
        boto["s3"].delete_object(Bucket=aws.anchor_bucket, Key=key, VersionId=head["VersionId"])


def test_deleted_entry_is_named(log: AuditLog, boto, aws) -> None:
    _fill(log)
    boto["dynamodb"].delete_item(
        TableName=aws.audit_table, Key={"model": {"S": MODEL}, "seq": {"N": "3"}}
    )
    report = log.verify(MODEL)
    assert not report.ok
    assert report.problems[0]["seq"] == 3 and report.problems[0]["problem"] == "missing"
    assert "entry 3 of credit-risk is missing" in report.first_problem


def test_deleted_last_entry_is_caught_by_its_anchor(log: AuditLog, boto, aws) -> None:
    _fill(log)
    boto["dynamodb"].delete_item(
        TableName=aws.audit_table, Key={"model": {"S": MODEL}, "seq": {"N": "5"}}
    )
    report = log.verify(MODEL)
    assert (report.ok, report.problems[0]["seq"], report.problems[0]["problem"]) == (
        False,
        5,
        "missing",
    )


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("actor", {"S": "mallory"}),
        ("reason", {"S": "nothing to see"}),
        ("after", {"S": json.dumps({"production": 9})}),
        ("version", {"N": "9"}),
    ],
)
def test_edited_entry_is_named(log: AuditLog, boto, aws, attribute, value) -> None:
    _fill(log)
    item = _item(boto, aws, 2)
    _put(boto, aws, {**item, attribute: value})
    report = log.verify(MODEL)
    assert not report.ok
    assert (report.problems[0]["seq"], report.problems[0]["problem"]) == (2, "altered")


def test_reordered_entries_are_named(log: AuditLog, boto, aws) -> None:
    """Given entries 2 and 3 swapped (content moved, each re-hashed for its new seq, as an
    attacker would), the broken link is named at the first moved entry."""
    _fill(log)
    two, three = _item(boto, aws, 2), _item(boto, aws, 3)
    for seq, item in ((2, three), (3, two)):
        moved = {**item, "seq": {"N": str(seq)}}
        entry = AuditEntry.from_item(moved)
        _put(boto, aws, AuditEntry(**{**entry.as_dict(), "hash": entry.computed_hash()}).to_item())
    report = log.verify(MODEL)
    assert (report.ok, report.problems[0]["seq"], report.problems[0]["problem"]) == (
        False,
        2,
        "reordered",
    )


def test_consistently_rewritten_chain_is_caught_by_the_anchor(log: AuditLog, boto, aws) -> None:
    """Given an attacker who edits entry 3 and recomputes every hash and link after it, the
    chain alone looks intact, but entry 3 no longer matches its Object Lock anchor."""
    _fill(log)
    prev = _item(boto, aws, 2)["hash"]["S"]
    for seq in (3, 4, 5):
        item = _item(boto, aws, seq)
        if seq == 3:
            item = {**item, "actor": {"S": "someone-else"}}
        item = _rehash(item, prev)
        _put(boto, aws, item)
        prev = item["hash"]["S"]
    chain_only = AuditLog(boto["dynamodb"], aws.audit_table).verify(MODEL)
    assert chain_only.ok  # the hash chain alone cannot see a consistent rewrite
    report = log.verify(MODEL)
    assert (report.ok, report.problems[0]["seq"], report.problems[0]["problem"]) == (
        False,
        3,
        "rewritten",
    )


def test_overwritten_anchor_is_reported_and_not_believed(log: AuditLog, boto, aws) -> None:
    _fill(log, 2)
    boto["s3"].put_object(
        Bucket=aws.anchor_bucket, Key=AnchorStore.key(MODEL, 2), Body=b'{"forged": true}'
    )
    report = log.verify(MODEL)
    assert (report.ok, report.problems[0]["problem"]) == (False, "anchor_rewritten")


def test_entries_appended_outside_ferry_are_unanchored(log: AuditLog, boto, aws) -> None:
    _fill(log, 2)
    AuditLog(boto["dynamodb"], aws.audit_table).append(MODEL, "approve", "mallory", version=1)
    report = log.verify(MODEL)
    assert (report.ok, report.problems[0]["seq"], report.problems[0]["problem"]) == (
        False,
        3,
        "unanchored",
    )


def test_failed_anchor_write_keeps_the_event_and_says_so(boto, aws) -> None:
    """Given an anchor bucket that does not exist, the entry is still appended (the record)
    and AnchorFailed carries it; the next good append re-anchors the whole chain."""
    broken = AuditLog(boto["dynamodb"], aws.audit_table, AnchorStore(boto["s3"], "no-such-bucket"))
    with pytest.raises(AnchorFailed, match="recorded as audit entry 1") as info:
        broken.append(MODEL, "register", "a", version=1)
    assert info.value.entry.seq == 1
    good = AuditLog(boto["dynamodb"], aws.audit_table, AnchorStore(boto["s3"], aws.anchor_bucket))
    good.append(MODEL, "promote", "a", version=1)
    assert good.verify(MODEL).ok


def test_concurrent_appends_take_distinct_consecutive_seqs(log: AuditLog) -> None:
    """Given 20 threads appending at once (batch runs), every append lands exactly once and
    the chain verifies."""
    with moto_hooks.installed():
        threads = [
            threading.Thread(
                target=log.append,
                args=(MODEL, "batch_run", f"t{i}"),
                kwargs={"details": {"rows": i}},
            )
            for i in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    entries = log.entries(MODEL)
    assert [e.seq for e in entries] == list(range(1, 21))
    assert sorted(e.details["rows"] for e in entries) == list(range(20))
    assert log.verify(MODEL).ok


def test_unknown_event_is_refused(log: AuditLog) -> None:
    with pytest.raises(ValueError, match="unknown audit event"):
        log.append(MODEL, "delete_everything", "a")
