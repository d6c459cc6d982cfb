"""Property 4: registry transitions stay consistent, alone and under concurrent promoters.

Part one is a Hypothesis stateful test (`RuleBasedStateMachine`) over the governed events —
register (with and without validation results), promote to production and staging, rollback,
archive, approve and reject — against `ferry_core.registry.governance.Governance` on moto, with or
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
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry_bench.batch_harness import built_model
from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.registry_model import (
    GovernanceFactory,
    default_governance,
    run_stateful,
)

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

    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register
    from ferry_local import moto_hooks
    from ferry_local.moto_stack import FAKE_CREDENTIALS, create_resources

    race = Race()
    n, rounds = mode.size(6, 16), mode.size(2, 8)
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with moto_server() as url, moto_hooks.installed():
            os.environ["AWS_ENDPOINT_URL"] = url
            res = create_resources()

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
                live = setup.reader.fresh_pointer(model, "production")
                for v in versions:  # each gated against the version live: a race to promote
                    gate = {
                        "passed": True,
                        "champion_version": live.version if live else None,
                        "summary": "gate result",
                    }
                    setup.record_validation(model, v, gate, actor="validator")
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
    validations = sum(1 for e in entries if e.event == "validate")
    if validations != registered or len(entries) != 2 * registered + len(promotions) + archives:
        bad.append(
            f"{label}: {len(entries)} audit entries for {registered} registrations (and as "
            f"many gate results: {validations}), {len(promotions)} promotions and "
            f"{archives} archives"
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
