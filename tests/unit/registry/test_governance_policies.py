"""The platform's own policies under moto: four eyes on approvals, the validation gate before
production (against the CURRENT champion), and the audited record of a validation.

Gate results here are real: the validation gate runs in-process on the registered version
(`validate_and_record`, the two steps of the ValidateVersion machine in one process).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ferry_core.card import Lineage
from ferry_core.errors import GovernanceForbidden, PromotionRefused
from ferry_core.governance.requests import GovernanceRequest, run_request
from ferry_core.registry.governance import Governance
from ferry_core.registry.registration import register
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.registered import validate_and_record
from ferry_core.store import ModelStore

MODEL = "credit-risk"
ALICE = "arn:aws:sts::123456789012:assumed-role/Ferry-dev-DataScientist/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/Ferry-dev-Approver/bob"
CAROL = "arn:aws:sts::123456789012:assumed-role/Ferry-dev-Approver/carol"
POLICY = GatePolicy(latency_runs=30)  # the environment's thresholds, fewer latency samples


@pytest.fixture
def gov(governed: Any) -> Governance:
    return governed()


def _register(gov: Governance, built: Any, boto: Any, aws: Any, **lineage: Any) -> int:
    card, _ = register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(**lineage), ALICE)
    return card.version


def _validate(gov: Governance, boto: Any, tmp_path: Any, version: int) -> Any:
    store = ModelStore(boto["s3"], str(tmp_path / "gate-cache"))
    return validate_and_record(gov, boto["s3"], store, POLICY, MODEL, version, actor=CAROL)


# -- four eyes ---------------------------------------------------------------------------------
def test_the_registrant_cannot_approve_their_own_version(gov, candidate, aws, boto) -> None:
    """Given a version registered by alice, alice's approval is refused as `forbidden` and
    nothing is recorded; the card names her as the registrant."""
    version = _register(gov, candidate, boto, aws)
    assert gov.reader.card(MODEL, version).lineage.registered_by == ALICE
    with pytest.raises(
        GovernanceForbidden, match=r"registered credit-risk v1: .*\(four eyes\)"
    ) as refused:
        gov.approve(MODEL, version, actor=ALICE)
    assert refused.value.code == "forbidden"
    assert gov.reader.version_record(MODEL, version)["status"] == "registered"
    assert [e.event for e in gov.audit.entries(MODEL)] == ["register"]


def test_the_author_of_the_training_run_cannot_approve(gov, candidate, aws, boto) -> None:
    """Given a version whose training run bob started (`trained_by`), bob may not approve it."""
    version = _register(gov, candidate, boto, aws, trained_by=BOB)
    with pytest.raises(GovernanceForbidden, match="started the training run"):
        gov.approve(MODEL, version, actor=BOB)


def test_the_registrant_on_the_audit_chain_counts_even_if_the_card_says_otherwise(
    gov, candidate, aws, boto
) -> None:
    """Given a card whose lineage names someone else as registrant, the actor of the
    `register` audit entry is still refused: the chain is the record."""
    from ferry_core.registry.registration import _upload

    version = gov.writer.allocate_version(MODEL)
    lineage = Lineage(registered_by=CAROL)
    card = _upload(candidate, MODEL, version, boto["s3"], aws.model_bucket, lineage, None)
    gov.register(card, ALICE)
    with pytest.raises(GovernanceForbidden, match="registered"):
        gov.approve(MODEL, version, actor=ALICE)


def test_a_different_approver_passes(gov, candidate, aws, boto) -> None:
    version = _register(gov, candidate, boto, aws, trained_by=BOB)
    out = gov.approve(MODEL, version, actor=CAROL, reason="reviewed")
    assert out.after == {"status": "approved"}
    assert gov.reader.version_record(MODEL, version)["approved_by"] == CAROL


# -- the gate before production ----------------------------------------------------------------
def test_registration_checks_allow_staging_but_not_production(
    gov, candidate, aws, boto, tmp_path
) -> None:
    """Given a version with only registration's own checks, staging takes it; production
    refuses it naming `ferry validate`; after a passing gate (first model: no champion, the
    gate still runs every check) production takes it."""
    version = _register(gov, candidate, boto, aws)
    gov.promote(MODEL, version, "staging", actor=BOB)
    with pytest.raises(PromotionRefused, match=f"run `ferry validate {MODEL} {version}`"):
        gov.promote(MODEL, version, actor=BOB)
    assert gov.reader.fresh_pointer(MODEL, "production") is None
    recorded = _validate(gov, boto, tmp_path, version)
    assert recorded.after == {"passed": True, "against": None}
    result = gov.reader.version_record(MODEL, version)["validation"]
    assert {c["name"] for c in result["checks"]} == {
        "schema",
        "parity",
        "metrics",
        "segments",
        "scenarios",
        "latency",
    }
    assert gov.promote(MODEL, version, actor=BOB).after == {"production": version}


def test_a_worse_version_is_refused_with_the_gates_reason(
    gov, candidate, worse, aws, boto, tmp_path
) -> None:
    champion = _register(gov, candidate, boto, aws)
    _validate(gov, boto, tmp_path, champion)
    gov.promote(MODEL, champion, actor=BOB)
    challenger = _register(gov, worse, boto, aws)
    recorded = _validate(gov, boto, tmp_path, challenger)
    assert recorded.after == {"passed": False, "against": champion}
    with pytest.raises(
        PromotionRefused, match=r"did not pass the validation gate: failed .*metrics"
    ):
        gov.promote(MODEL, challenger, actor=BOB)
    with pytest.raises(PromotionRefused, match="did not pass the validation gate"):
        gov.start_canary(MODEL, challenger, 10, actor=BOB, run_id="r1")
    assert gov.reader.fresh_pointer(MODEL, "production").version == champion


def test_a_result_against_an_earlier_champion_is_stale(gov, candidate, aws, boto, tmp_path) -> None:
    """Given v2 and v3 both gated against v1, promoting v2 makes v3's result stale: v3 is
    refused until it is gated against v2; a rollback needs no new gate."""
    versions = [_register(gov, candidate, boto, aws) for _ in range(3)]
    _validate(gov, boto, tmp_path, versions[0])
    gov.promote(MODEL, versions[0], actor=BOB)
    for v in versions[1:]:
        _validate(gov, boto, tmp_path, v)
    gov.promote(MODEL, versions[1], actor=BOB)
    with pytest.raises(PromotionRefused, match="validated against v1, but production is now v2"):
        gov.promote(MODEL, versions[2], actor=BOB)
    _validate(gov, boto, tmp_path, versions[2])
    assert gov.promote(MODEL, versions[2], actor=BOB).after == {"production": 3}
    assert gov.rollback(MODEL, actor=BOB).after == {"production": 2}


# -- recording a validation --------------------------------------------------------------------
def test_record_validation_writes_the_result_and_a_validate_audit_entry(
    gov, candidate, aws, boto, tmp_path
) -> None:
    version = _register(gov, candidate, boto, aws)
    out = _validate(gov, boto, tmp_path, version)
    entries = gov.audit.entries(MODEL)
    assert [e.event for e in entries] == ["register", "validate"]
    entry = entries[-1]
    assert (entry.actor, entry.version, entry.after) == (CAROL, version, out.after)
    assert entry.details["passed"] is True and entry.details["failed_checks"] == []
    assert entry.details["champion_version"] is None
    assert entry.reason.startswith("passed all 6 checks")
    assert gov.audit.verify(MODEL).ok
    again = gov.record_validation(
        MODEL, version, {"passed": False, "summary": "gate did not run"}, actor=CAROL
    )
    assert (again.before, again.after) == (
        {"passed": True, "against": None},
        {"passed": False, "against": None},
    )
    assert gov.reader.version_record(MODEL, version)["validation"]["passed"] is False


# -- starting a validation ---------------------------------------------------------------------
def test_validate_request_starts_an_execution_as_the_verified_actor(
    aws, boto, governed, candidate, validate_machine
) -> None:
    sfn, arn = validate_machine
    gov = governed(sfn=sfn, validation_state_machine=arn)
    version = _register(gov, candidate, boto, aws)
    request = GovernanceRequest(action="validate", model=MODEL, version=version)
    out = run_request(gov, request, BOB)
    assert out.execution and out.as_dict()["execution"] == out.execution
    started = json.loads(sfn.describe_execution(executionArn=out.execution)["input"])
    assert started == {"model": MODEL, "version": version, "requested_by": BOB}


def test_registration_starts_validation_and_a_failed_start_is_a_warning(
    aws, boto, governed, candidate, validate_machine
) -> None:
    sfn, arn = validate_machine
    gov = governed(sfn=sfn, validation_state_machine=arn)
    card, outcome = register(candidate, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), ALICE)
    started = json.loads(sfn.describe_execution(executionArn=outcome.execution)["input"])
    assert started == {"model": MODEL, "version": card.version, "requested_by": ALICE}
    missing = arn.replace("ValidateVersion", "Gone")
    broken = governed(sfn=sfn, validation_state_machine=missing)
    card, outcome = register(
        candidate, MODEL, boto["s3"], aws.model_bucket, broken, Lineage(), ALICE
    )
    assert outcome.entry is not None and outcome.execution is None
    assert f"run `ferry validate {MODEL} {card.version}`" in outcome.warnings[0]


def test_validate_without_a_machine_or_a_version_is_refused(gov, candidate, aws, boto) -> None:
    from ferry_core.errors import VersionNotFound

    version = _register(gov, candidate, boto, aws)
    with pytest.raises(PromotionRefused, match="no validation state machine"):
        gov.start_validation(MODEL, version, actor=BOB)
    with pytest.raises(VersionNotFound):
        gov.start_validation(MODEL, version + 5, actor=BOB)
