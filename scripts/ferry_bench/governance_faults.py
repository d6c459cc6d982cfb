"""Governance events under AWS faults, for the transient-faults property.

Each case promotes, archives or registers with a fault on the registry, the audit table, the
anchor bucket or the event bus: the event moves as if no fault happened, is refused with
nothing written, or stands with a warning that says what failed (an anchor, a publication).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry_bench.batch_harness import built_model
from ferry_bench.fault_injection import (
    DEFAULT_RESOURCES,
    RES_TABLES,
    Fault,
    FaultInjector,
    Outcomes,
    check_fired,
    ddb_fault,
    s3_fault,
)

# ---- governance cases -------------------------------------------------------------------------


@dataclass
class GovCase:
    """One governance event under `faults`: "moved" (as if no fault), "refused" (nothing written),
    "warned" (the event stands, its anchor or publication failed and the outcome says so)."""

    name: str
    faults: list[Fault]
    expect: str
    action: str = "promote"
    warning: str = ""


def gov_cases() -> list[GovCase]:
    """Every call a governance event makes (the transaction, the anchor, the publication, the
    reads before them), transient and persistent, on promote, rollback and archive."""
    reg, audit = RES_TABLES["registry"], RES_TABLES["audit"]
    anchors = DEFAULT_RESOURCES.anchor_bucket
    return [
        GovCase(
            "TransactWriteItems throttled ×3", [ddb_fault("TransactWriteItems", times=3)], "moved"
        ),
        GovCase(
            "TransactWriteItems throughput exceeded ×2 (rollback)",
            [ddb_fault("TransactWriteItems", "ProvisionedThroughputExceededException", times=2)],
            "moved",
            action="rollback",
        ),
        GovCase(
            "TransactWriteItems 500 ×3 (archive)",
            [ddb_fault("TransactWriteItems", "InternalServerError", 500, times=3)],
            "moved",
            action="archive",
        ),
        GovCase(
            "anchor PutObject SlowDown ×2", [s3_fault("PutObject", match=anchors, times=2)], "moved"
        ),
        GovCase(
            "artifact GetObject 500 ×2",
            [s3_fault("GetObject", "InternalError", 500, match="model.onnx", times=2)],
            "moved",
        ),
        GovCase(
            "registry GetItem throttled ×3", [ddb_fault("GetItem", match=reg, times=3)], "moved"
        ),
        GovCase(
            "audit head Query 500 ×2",
            [ddb_fault("Query", "InternalServerError", 500, match=audit, times=2)],
            "moved",
        ),
        GovCase(
            "EventBridge PutEvents throttled ×2",
            [Fault("eventbridge", "PutEvents", "ThrottlingException", 400, times=2)],
            "moved",
        ),
        GovCase("TransactWriteItems persistent", [ddb_fault("TransactWriteItems")], "refused"),
        GovCase(
            "TransactWriteItems persistent (rollback)",
            [ddb_fault("TransactWriteItems", "InternalServerError", 500)],
            "refused",
            action="rollback",
        ),
        GovCase(
            "artifact GetObject persistent",
            [s3_fault("GetObject", "InternalError", 500, match="model.onnx")],
            "refused",
        ),
        GovCase(
            "registry GetItem persistent",
            [ddb_fault("GetItem", "InternalServerError", 500, match=reg)],
            "refused",
        ),
        GovCase("audit head Query persistent", [ddb_fault("Query", match=audit)], "refused"),
        GovCase(
            "anchor PutObject persistent",
            [s3_fault("PutObject", match=anchors)],
            "warned",
            warning="anchor could not be written",
        ),
        GovCase(
            "anchor PutObject answer lost (applied)",
            [s3_fault("PutObject", "InternalError", 500, match=anchors, times=1, applied=True)],
            "moved",
        ),
        GovCase(
            "EventBridge PutEvents persistent",
            [Fault("eventbridge", "PutEvents", "InternalException", 500)],
            "warned",
            warning="EventBridge publish failed",
        ),
    ]


@dataclass
class GovBench:
    """One model whose history grows case by case; the governance clients, made once."""

    res: Any
    clients: dict[str, Any]
    workdir: Path
    model: str = "gov-faults"
    cases: int = 0

    def governance(self, cache: str) -> Any:
        """A governance with an empty artifact cache (so the integrity check reads S3)."""
        from ferry_core.registry.governance import connect

        return connect(
            dynamodb=self.clients["dynamodb"],
            s3=self.clients["s3"],
            events=self.clients["events"],
            registry_table=self.res.registry_table,
            audit_table=self.res.audit_table,
            anchor_bucket=self.res.anchor_bucket,
            cache_dir=str(self.workdir / cache),
            env="local",
        )


def _state(gov: Any, model: str) -> tuple[Any, int, int, dict[int, str]]:
    pointer = gov.reader.fresh_pointer(model, "production")
    statuses = {int(r["version"]): r.get("status") for r in gov.reader.version_records(model)}
    return (
        pointer.version if pointer else None,
        len(gov.reader.history(model, "production")),
        len(gov.audit.entries(model)),
        statuses,
    )


def run_gov_case(
    bench: GovBench, inj: FaultInjector, case: GovCase, out: Outcomes, bad: list[str]
) -> None:
    """Set up (faults off): a new version, promoted first for a rollback; then the event under
    the faults; then judge what was written."""
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register

    bench.cases += 1
    model, label = bench.model, f"[governance: {case.name}]"
    setup = bench.governance("gov-setup")

    def register_next() -> int:
        card, _ = register(
            built_model(),
            model,
            bench.clients["s3"],
            bench.res.model_bucket,
            setup,
            Lineage(),
            "reliability",
        )
        return card.version

    def gated(v: int) -> None:
        """A passed gate result against the version live, as ValidateVersion records it."""
        live = setup.reader.fresh_pointer(model, "production")
        against = live.version if live else None
        gate = {"passed": True, "champion_version": against, "summary": "gate result"}
        setup.record_validation(model, v, gate, actor="validator")

    new = register_next()
    if setup.reader.fresh_pointer(model, "production") is None:
        gated(new)
        setup.promote(model, new, actor="reliability")
        new = register_next()
    gated(new)
    if case.action == "rollback":
        setup.promote(model, new, actor="reliability")
        target = setup.rollback_target(model)
        target = target.version if target else None
    else:
        target = new
    gov = bench.governance(f"gov-cold-{bench.cases}")
    before = _state(gov, model)
    outcome, error = None, None
    with inj.active(case.faults):
        try:
            if case.action == "promote":
                outcome = gov.promote(model, new, actor="faulty", reason=case.name)
            elif case.action == "rollback":
                outcome = gov.rollback(model, actor="faulty", reason=case.name)
            else:
                outcome = gov.archive(model, new, actor="faulty", reason=case.name)
        except Exception as exc:  # refused or failed: judged by what was written
            error = exc
    check_fired(case.faults, [], label, bad)
    after = _state(gov, model)
    if case.action == "archive":
        moved = after[3].get(new) == "archived"
    else:
        moved = after[0] == target and before[0] != target
    wrote, hist = after[2] - before[2], after[1] - before[1]
    if moved != (wrote == 1) or (case.action != "archive" and hist != wrote) or wrote > 1:
        bad.append(
            f"{label} half-written: pointer {before[0]}→{after[0]}, {hist} history and "
            f"{wrote} audit entries"
        )
        out.half_written += 1
    report = gov.audit.verify(model)
    if case.expect == "refused":
        if error is None or moved or wrote:
            bad.append(
                f"{label} expected a refusal with nothing written; error={error!r}, "
                f"moved={moved}, audit +{wrote}"
            )
        if not report.ok:
            bad.append(f"{label} audit verify: {report.first_problem}")
        out.refused += 1
        return
    if error is not None or not moved or wrote != 1:
        bad.append(
            f"{label} expected the {case.action} to land once; error={error!r}, "
            f"moved={moved}, audit +{wrote}"
        )
        return
    warnings = " ".join(outcome.warnings) if outcome else ""
    if case.expect == "moved":
        if warnings:
            bad.append(f"{label} a warning although the {case.action} landed: {warnings}")
        if not report.ok:
            bad.append(f"{label} audit verify: {report.first_problem}")
        if outcome is not None and outcome.event_id is None:
            bad.append(f"{label} the event was not published")
        out.survived += 1
        return
    if case.warning not in warnings:
        bad.append(f"{label} expected a warning {case.warning!r}, got {warnings!r}")
    if "anchor" in case.warning:
        problems = [p["problem"] for p in report.problems]
        if problems != ["unanchored"]:
            bad.append(f"{label} verify should name the unanchored entry, said {problems}")
        setup.approve(model, 1, actor="reviewer", reason="the next event re-anchors")
        report = gov.audit.verify(model)
    if not report.ok:
        bad.append(f"{label} audit verify after the next event: {report.first_problem}")
    out.warned += 1
