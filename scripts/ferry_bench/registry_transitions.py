"""Property 4: registry transitions stay consistent, alone and under concurrent promoters.

Part one is a Hypothesis stateful test (`RuleBasedStateMachine`) over the governed events —
register (with and without validation results), promote to production and staging, rollback,
archive, approve and reject — against `ferry_core.governance.Governance` on moto, with or
without the production approval gate. The machine keeps its own model of what the documented
rules allow (DESIGN.md §3.3 and the governance module's gates) and, after every step, reads
DynamoDB and S3 back: each stage has one pointer, the one the model expects, at an existing,
validated, live (neither archived nor rejected; approved where production needs it) version,
and it is the version the scoring path resolves; the stage history is the model's; every
successful transition added exactly one audit entry naming it, a refusal or a no-op none;
`AuditLog.verify` (hashes, links, Object Lock anchors) is green.

Part two starts a threaded moto server (`moto.server.ThreadedMotoServer`, real HTTP) and lets
N threads, each with its own clients and `Governance`, promote N different versions to
production at once while others archive versions being promoted: one pointer, at a live
version; the revisions consecutive; the promotions in the audit chain in the history's order,
each `before` the previous `after`; one audit entry per win and none per loss; verify green.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.rows_accounted import built_model

STAGES = ("production", "staging")
GovernanceFactory = Callable[..., Any]


def default_governance(**kwargs: Any) -> Any:
    """`ferry_core.governance.connect`: the governance every Ferry entry point uses."""
    from ferry_core.governance import connect

    return connect(**kwargs)


@cache
def unvalidated_model() -> Any:
    """The same ONNX registered without a parity reference: no validation results."""
    from ferry_core.intake import build_from_onnx

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
class Ctx:
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


def _make_machine(ctx: Ctx) -> type:
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        invariant,
        precondition,
        rule,
    )

    from ferry_core.card import Lineage
    from ferry_core.errors import FerryError
    from ferry_core.registration import register

    VALIDATED = st.sampled_from((True, True, True, False))  # mostly promotable versions
    PREFER = st.sampled_from((False, True, True, True))
    MISSING = st.sampled_from((False,) * 4 + (True,) + (False,) * 5)  # not at an end: ends are
    # what Hypothesis draws most

    class RegistryMachine(RuleBasedStateMachine):
        """The registry as the documented rules say it should be, step by step."""

        def __init__(self) -> None:
            super().__init__()
            ctx.stats.examples += 1
            self.model = f"reg-{ctx.stats.examples}"
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
            c = ctx.clients
            anchors = f"ferry-anchors-{ctx.stats.examples}"  # its own: verify lists it all
            _anchor_bucket(c["s3"], anchors)
            self.gov = ctx.factory(
                dynamodb=c["dynamodb"],
                s3=c["s3"],
                events=c["events"],
                registry_table=ctx.res.registry_table,
                audit_table=ctx.res.audit_table,
                anchor_bucket=anchors,
                cache_dir=str(ctx.workdir / "gov-cache"),
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
            ctx.stats.steps += 1
            try:
                outcome = call()
            except FerryError as exc:
                assert expect is not None, f"{event} v{version} refused unexpectedly: {exc}"
                ctx.stats.refusals[event] += 1
                ctx.stats.reasons[f"{event}: {type(exc).__name__}: {expect}"] += 1
                self._expect_head(f"the refused {event} of v{version}")
                return None
            assert expect is None, f"{event} v{version} succeeded but should be refused: {expect}"
            if outcome.entry is None:  # a no-op (already in that stage)
                ctx.stats.noops += 1
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
            ctx.stats.transitions[event] += 1
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
            s3, bucket = ctx.clients["s3"], ctx.res.model_bucket

            def call() -> Any:
                return register(built, self.model, s3, bucket, self.gov, Lineage(), "hypothesis")[1]

            if not self.versions:  # the first registration creates the model
                ctx.stats.steps += 1
                _, outcome = register(built, self.model, s3, bucket, self.gov, Lineage(), "h")
                assert outcome.entry is not None and outcome.entry.seq == 1
                self.audit += 1
                self.changed = True
                ctx.stats.transitions["register"] += 1
            else:
                outcome = self._apply("register", None, None, call)
            self.versions[outcome.version] = {
                "status": "registered",
                "validated": validated,
                "approved": False,
            }

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
            outcome = self._apply(event, v, expect, lambda: action(self.model, v, actor="h"))
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
            ctx.stats.invariant_checks += 1
            reader = self.gov.reader
            records = {int(r["version"]): r for r in reader.version_records(self.model)}
            assert sorted(records) == sorted(self.versions), "versions differ from the model"
            for v, want in self.versions.items():
                assert records[v].get("status", "registered") == want["status"], (
                    f"v{v} is {records[v].get('status')}, the model says {want['status']}"
                )
            items = _stage_items(ctx.clients["dynamodb"], ctx.res.registry_table, self.model)
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
                    f"{stage} points at v{got}, which is {records[got].get('status')} or "
                    "unvalidated"
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
            ctx.stats.chains_verified += 1
            if not report.ok:
                ctx.stats.verify_failures += 1
            assert report.ok, f"audit verify: {report.first_problem}"
            assert report.entries == self.audit, (
                f"{report.entries} audit entries for {self.audit} transitions"
            )

        def teardown(self) -> None:
            ctx.stats.audit_entries += self.audit

    return RegistryMachine


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
    resp = ddb.query(
        TableName=table,
        KeyConditionExpression="#m = :m AND begins_with(sk, :p)",
        ExpressionAttributeNames={"#m": "model"},
        ExpressionAttributeValues={":m": {"S": model}, ":p": {"S": "STAGE#"}},
        ConsistentRead=True,
    )
    return Counter(i["sk"]["S"].split("#", 1)[1] for i in resp.get("Items", []))


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

    from ferry_cli.local_aws import local_aws

    stats = Stats()
    with local_aws(cache_dir=str(workdir / "scoring-cache")) as res:
        clients = {n: boto3.client(n) for n in ("s3", "dynamodb", "events")}
        machine = _make_machine(Ctx(res, clients, workdir, factory, stats))
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


# ---- part two: concurrent promoters through a real HTTP moto server --------------------------


@dataclass
class Race:
    """Figures of the concurrent part."""

    rounds: int = 0
    promoters: int = 0
    archivers: int = 0
    winners: int = 0
    conflicts: int = 0
    refused: int = 0
    archived: int = 0
    audit_entries: int = 0
    verify_ok: bool = True


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A threaded moto server on a free port, reset before and after (moto's state is global)."""
    import logging
    import urllib.request

    from moto.server import ThreadedMotoServer

    access_log = logging.getLogger("werkzeug")  # one line per request on stderr otherwise
    level = access_log.level
    access_log.setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"

    def reset() -> None:
        req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    reset()
    try:
        yield url
    finally:
        reset()
        server.stop()
        access_log.setLevel(level)


def run_concurrent(
    mode: Mode, result: PropertyResult, workdir: Path, factory: GovernanceFactory
) -> Race:
    """`rounds` rounds of `n` promoters (plus archivers) released at once by a barrier."""
    import boto3

    from ferry_cli.local_aws import (
        FAKE_CREDENTIALS,
        LocalResources,
        create_resources,
        serialized_dynamodb,
    )
    from ferry_core.card import Lineage
    from ferry_core.registration import register

    race = Race()
    n, rounds = mode.size(6, 16), mode.size(2, 8)
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with moto_server() as url, serialized_dynamodb():
            os.environ["AWS_ENDPOINT_URL"] = url
            res = LocalResources()
            create_resources(res)

            def governance(tag: str) -> Any:
                return factory(
                    dynamodb=boto3.client("dynamodb", endpoint_url=url),
                    s3=boto3.client("s3", endpoint_url=url),
                    events=boto3.client("events", endpoint_url=url),
                    registry_table=res.registry_table,
                    audit_table=res.audit_table,
                    anchor_bucket=res.anchor_bucket,
                    cache_dir=str(workdir / f"race-{tag}"),
                    env="local",
                )

            setup = governance("setup")
            s3 = boto3.client("s3", endpoint_url=url)
            rng = random.Random(4)
            model = "race"
            registered = 0
            for r in range(rounds):
                versions = [
                    register(built_model(), model, s3, res.model_bucket, setup, Lineage(), "r")[
                        0
                    ].version
                    for _ in range(n)
                ]
                registered += n
                victims = rng.sample(versions, k=max(1, n // 4))
                govs = [governance(f"p{r}-{i}") for i in range(n + len(victims))]
                barrier = threading.Barrier(n + len(victims))
                lock = threading.Lock()
                outcomes: list[tuple[str, int, str]] = []

                jobs = [("promote", v) for v in versions] + [("archive", v) for v in victims]
                threads = [
                    threading.Thread(target=_act, args=(g, model, a, v, barrier, lock, outcomes))
                    for g, (a, v) in zip(govs, jobs, strict=True)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                race.rounds += 1
                race.promoters += n
                race.archivers += len(victims)
                wins = [o for o in outcomes if o[2] == "won"]
                race.winners += sum(1 for a, _, _ in wins if a == "promote")
                race.archived += sum(1 for a, _, _ in wins if a == "archive")
                race.conflicts += sum(1 for o in outcomes if o[2] == "conflict")
                race.refused += sum(1 for o in outcomes if o[2] == "refused")
                crashed = [o for o in outcomes if o[2].startswith("error")]
                if crashed or len(outcomes) != len(jobs):
                    a, v, verdict = crashed[0] if crashed else ("?", 0, "a thread vanished")
                    result.violations.append(f"race round {r}: {a} of v{v} failed: {verdict}")
                if not any(a == "promote" for a, _, _ in wins):
                    result.violations.append(f"race round {r}: no promoter won")
                _judge_race(setup, model, registered, outcomes, r, result.violations)
            report = setup.audit.verify(model)
            race.audit_entries = report.entries
            race.verify_ok = report.ok
            if not report.ok:
                result.violations.append(f"race: audit verify: {report.first_problem}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return race


def _act(
    gov: Any,
    model: str,
    action: str,
    v: int,
    barrier: threading.Barrier,
    lock: threading.Lock,
    outcomes: list[tuple[str, int, str]],
) -> None:
    """One racer: wait for the others, promote or archive, record the verdict."""
    from ferry_core.errors import FerryError, RegistryConflict

    barrier.wait()
    try:
        if action == "promote":
            gov.promote(model, v, actor=f"promoter-{v}")
        else:
            gov.archive(model, v, actor=f"archiver-{v}")
        verdict = "won"
    except RegistryConflict:
        verdict = "conflict"
    except FerryError:
        verdict = "refused"
    except Exception as exc:  # a crash is reported, never lost with its thread
        verdict = f"error: {type(exc).__name__}: {exc}"[:200]
    with lock:
        outcomes.append((action, v, verdict))


def _judge_race(
    gov: Any,
    model: str,
    registered: int,
    outcomes: list[tuple[str, int, str]],
    r: int,
    bad: list[str],
) -> None:
    """One pointer at a live version; wins serialized in history and audit; nothing else."""
    label = f"race round {r}"
    statuses = {int(x["version"]): x.get("status") for x in gov.reader.version_records(model)}
    pointer = gov.reader.fresh_pointer(model, "production")
    history = gov.reader.history(model, "production")
    if pointer is None or not history:
        bad.append(f"{label}: no production pointer")
        return
    if statuses.get(pointer.version) in ("archived", "rejected"):
        bad.append(f"{label}: production points at v{pointer.version}, which is archived")
    if [h.revision for h in history] != list(range(1, len(history) + 1)):
        bad.append(f"{label}: stage revisions are not consecutive")
    if (pointer.version, pointer.revision) != (history[-1].version, history[-1].revision):
        bad.append(f"{label}: the pointer is not the history's last revision")
    entries = gov.audit.entries(model)
    promotions = [e for e in entries if e.event == "promote"]
    if [e.version for e in promotions] != [h.version for h in history]:
        bad.append(f"{label}: the audit's promotions are not the history, in order")
    previous = None
    for e in promotions:
        if e.before != {"production": previous}:
            bad.append(
                f"{label}: promotion of v{e.version} says before={e.before}, the chain "
                f"says {previous}"
            )
            break
        previous = e.after["production"]
    won = Counter(a for a, _, verdict in outcomes if verdict == "won")
    archives = sum(1 for e in entries if e.event == "archive")
    if len(entries) != registered + len(promotions) + archives:
        bad.append(
            f"{label}: {len(entries)} audit entries for {registered} registrations, "
            f"{len(promotions)} promotions and {archives} archives"
        )
    archived = {v for v, s in statuses.items() if s == "archived"}
    if archives != len(archived):
        bad.append(f"{label}: {archives} archive entries for {len(archived)} archived versions")
    if won["promote"] and not promotions:
        bad.append(f"{label}: winners without promotion entries")


# ---- the property ------------------------------------------------------------------------------


def run_registry(
    mode: Mode,
    result: PropertyResult,
    workdir: Path,
    factory: GovernanceFactory | None = None,
    shrink: bool = True,
) -> None:
    """Both parts with `factory` making each `Governance` (tests pass a broken one)."""
    factory = factory or default_governance
    stats = run_stateful(mode, result, workdir, factory, shrink)
    race = run_concurrent(mode, result, workdir, factory)
    result.figures.update(
        {
            "examples": stats.examples,
            "steps run": stats.steps,
            "transitions": sum(stats.transitions.values()),
            **{f"  {k}": v for k, v in sorted(stats.transitions.items())},
            "refusals": sum(stats.refusals.values()),
            "no-ops (already in stage)": stats.noops,
            "invariant checks": stats.invariant_checks,
            "audit entries (stateful)": stats.audit_entries,
            "chains verified": stats.chains_verified,
            "concurrent rounds": race.rounds,
            "concurrent promoters": race.promoters,
            "concurrent archivers": race.archivers,
            "winners": race.winners,
            "conflicts (nothing written)": race.conflicts,
            "refused (archived meanwhile, live)": race.refused,
            "archived in the race": race.archived,
            "audit entries (race)": race.audit_entries,
            "verify": "ok" if race.verify_ok and not stats.verify_failures else "FAILED",
        }
    )


@prop(4, "Registry transitions stay consistent")
def check(mode: Mode, result: PropertyResult) -> None:
    """Stateful Hypothesis over governance on moto, plus concurrent promoters over HTTP."""
    with tempfile.TemporaryDirectory(prefix="ferry-p4-") as tmp:
        run_registry(mode, result, Path(tmp))
