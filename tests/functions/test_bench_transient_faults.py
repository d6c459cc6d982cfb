"""Property 3: transient AWS faults are survived, persistent ones reach a failure path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferry_bench.fault_injection import SERVICES, Fault, FaultInjector
from ferry_bench.properties import Mode, PropertyResult
from ferry_bench.transient_faults import check, run_faults
from ferry_core.audit.anchors import AnchorStore
from ferry_core.audit.chain import AuditLog
from ferry_core.batch import run as batch_run
from ferry_core.errors import AnchorFailed


def test_faults_under_every_service_are_survived_or_routed_to_a_failure_path() -> None:
    """
    Given throttling and 5xx answers injected under the batch handler, the local platform's
        SQS poller, the fan-out's Step Functions call and governance (S3, DynamoDB, SQS,
        Step Functions, EventBridge), transient and persistent, at the start, mid-file and
        mid-promotion
    When the fast mode of property 3 runs
    Then no violation: transient → the exact outputs; persistent → DLQ then redrive, a failed
        manifest, a refused promotion or a kept event with its warning; 0 lost, 0 half-written
    """
    result = check(Mode(long=False))
    assert result.violations == []
    f = result.figures
    assert all(f[f"faults injected: {svc}"] > 0 for svc in SERVICES)
    assert f["retries by botocore"] > 50 and f["client retry mode"].startswith("standard")
    assert f["transient survived (botocore retries)"] >= 20
    assert f["beyond retry budget, survived by redelivery"] >= 4
    assert f["persistent → DLQ"] == f["DLQ redriven and completed"] >= 8
    assert f["persistent → failed manifest with reason"] >= 1
    # the fan-out runs the synthesized machine: its Retry reruns parts, its Catch fails runs
    assert f["beyond retry budget, a fan-out part retried by the machine"] == 1
    assert f["fan-out executions failed through the Catch"] == 1
    assert f["part invocations retried by the machine's Retry"] >= 1 + 2  # + a failing part's
    assert f["persistent → promotion refused, nothing written"] >= 5
    assert f["persistent → event kept, warning reported"] == 2
    assert f["rows verified"] > 100_000
    assert (f["lost"], f["half-written"]) == (0, 0)
    # transient faults survived and persistent faults routed are stated apart, case by case
    survived, routed = (
        f["transient faults: cases survived"],
        f["persistent faults: cases routed as designed"],
    )
    assert survived.split("/")[0] == survived.split("/")[1] and int(survived.split("/")[0]) >= 20
    assert routed.split("/")[0] == routed.split("/")[1] and int(routed.split("/")[0]) >= 8
    assert int(survived.split("/")[1]) + int(routed.split("/")[1]) == f["cases"]
    assert "fan-out executions failed through the Catch" in result.emulator_only


def test_a_case_counts_as_persistent_when_any_of_its_faults_never_stops() -> None:
    from ferry_bench.fault_injection import Cut, Persistence, s3_fault

    split = Persistence()
    split.count([s3_fault("GetObject", times=2)], [], held=True)
    split.count([s3_fault("GetObject", times=2), s3_fault("PutObject")], [], held=True)
    split.count([], [Cut(match="x", times=None)], held=False)
    assert split.figures() == {
        "transient faults: cases survived": "1/1",
        "persistent faults: cases routed as designed": "1/2",
    }


def _registry_cases(tmp_path: Path) -> PropertyResult:
    result = PropertyResult(3, "faults", "test")
    run_faults(Mode(long=False), result, tmp_path, select="dynamodb registry GetItem")
    return result


def test_a_registry_outage_is_retried_by_the_queue_not_failed_for_good(tmp_path: Path) -> None:
    """
    Given the registry unreadable past botocore's retries (6 throttles), then for good
    When the upload's message is delivered
    Then the delivery fails (the queue retries, then dead-letters) instead of writing a failed
        manifest: the redelivery, or the redrive once the outage is over, scores the file
    """
    result = _registry_cases(tmp_path)
    assert result.violations == []
    assert result.figures["beyond retry budget, survived by redelivery"] == 1
    assert result.figures["persistent → DLQ"] == result.figures["DLQ redriven and completed"] == 1


def test_an_outage_failed_for_good_breaks_the_property(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the outage treated as a verdict on the file (the behaviour before the fix), the
    property reports the failed manifests and the missing DLQ entry."""
    monkeypatch.setattr(batch_run, "_outage", lambda exc: False)
    result = _registry_cases(tmp_path)
    assert any("registry cannot be read" in v for v in result.violations), result.violations
    assert any("expected the message in the DLQ" in v for v in result.violations)
    assert result.figures["lost"] > 0


def _anchor_store(boto: dict[str, Any], aws: Any) -> tuple[Any, FaultInjector]:
    inj = FaultInjector()
    inj.install(boto["s3"].meta.events)
    return AuditLog(
        boto["dynamodb"], aws.audit_table, AnchorStore(boto["s3"], aws.anchor_bucket)
    ), inj


def test_an_anchor_whose_answer_was_lost_is_not_reported_as_failed(
    aws: Any, boto: dict[str, Any]
) -> None:
    """
    Given the anchor PutObject lands but its answer is lost (500), so botocore retries it
    When the retry meets the anchor the first attempt wrote (412, If-None-Match)
    Then the append succeeds without AnchorFailed and the chain verifies against its anchors
    """
    log, inj = _anchor_store(boto, aws)
    lost = Fault("s3", "PutObject", "InternalError", 500, times=1, applied=True, match="anchors")
    with inj.active([lost]):
        entry = log.append("credit-risk", "register", "alice", version=1)
    assert lost.injected == 1 and entry.seq == 1
    assert log.verify("credit-risk").ok


def test_an_anchor_slot_holding_another_hash_is_still_a_failure(
    aws: Any, boto: dict[str, Any]
) -> None:
    """An existing anchor for the same seq with a different hash is not taken as ours."""
    log, _ = _anchor_store(boto, aws)
    key = AnchorStore.key("credit-risk", 1)
    boto["s3"].put_object(Bucket=aws.anchor_bucket, Key=key, Body=b'{"seq": 1, "hash": "forged"}')
    with pytest.raises(AnchorFailed, match="anchor could not be written"):
        log.append("credit-risk", "register", "alice", version=1)
