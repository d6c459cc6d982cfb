"""Property 4, part one: a Hypothesis stateful model of the registry's governed events.

The machine (`RuleBasedStateMachine`) registers (with and without validation results),
records gate results (passed or not, against the production version of the moment), promotes
to production and staging, rolls back, archives, approves and rejects against
`ferry_core.registry.governance.Governance` on moto, with or without the production approval
gate; production takes only a version with a passed gate result against the version live.
It keeps its own model of what the documented rules allow and, after every step, reads
DynamoDB and S3 back: each stage has one pointer, the one the model expects, at an existing,
validated, live version that the scoring path resolves; every successful transition added
exactly one audit entry naming it, a refusal or a no-op none; `AuditLog.verify` is green.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ferry_bench.batch_harness import built_model
from ferry_bench.properties import Mode, PropertyResult
from ferry_core.card import Lineage
from ferry_core.errors import FerryError
from ferry_core.registry.registration import register

STAGES = ("production", "staging")
GovernanceFactory = Callable[..., Any]


def default_governance(**kwargs: Any) -> Any:
    """`ferry_core.registry.governance.connect`: the governance every Ferry entry point uses."""
    from ferry_core.registry.governance import connect

    return connect(**kwargs)


@cache
def unvalidated_model() -> Any:
    """The same ONNX registered without a parity reference: no validation results."""
    from ferry_core.onboarding.intake import build_from_onnx

    built = built_model()
    return build_from_onnx(built.onnx_bytes, built.schema)


@dataclass
class Stats:
    """Figures summed over every example and round."""

    examples: int = 0
    steps: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    noops: int = 0
    invariant_checks: int = 0
    audit_entries: int = 0
    verify_failures: int = 0
    chains_verified: int = 0


@dataclass
class MachineRun:
    """What the state machine needs; set before a run (Hypothesis builds the machine itself)."""

    res: Any
    clients: dict[str, Any]
    workdir: Path
    factory: GovernanceFactory
    stats: Stats


@dataclass
class Rev:
    """One revision of a stage pointer, as the model expects the history to hold it."""

    revision: int
    version: int
    restores: int | None
    event: str


VALIDATED = st.sampled_from((True, True, True, False))  # mostly promotable versions
PREFER = st.sampled_from((False, True, True, True))
MISSING = st.sampled_from((False,) * 4 + (True,) + (False,) * 5)  # not at an end: ends are
# what Hypothesis draws most


class RegistryMachine(RuleBasedStateMachine):
    """The registry as the documented rules say it should be, step by step.

    `ctx` (the moto resources, clients and tallies of one run) is set by `make_machine`.
    """

    ctx: ClassVar[MachineRun]

    def __init__(self) -> None:
        super().__init__()
        self.ctx.stats.examples += 1
        self.model = f"reg-{self.ctx.stats.examples}"
        self.gov: Any = None
        self.approval = False
        self.versions: dict[int, dict[str, Any]] = {}
        self.pointer: dict[str, int | None] = dict.fromkeys(STAGES)
        self.history: dict[str, list[Rev]] = {s: [] for s in STAGES}
        self.audit = 0  # entries the chain must hold
        self.head: tuple[int, str] | None = None  # (seq, hash) last verified
        self.changed = True

    # -- set-up -------------------------------------------------------------------------
    @initialize(approval=st.booleans(), first=st.lists(VALIDATED, min_size=1, max_size=3))
    def start(self, approval: bool, first: list[bool]) -> None:
        """A governance (prod-like approval gate or not) and the model's first versions."""
        self.approval = approval
        c = self.ctx.clients
        anchors = f"ferry-anchors-{self.ctx.stats.examples}"  # its own: verify lists it all
        _anchor_bucket(c["s3"], anchors)
        self.gov = self.ctx.factory(
            dynamodb=c["dynamodb"],
            s3=c["s3"],
            events=c["events"],
            registry_table=self.ctx.res.registry_table,
            audit_table=self.ctx.res.audit_table,
            anchor_bucket=anchors,
            cache_dir=str(self.ctx.workdir / "gov-cache"),
            env="local",
            approval_required=approval,
        )
        for validated in first:
            self.register(validated)

    # -- the model's verdicts -------------------------------------------------------------
    def _live(self, v: int) -> bool:
        return self.versions[v]["status"] not in ("archived", "rejected")

    def _promotable(self, v: int, stage: str, approval: bool = True) -> str | None:
        """Why the documented gates refuse `v` for `stage` (None: they let it through)."""
        if v not in self.versions:
            return "version_not_found"
        if not self._live(v):
            return "not live"
        if not self.versions[v]["validated"]:
            return "no validation"
        gated = approval and stage == "production" and self.approval
        if gated and not self.versions[v]["approved"]:
            return "needs approval"
        live = self.pointer["production"]
        if approval and stage == "production" and v != live:
            gate = self.versions[v]["gate"]  # (passed, gated against)
            if gate is None or not gate[0] or gate[1] != live:
                return "no passed gate against the production version"
        return None

    def _rollback_target(self, stage: str) -> Rev | None:
        """The revision before the current, skipping what a rollback already undid and
        versions no longer servable (`ferry rollback`'s documented target)."""
        hist = self.history[stage]
        if not hist:
            return None
        by_rev = {h.revision: h for h in hist}
        current = hist[-1]

        def previous(h: Rev) -> int:
            return (h.restores if h.restores is not None else h.revision) - 1

        candidate = previous(current)
        while candidate >= 1:
            h = by_rev[candidate]
            if h.version != current.version and self._live(h.version):
                return h
            candidate = previous(h)
        return None

    # -- running one event ----------------------------------------------------------------
    def _apply(
        self, event: str, version: int | None, expect: str | None, call: Callable[[], Any]
    ) -> Any:
        """Run `call`; it must succeed iff `expect` is None, adding exactly one audit entry
        naming the event (none for a refusal or a no-op)."""
        self.ctx.stats.steps += 1
        try:
            outcome = call()
        except FerryError as exc:
            assert expect is not None, f"{event} v{version} refused unexpectedly: {exc}"
            self.ctx.stats.refusals[event] += 1
            self.ctx.stats.reasons[f"{event}: {type(exc).__name__}: {expect}"] += 1
            self._expect_head(f"the refused {event} of v{version}")
            return None
        assert expect is None, f"{event} v{version} succeeded but should be refused: {expect}"
        if outcome.entry is None:  # a no-op (already in that stage)
            self.ctx.stats.noops += 1
            self._expect_head(f"the no-op {event} of v{version}")
            return outcome
        self.audit += 1
        self.changed = True
        head = self.gov.audit.head(self.model)
        assert head is not None and head.seq == self.audit, (
            f"{event} v{version}: the chain has {head.seq if head else 0} entries, the "
            f"transitions {self.audit}"
        )
        assert (head.event, head.version) == (event, outcome.version), (
            f"the audit entry says {head.event} v{head.version}, not {event}"
        )
        self.ctx.stats.transitions[event] += 1
        return outcome

    def _expect_head(self, what: str) -> None:
        """Nothing was appended: the head is the one last verified."""
        head = self.gov.audit.head(self.model)
        got = (head.seq, head.hash) if head else None
        assert self.changed or got == self.head, f"{what} wrote to the audit chain"

    # -- rules ----------------------------------------------------------------------------
    @rule(validated=VALIDATED)
    def register(self, validated: bool) -> None:
        """A new version, with or without validation results; always audited."""
        built = built_model() if validated else unvalidated_model()
        s3, bucket = self.ctx.clients["s3"], self.ctx.res.model_bucket

        def call() -> Any:
            return register(built, self.model, s3, bucket, self.gov, Lineage(), "hypothesis")[1]

        if not self.versions:  # the first registration creates the model
            self.ctx.stats.steps += 1
            _, outcome = register(built, self.model, s3, bucket, self.gov, Lineage(), "h")
            assert outcome.entry is not None and outcome.entry.seq == 1
            self.audit += 1
            self.changed = True
            self.ctx.stats.transitions["register"] += 1
        else:
            outcome = self._apply("register", None, None, call)
        self.versions[outcome.version] = {
            "status": "registered",
            "validated": validated,
            "approved": False,
            "gate": None,
        }

    @rule(data=st.data(), passed=st.booleans())
    def validate(self, data: Any, passed: bool) -> None:
        """A gate result, as the ValidateVersion machine records it: against the production
        version live now; audited (`validate`) whether it passed or not."""
        v = self._pick(data, [v for v in self.versions if self.versions[v]["gate"] is None])
        expect = None if v in self.versions else "version_not_found"
        against = self.pointer["production"]
        result = {"passed": passed, "champion_version": against, "summary": "gate result"}
        outcome = self._apply(
            "validate",
            v,
            expect,
            lambda: self.gov.record_validation(self.model, v, result, actor="validator"),
        )
        if outcome is not None:
            self.versions[v]["gate"] = (passed, against)

    def _pick(self, data: Any, prefer: list[int] | None = None) -> int:
        """A version: mostly one of `prefer` (when given), else any, now and then none."""
        from hypothesis import strategies as st

        if prefer and data.draw(PREFER, "preferred?"):
            return data.draw(st.sampled_from(prefer), "version")
        n = len(self.versions)
        if data.draw(MISSING, "missing?"):  # now and then: a version that does not exist
            return n + 1
        return data.draw(st.sampled_from(range(1, n + 1)), "version")

    def _candidates(self, stage: str) -> list[int]:
        """Versions the gates would let into `stage` (so transitions, not only refusals)."""
        return [v for v in self.versions if self._promotable(v, stage) is None]

    @rule(data=st.data())
    def promote_production(self, data: Any) -> None:
        self._promote(self._pick(data, self._candidates("production")), "production")

    @rule(data=st.data())
    def promote_staging(self, data: Any) -> None:
        self._promote(self._pick(data, self._candidates("staging")), "staging")

    def _promote(self, v: int, stage: str) -> None:
        expect = self._promotable(v, stage) if self.versions else "no model"
        outcome = self._apply(
            "promote", v, expect, lambda: self.gov.promote(self.model, v, stage, actor="h")
        )
        if outcome is None or outcome.entry is None:
            if outcome is not None:
                assert self.pointer[stage] == v, "a no-op promotion of a version not live"
            return
        assert self.pointer[stage] != v
        self.history[stage].append(Rev(len(self.history[stage]) + 1, v, None, "promote"))
        self.pointer[stage] = v

    @precondition(lambda self: any(self.history.values()))
    @rule(stage=st.sampled_from(STAGES))
    def rollback(self, stage: str) -> None:
        """Back to the revision the history says, or refused when there is none."""
        target = self._rollback_target(stage) if self.versions else None
        expect = None if target is not None else "nothing to roll back to"
        outcome = self._apply(
            "rollback",
            target.version if target else None,
            expect,
            lambda: self.gov.rollback(self.model, actor="h", stage=stage),
        )
        if outcome is None:
            return
        assert target is not None and outcome.version == target.version, (
            f"rolled back to v{outcome.version}, the history says v{target.version}"
        )
        hist = self.history[stage]
        hist.append(Rev(len(hist) + 1, target.version, target.revision, "rollback"))
        self.pointer[stage] = target.version

    def _status(self, event: str, v: int) -> str | None:
        if v not in self.versions:
            return "version_not_found"
        if not self._live(v):
            return "already archived or rejected"
        if event == "approve":
            return None
        if self.pointer["production"] == v:
            return "live in production"
        if self.pointer["staging"] == v and event == "archive":
            return "live in staging"
        return None

    @rule(data=st.data())
    def approve(self, data: Any) -> None:
        self._decide(self._pick(data), "approve")

    @rule(data=st.data(), event=st.sampled_from(("archive", "reject")))
    def retire(self, data: Any, event: str) -> None:
        self._decide(self._pick(data), event)

    @precondition(lambda self: self.pointer["staging"] is not None)
    @rule(then_roll_back=st.booleans())
    def reject_staged(self, then_roll_back: bool) -> None:
        """A reviewer turns down the staged candidate (it leaves staging with it), and
        maybe staging goes back to the candidate before it."""
        self._decide(self.pointer["staging"], "reject")
        if then_roll_back:
            self.rollback("staging")

    def _decide(self, v: int, event: str) -> None:
        expect = self._status(event, v) if self.versions else "no model"
        action = getattr(self.gov, event)
        # A reviewer, never the registrant (`h`): four eyes.
        outcome = self._apply(event, v, expect, lambda: action(self.model, v, actor="reviewer"))
        if outcome is None:
            return
        new = {"archive": "archived", "approve": "approved", "reject": "rejected"}[event]
        self.versions[v]["status"] = new
        if event == "approve":
            self.versions[v]["approved"] = True
        if event == "reject" and self.pointer["staging"] == v:  # unstaged with it
            hist = self.history["staging"]
            hist.append(Rev(len(hist) + 1, v, None, "unstage"))
            self.pointer["staging"] = None

    # -- what must hold after every step -------------------------------------------------
    @invariant()
    def registry_matches_the_rules(self) -> None:
        """Statuses, pointers and histories as the rules say; pointers at live, validated
        (approved where gated) versions; scoring resolves the production pointer."""
        if not self.versions:
            return
        self.ctx.stats.invariant_checks += 1
        reader = self.gov.reader
        records = {int(r["version"]): r for r in reader.version_records(self.model)}
        assert sorted(records) == sorted(self.versions), "versions differ from the model"
        for v, want in self.versions.items():
            assert records[v].get("status", "registered") == want["status"], (
                f"v{v} is {records[v].get('status')}, the model says {want['status']}"
            )
        items = _stage_items(self.ctx.clients["dynamodb"], self.ctx.res.registry_table, self.model)
        assert set(items) <= set(STAGES), f"pointer items for unknown stages: {set(items)}"
        for stage in STAGES:
            pointer = reader.fresh_pointer(self.model, stage)
            got = pointer.version if pointer else None
            assert got == self.pointer[stage], (
                f"{stage} points at v{got}, the rules say v{self.pointer[stage]}"
            )
            hist = reader.history(self.model, stage)
            assert [(h.revision, h.version, h.restores, h.event) for h in hist] == [
                (h.revision, h.version, h.restores, h.event) for h in self.history[stage]
            ], f"the {stage} history differs from the model"
            if got is None:
                continue
            assert self._live(got) and self.versions[got]["validated"], (
                f"{stage} points at v{got}, which is {records[got].get('status')} or unvalidated"
            )
            assert pointer.revision == hist[-1].revision, "pointer and history disagree"
            if stage == "production" and self.approval:
                assert records[got].get("approved_by"), f"production v{got} is unapproved"
        live = reader.pointer(self.model, "production")
        served = reader.resolve(self.model).version if live else None
        assert served == self.pointer["production"], f"scoring resolves v{served}"

    @invariant()
    def audit_chain_verifies(self) -> None:
        """Full verify (hashes, links, anchors) whenever the chain grew; a refusal or a
        no-op is held to "the head did not move" (checked in `_apply`)."""
        if not self.versions or not self.changed:
            return
        report = self.gov.audit.verify(self.model)
        self.head, self.changed = (report.head_seq, report.head_hash), False
        self.ctx.stats.chains_verified += 1
        if not report.ok:
            self.ctx.stats.verify_failures += 1
        assert report.ok, f"audit verify: {report.first_problem}"
        assert report.entries == self.audit, (
            f"{report.entries} audit entries for {self.audit} transitions"
        )

    def teardown(self) -> None:
        self.ctx.stats.audit_entries += self.audit


def make_machine(ctx: MachineRun) -> type[RegistryMachine]:
    """The machine bound to one run's resources and tallies."""
    return type("RegistryMachine", (RegistryMachine,), {"ctx": ctx})


def _anchor_bucket(s3: Any, name: str) -> None:
    """An Object Lock (compliance) bucket, as infra/governance.py makes the anchor bucket."""
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )


def _stage_items(ddb: Any, table: str, model: str) -> dict[str, int]:
    """Pointer items straight from DynamoDB: stage → how many items (one, by key design)."""
    from ferry_core.registry.reader import RegistryReader

    return RegistryReader(ddb, table).stage_item_counts(model)


def run_stateful(
    mode: Mode,
    result: PropertyResult,
    workdir: Path,
    factory: GovernanceFactory,
    shrink: bool = True,
) -> Stats:
    """The state machine on in-process moto; a falsified invariant becomes a violation (with
    Hypothesis's minimal steps, unless `shrink` is off)."""
    import boto3
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    from ferry_local.moto_stack import local_aws

    stats = Stats()
    with local_aws(workdir / "scoring-tmp") as res:
        clients = {n: boto3.client(n) for n in ("s3", "dynamodb", "events")}
        machine = make_machine(MachineRun(res, clients, workdir, factory, stats))
        config = settings(
            max_examples=mode.size(12, 50),
            stateful_step_count=mode.size(14, 30),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
            derandomize=not mode.long,  # the test suite's run is the same every time
            # Shrinking replays every step on moto (minutes): the bench does it, the test
            # suite reports the steps as found.
            phases=list(Phase) if shrink and mode.long else [Phase.explicit, Phase.generate],
        )
        report = io.StringIO()
        try:
            with contextlib.redirect_stdout(report):
                run_state_machine_as_test(machine, settings=config)
        except Exception as exc:  # a falsified rule or invariant, with the steps that did it
            notes = getattr(exc, "__notes__", [])  # Hypothesis attaches the steps there
            lines = [*report.getvalue().splitlines(), *"\n".join(notes).splitlines()]
            checks = ("state.registry_matches", "state.audit_chain", "state.teardown")
            steps = [x.strip() for x in lines if x.strip().startswith("state.")]
            steps = [x for x in steps if not x.startswith(checks)]
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            shown = "; ".join(steps[-12:])
            result.violations.append(f"stateful: {message} (last of {len(steps)} steps: {shown})")
    return stats
