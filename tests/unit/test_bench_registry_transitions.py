"""Property 4: registry transitions stay consistent, alone and under concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferry_bench.properties import Mode, PropertyResult
from ferry_bench.registry_transitions import check, default_governance, run_registry


def test_governed_transitions_keep_the_registry_and_the_audit_chain_consistent() -> None:
    """
    Given register / promote (production, staging) / rollback / archive / approve / reject
        chosen by Hypothesis, with and without the approval gate, and concurrent promoters and
        archivers through a threaded moto server
    When the fast mode of property 4 runs
    Then no violation: the pointers are the rules', live and validated; one audit entry per
        transition, none per refusal; verify green; one winner's revision at a time
    """
    result = check(Mode(long=False))
    assert result.violations == []
    f = result.figures
    assert f["steps run"] >= 80 and f["invariant checks"] >= 80
    assert f["transitions"] >= 30 and f["refusals"] >= 10 and f["  promote"] >= 1
    assert f["audit entries (stateful)"] == f["transitions"]
    assert f["concurrent promoters"] >= 12 and f["winners"] >= f["concurrent rounds"] >= 2
    assert f["verify"] == "ok"


def unaudited(**kwargs: Any) -> Any:
    """A governance that moves pointers without their audit entries (the broken promise)."""
    gov = default_governance(**kwargs)
    real, ddb = gov._commit, kwargs["dynamodb"]

    def commit(outcome: Any, actor: str, reason: str, details: Any, items: Any) -> Any:
        if outcome.event != "promote":
            return real(outcome, actor, reason, details, items)
        ddb.transact_write_items(TransactItems=items)  # the pointer moves, nothing is audited
        return outcome

    gov._commit = commit
    return gov


def test_a_governance_that_skips_its_audit_entry_is_caught(tmp_path: Path) -> None:
    """Promotions without audit entries break both parts: the stateful run's audit rule and
    the race's "the audit's promotions are the history" check."""
    result = PropertyResult(4, "registry", "test")
    run_registry(Mode(long=False), result, tmp_path, factory=unaudited, shrink=False)
    assert any(v.startswith("stateful:") for v in result.violations), result.violations
    assert any("are not the history" in v for v in result.violations), result.violations


def test_a_staging_rollback_after_a_rejected_candidate_returns_to_the_one_before(
    aws: Any, boto: dict[str, Any], built: Any, tmp_path: Path
) -> None:
    """
    Given v1 then v2 staged, and v2 rejected (which takes it off staging)
    When staging is rolled back
    Then staging is v1 again, audited as a rollback restoring revision 1 (it used to be refused
        as a conflict: "staging is vNone, not v2 as expected", though nothing had moved)
    """
    import boto3

    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register

    gov = default_governance(
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        events=boto3.client("events", region_name="us-east-1"),
        registry_table=aws.registry_table,
        audit_table=aws.audit_table,
        anchor_bucket=aws.anchor_bucket,
        cache_dir=str(tmp_path / "cache"),
    )
    for _ in range(2):
        register(built, "credit-risk", boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    gov.promote("credit-risk", 1, "staging", actor="bob")
    gov.promote("credit-risk", 2, "staging", actor="bob")
    gov.reject("credit-risk", 2, actor="carol", reason="fails review")
    assert gov.reader.fresh_pointer("credit-risk", "staging") is None

    outcome = gov.rollback("credit-risk", actor="ops", stage="staging")
    assert (outcome.before, outcome.after) == ({"staging": None}, {"staging": 1})
    history = gov.reader.history("credit-risk", "staging")
    assert [(h.version, h.event, h.restores) for h in history] == [
        (1, "promote", None),
        (2, "promote", None),
        (2, "unstage", None),
        (1, "rollback", 1),
    ]
    assert gov.audit.entries("credit-risk")[-1].event == "rollback"
    assert gov.audit.verify("credit-risk").ok
