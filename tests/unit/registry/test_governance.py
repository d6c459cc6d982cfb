"""Governance: gated, atomic, audited stage moves and decisions under moto."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from ferry_core.audit.chain import AuditLog
from ferry_core.card import Lineage
from ferry_core.errors import (
    BadRequest,
    ModelNotFound,
    PromotionRefused,
    RegistryConflict,
    VersionNotFound,
)
from ferry_core.governance.requests import GovernanceRequest, run_request
from ferry_core.registry.governance import Governance, connect
from ferry_core.registry.registration import register, register_built
from ferry_core.store import ModelStore, parse_s3_uri
from ferry_local import moto_hooks

MODEL = "credit-risk"


@pytest.fixture
def gov(aws, boto, tmp_path) -> Governance:
    return connect(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=boto["events"] if "events" in boto else _events(),
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=aws.anchor_bucket,
        cache_dir=str(tmp_path / "gov-cache"),
        env="local",
    )


def _events() -> Any:
    import boto3

    return boto3.client("events", region_name="us-east-1")


def _register(gov: Governance, built, aws, boto, n: int = 1) -> list[int]:
    return [
        register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")[0].version
        for _ in range(n)
    ]


def _events_queue() -> tuple[Any, str]:
    """An SQS queue receiving every ferry.registry event from the default bus."""
    import boto3

    sqs, events = boto3.client("sqs", region_name="us-east-1"), _events()
    url = sqs.create_queue(QueueName="ferry-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="ferry", EventPattern=json.dumps({"source": ["ferry.registry"]}))
    events.put_targets(Rule="ferry", Targets=[{"Id": "q", "Arn": arn}])
    return sqs, url


def test_registration_is_audited_and_published(gov: Governance, built, aws, boto) -> None:
    """Given a governed registration, the version, its `register` audit entry and a
    `Model Version Registered` event exist, and the card records its own validation."""
    sqs, url = _events_queue()
    card, outcome = register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    assert card.validation["passed"] is True
    assert {c["name"] for c in card.validation["checks"]} == {"parity", "schema", "metrics"}
    (entry,) = gov.audit.entries(MODEL)
    assert (entry.event, entry.version, entry.actor) == ("register", 1, "alice")
    assert entry.details["artifact_sha256"] == card.artifact.sha256
    (msg,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(msg["Body"])
    assert (event["source"], event["detail-type"]) == ("ferry.registry", "Model Version Registered")
    assert event["detail"]["hash"] == entry.hash and outcome.event_id


def test_promotion_moves_pointer_history_and_audit_together(
    gov: Governance, built, aws, boto, gate_pass
) -> None:
    _register(gov, built, aws, boto, 2)
    gate_pass(gov, MODEL, 1)
    first = gov.promote(MODEL, 1, actor="bob", reason="first release")
    gate_pass(gov, MODEL, 2)
    second = gov.promote(MODEL, 2, actor="bob", reason="better auc")
    assert (first.before, first.after) == ({"production": None}, {"production": 1})
    assert (second.before, second.after, second.revision) == (
        {"production": 1},
        {"production": 2},
        2,
    )
    history = gov.reader.history(MODEL, "production")
    assert [(h.version, h.revision, h.event) for h in history] == [
        (1, 1, "promote"),
        (2, 2, "promote"),
    ]
    assert history[0].until == history[1].since and history[1].until is None
    events = [(e.event, e.version, e.after) for e in gov.audit.entries(MODEL)]
    assert [e for e in events if e[0] == "promote"] == [
        ("promote", 1, {"production": 1}),
        ("promote", 2, {"production": 2}),
    ]
    assert gov.audit.verify(MODEL).ok


def test_promotion_without_validation_results_is_refused(gov: Governance, built, aws, boto) -> None:
    """Given an ONNX-only version registered without a parity reference (validation None),
    promotion is refused with the reason, and nothing moves."""
    from ferry_core.onboarding.intake import build_from_onnx

    onnx_only = build_from_onnx(built.onnx_bytes, built.schema)
    card, _ = register(onnx_only, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    assert card.validation is None
    with pytest.raises(PromotionRefused, match="has no validation results"):
        gov.promote(MODEL, card.version, actor="bob")
    assert gov.reader.fresh_pointer(MODEL, "production") is None
    assert [e.event for e in gov.audit.entries(MODEL)] == ["register"]


def test_promotion_of_a_tampered_artifact_is_refused(gov: Governance, built, aws, boto) -> None:
    """Given the stored bytes of the pinned artifact version changed behind S3's back, the
    integrity check refuses the promotion, naming the hash mismatch."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    (version,) = _register(gov, built, aws, boto)
    card = gov.reader.card(MODEL, version)
    bucket, key = parse_s3_uri(card.artifact.uri)
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(
        bucket, key, version_id=card.artifact.s3_version_id
    )
    stored.value = card_bytes = b"\x08\x07" + built.onnx_bytes[2:]
    assert card_bytes != built.onnx_bytes
    with pytest.raises(PromotionRefused, match="integrity check failed"):
        gov.promote(MODEL, version, actor="mallory")
    assert gov.reader.fresh_pointer(MODEL, "production") is None


def test_failed_audit_write_leaves_the_pointer_unmoved(
    built, aws, boto, tmp_path, gate_pass
) -> None:
    """Given an audit table that cannot be written, the promotion fails as a whole: a stage
    move never lands without its audit entry."""
    good = connect(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=None,
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=None,
        cache_dir=str(tmp_path / "c"),
    )
    _register(good, built, aws, boto)
    gate_pass(good, MODEL, 1)
    broken = Governance(
        boto["dynamodb"],
        aws.registry_table,
        AuditLog(boto["dynamodb"], "no-such-table"),
        ModelStore(boto["s3"], tmp_path),
    )
    with pytest.raises(Exception, match=r"ResourceNotFound|not found"):
        broken.promote(MODEL, 1, actor="bob")
    assert good.reader.fresh_pointer(MODEL, "production") is None
    assert good.reader.history(MODEL, "production") == []


def test_twenty_concurrent_promotions_leave_one_consistent_pointer(
    gov: Governance, built, aws, boto, gate_pass
) -> None:
    """Given 20 versions gated against the same (empty) production and promoted to it by 20
    threads at once, every promotion either won or was refused: as a conflict, or because a
    winner made its gate result stale; the pointer is the last winner, the stage history and
    the audit chain hold exactly the winners in order (each `before` = previous `after`), and
    the chain verifies against its anchors."""
    versions = _register(gov, built, aws, boto, 20)
    for v in versions:
        gate_pass(gov, MODEL, v)
    barrier = threading.Barrier(len(versions))
    won: list[int] = []
    lost: list[int] = []

    def promote(v: int) -> None:
        barrier.wait()
        try:
            gov.promote(MODEL, v, actor=f"p{v}")
            won.append(v)
        except RegistryConflict:
            lost.append(v)
        except PromotionRefused as exc:
            assert "production is now" in exc.message
            lost.append(v)

    with moto_hooks.installed():
        threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(won + lost) == versions and won
    history = gov.reader.history(MODEL, "production")
    assert [h.revision for h in history] == list(range(1, len(won) + 1))
    assert sorted(h.version for h in history) == sorted(won)
    pointer = gov.reader.fresh_pointer(MODEL, "production")
    assert (pointer.version, pointer.revision) == (history[-1].version, len(history))
    promotions = [e for e in gov.audit.entries(MODEL) if e.event == "promote"]
    assert [e.version for e in promotions] == [h.version for h in history]
    previous = None
    for e in promotions:
        assert e.before == {"production": previous}
        previous = e.after["production"]
    report = gov.audit.verify(MODEL)
    assert report.ok, report.problems
    assert report.entries == 20 + 20 + len(won)


def test_rollback_walks_back_through_the_stage_history(
    gov: Governance, built, aws, boto, gate_pass
) -> None:
    _register(gov, built, aws, boto, 3)
    for v in (1, 2, 3):
        gate_pass(gov, MODEL, v)
        gov.promote(MODEL, v, actor="bob")
    assert gov.rollback(MODEL, actor="ops", reason="p99 up").after == {"production": 2}
    assert gov.rollback(MODEL, actor="ops").after == {"production": 1}
    with pytest.raises(PromotionRefused, match="no earlier production version"):
        gov.rollback(MODEL, actor="ops")
    history = gov.reader.history(MODEL, "production")
    assert [(h.version, h.event, h.restores) for h in history] == [
        (1, "promote", None),
        (2, "promote", None),
        (3, "promote", None),
        (2, "rollback", 2),
        (1, "rollback", 1),
    ]
    assert [e.event for e in gov.audit.entries(MODEL)][-2:] == ["rollback", "rollback"]
    assert gov.audit.verify(MODEL).ok


def test_rollback_skips_archived_versions(gov: Governance, built, aws, boto, gate_pass) -> None:
    _register(gov, built, aws, boto, 3)
    for v in (1, 2, 3):
        gate_pass(gov, MODEL, v)
        gov.promote(MODEL, v, actor="bob")
    gov.archive(MODEL, 2, actor="bob", reason="bias found")
    assert gov.rollback(MODEL, actor="ops").after == {"production": 1}


def test_archive_reject_and_approval_gates(built, aws, boto, tmp_path, gate_pass) -> None:
    """Given a prod-like governance (approval required for production): a live version cannot
    be archived, archived or rejected versions cannot go live, and production needs approval."""
    gov = connect(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=None,
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=aws.anchor_bucket,
        cache_dir=str(tmp_path / "c"),
        approval_required=True,
    )
    _register(gov, built, aws, boto, 3)
    gate_pass(gov, MODEL, 1)
    gate_pass(gov, MODEL, 2)
    with pytest.raises(PromotionRefused, match="needs an approval"):
        gov.promote(MODEL, 1, actor="bob")
    gov.promote(MODEL, 1, "staging", actor="bob")  # staging needs no approval
    approved = gov.approve(MODEL, 1, actor="carol", reason="reviewed", details={"ticket": "RISK-1"})
    assert approved.after == {"status": "approved"}
    gov.promote(MODEL, 1, actor="bob")
    with pytest.raises(PromotionRefused, match="is live in production"):
        gov.archive(MODEL, 1, actor="bob")
    gov.archive(MODEL, 2, actor="bob", reason="superseded")
    with pytest.raises(PromotionRefused, match="is archived"):
        gov.promote(MODEL, 2, actor="bob")
    gov.reject(MODEL, 3, actor="carol", reason="fails fairness review")
    with pytest.raises(PromotionRefused, match="is already rejected"):
        gov.approve(MODEL, 3, actor="carol")
    with pytest.raises(PromotionRefused, match="is rejected"):
        gov.promote(MODEL, 3, "staging", actor="bob")
    assert gov.reader.version_record(MODEL, 1)["approved_by"] == "carol"
    events = [e.event for e in gov.audit.entries(MODEL)]
    assert events == ["register"] * 3 + ["validate"] * 2 + [
        "promote",
        "approve",
        "promote",
        "archive",
        "reject",
    ]
    assert gov.audit.entries(MODEL)[6].details == {"ticket": "RISK-1"}
    assert gov.audit.verify(MODEL).ok


def test_stale_expectation_and_missing_versions(
    gov: Governance, built, aws, boto, gate_pass
) -> None:
    _register(gov, built, aws, boto, 2)
    gate_pass(gov, MODEL, 1)
    gov.promote(MODEL, 1, actor="bob")
    gate_pass(gov, MODEL, 2)
    with pytest.raises(RegistryConflict, match="is v1, not v2"):
        gov.promote(MODEL, 2, actor="bob", expected_version=2)
    with pytest.raises(VersionNotFound):
        gov.promote(MODEL, 9, actor="bob")
    with pytest.raises(ModelNotFound):
        gov.rollback("nope", actor="bob")
    same = gov.promote(MODEL, 1, actor="bob")
    assert same.entry is None and "already production" in same.warnings[0]


def test_requests_dispatch_by_action(gov: Governance, built, aws, boto, gate_pass) -> None:
    _register(gov, built, aws, boto, 2)
    for v in (1, 2):
        gate_pass(gov, MODEL, v)
        run_request(gov, GovernanceRequest(action="promote", model=MODEL, version=v), "sfn")
    out = run_request(gov, GovernanceRequest(action="rollback", model=MODEL), "sfn")
    assert out.after == {"production": 1} and out.entry.actor == "sfn"
    with pytest.raises(BadRequest, match="needs a version"):
        run_request(gov, GovernanceRequest(action="archive", model=MODEL), "sfn")
    with pytest.raises(PromotionRefused, match="not available"):
        run_request(gov, GovernanceRequest(action="approve", model=MODEL, version=1), "sfn")


def test_bootstrap_registration_records_validation_too(aws, boto, built) -> None:
    from ferry_core.registry.writer import RegistryWriter

    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    card = register_built(built, MODEL, boto["s3"], aws.model_bucket, writer, Lineage())
    assert card.validation["passed"] and card.validation["source"] == "registration"
