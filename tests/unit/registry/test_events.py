"""Registry events: one detail-type and model per audit event, every published detail valid
against its schema, and no governance event whose publication fails."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from ferry_core.audit.chain import EVENTS
from ferry_core.audit.table import AuditEntry, canonical
from ferry_core.batch.accounting import record_batch_run
from ferry_core.card import Lineage
from ferry_core.registry.event_schemas import event_schema
from ferry_core.registry.events import EVENT_TYPES, SOURCE, EventPublisher, detail_of
from ferry_core.registry.governance import Governance, Outcome, connect
from ferry_core.registry.registration import register

MODEL = "credit-risk"
# Audit events that governance does not record: the batch function writes its own entries.
NOT_GOVERNANCE = {"batch_run"}


@pytest.fixture
def gov(aws: Any, boto: dict[str, Any], tmp_path: Any) -> Governance:
    import boto3

    return connect(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=boto3.client("events", region_name="us-east-1"),
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=aws.anchor_bucket,
        cache_dir=str(tmp_path / "gov-cache"),
        env="local",
    )


def _bus_queue() -> Callable[[], list[dict[str, Any]]]:
    """Every `ferry.registry` event on the default bus lands in a queue; returns a drain."""
    import boto3

    sqs, events = (boto3.client(s, region_name="us-east-1") for s in ("sqs", "events"))
    url = sqs.create_queue(QueueName="registry-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="registry", EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="registry", Targets=[{"Id": "q", "Arn": arn}])

    def drain() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            out += [json.loads(m["Body"]) for m in batch]
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        return out

    return drain


def every_governance_event(
    gov: Governance, built: Any, aws: Any, boto: dict[str, Any]
) -> list[Outcome]:
    """One run through every event governance records, in an order the gates allow (each
    version gated against the production version live before it goes there)."""

    def reg() -> Outcome:
        return register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")[1]

    def gate(version: int) -> Outcome:
        pointer = gov.reader.fresh_pointer(MODEL, "production")
        result = {
            "passed": True,
            "source": "validation",
            "champion_version": pointer.version if pointer else None,
            "summary": "passed",
            "checks": [],
        }
        return gov.record_validation(MODEL, version, result, actor="validation")

    out = [reg(), reg(), reg()]
    out.append(gate(1))
    out.append(gov.promote(MODEL, 1, actor="bob", reason="first release"))
    out.append(gate(2))
    out.append(gov.promote(MODEL, 2, actor="bob", reason="better"))
    out.append(gov.rollback(MODEL, actor="bob", reason="worse in production"))
    out.append(gov.approve(MODEL, 3, actor="carol", details={"ticket": "CHG-1"}))
    out.append(gate(2))
    out.append(gov.start_canary(MODEL, 2, 10, actor="workflow", run_id="run-1"))
    out.append(
        gov.stop_canary(
            MODEL,
            2,
            outcome="rolled_back",
            actor="workflow",
            details={"requests": {"canary": 120, "champion": 1000}, "error_rate_delta": 0.02},
        )
    )
    out.append(gov.archive(MODEL, 3, actor="bob", reason="superseded"))
    out.append(gov.reject(MODEL, 2, actor="carol", reason="canary failed"))
    out.append(gov.record_run_rejection(MODEL, None, actor="workflow", reason="train failed"))
    return out


def test_every_audit_event_has_a_detail_type_and_a_model() -> None:
    """Given the audit chain's events, then each has a detail-type and a detail model (a new
    audit event without one would be swallowed into a publish warning)."""
    assert set(EVENTS) <= set(EVENT_TYPES)
    assert len({t.detail_type for t in EVENT_TYPES.values()}) == len(EVENT_TYPES)


def test_every_governance_event_is_published_without_warning_and_fits_its_schema(
    gov: Governance, built: Any, aws: Any, boto: dict[str, Any]
) -> None:
    """Given every governance event in turn (canary start and stop included), when each is
    committed, then none reports a warning, each has an EventBridge event id, and each event
    received from the bus validates against its detail-type's draft-4 schema; its detail is
    the audit entry (hash included) plus the environment."""
    drain = _bus_queue()
    outcomes = every_governance_event(gov, built, aws, boto)
    assert {o.event for o in outcomes} == set(EVENTS) - NOT_GOVERNANCE
    for o in outcomes:
        assert o.warnings == [], (o.event, o.warnings)
        assert o.event_id, o.event
    received = drain()
    assert len(received) == len(outcomes)
    entries = {e.seq: e for e in gov.audit.entries(MODEL)}
    by_type = {t.detail_type: t for t in EVENT_TYPES.values()}
    for event in received:
        kind = by_type[event["detail-type"]]
        jsonschema.Draft4Validator(event_schema(kind)).validate(event)
        detail = dict(event["detail"])
        assert detail.pop("environment") == "local"
        entry = entries[detail["seq"]]
        assert (entry.event, detail) == (kind.event, entry.as_dict())
        body = {k: v for k, v in detail.items() if k != "hash"}
        assert hashlib.sha256(canonical(body)).hexdigest() == detail["hash"]


def test_a_batch_run_entry_fits_its_schema(gov: Governance, aws: Any) -> None:
    """Given the entry the batch function appends for a committed run, then its detail
    validates against the `Batch Run Recorded` schema."""
    manifest = {
        "model": {"name": MODEL, "version": 1},
        "run_id": "r-1",
        "input": {
            "bucket": "b",
            "key": "batch/incoming/x.csv",
            "version_id": None,
            "sha256": "0" * 64,
        },
        "rows_in": 3,
        "rows_scored": 2,
        "rows_rejected": 1,
        "outputs": {"manifest": "s3://b/batch/manifests/x.json"},
    }
    assert record_batch_run(gov.audit.append, manifest)
    (entry,) = gov.audit.entries(MODEL)
    kind = EVENT_TYPES["batch_run"]
    detail = detail_of(entry, "dev")
    jsonschema.Draft4Validator(event_schema(kind)).validate(
        {"detail-type": kind.detail_type, "source": SOURCE, "detail": detail}
    )


def _entry(event: str, **fields: Any) -> AuditEntry:
    base = {
        "model": MODEL,
        "seq": 1,
        "event": event,
        "actor": "a",
        "at": "2026-12-03T00:00:00Z",
        "version": 1,
        "before": None,
        "after": None,
        "reason": "",
        "details": {},
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }
    return AuditEntry(**{**base, **fields})


def test_an_entry_its_schema_does_not_describe_is_refused_before_the_bus() -> None:
    """Given an entry of an unknown event, or a promotion without its stage, when it is
    published, then a `ValueError` says why and nothing is put on the bus."""

    class Bus:
        calls = 0

        def put_events(self, **kwargs: Any) -> dict[str, Any]:
            self.calls += 1
            return {"Entries": [{"EventId": "x"}], "FailedEntryCount": 0}

    bus = Bus()
    publisher = EventPublisher(bus)
    with pytest.raises(ValueError, match="no EventBridge detail-type"):
        publisher.publish(_entry("retire"))
    with pytest.raises(ValueError, match="stage"):
        publisher.publish(
            _entry(
                "promote",
                before={"production": None},
                after={"production": 1},
                details={
                    "revision": 1,
                    "artifact_sha256": "0" * 64,
                    "artifact_s3_version_id": None,
                },
            )
        )
    assert bus.calls == 0


def test_a_whole_percent_stays_whole_so_the_hash_still_holds() -> None:
    """Given a canary entry whose percent is an integer, its detail keeps the integer: the
    published detail is byte for byte the audited entry."""
    entry = _entry(
        "canary_start",
        version=2,
        before={"production": 1, "canary": None},
        after={"production": 1, "canary": 2, "percent": 10},
        details={"run_id": "r"},
    )
    assert detail_of(entry) == entry.as_dict()


def test_a_failed_publish_after_an_append_is_reported_not_raised() -> None:
    """Given an audit append whose event EventBridge refuses, then the appended entry comes
    back and the failure goes to the caller's report (the entry is the record)."""
    from ferry_core.registry.events import publishing

    class Refusing:
        def put_events(self, **kwargs: Any) -> dict[str, Any]:
            return {"Entries": [{"ErrorCode": "Throttled"}], "FailedEntryCount": 1}

    entry = _entry("archive", before={"status": "registered"}, after={"status": "archived"})
    reports: list[str] = []
    append = publishing(lambda *a, **kw: entry, EventPublisher(Refusing()), reports.append)
    assert append(MODEL, "archive", "a") is entry
    (report,) = reports
    assert "Throttled" in report and f"{MODEL} #1" in report
