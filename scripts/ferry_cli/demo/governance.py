"""Chapter 2: versions are registered with lineage, promoted, refused and rolled back; the
audit trail that records it all is verified (and catches a forged entry) at the end."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ferry_cli.demo.context import MODEL, DemoContext, Step, expect
from ferry_cli.views import card_table, print_outcome

TITLES = (
    "Register two versions with lineage and audit",
    "Gate v1, then v2, and promote each to production",
    "Refuse a version without validation results",
    "Roll production back to the previous version",
    "Verify the audit trail (and catch a forged entry)",
)


def _shared(ctx: DemoContext) -> list[Step]:
    """The governance steps, made once the platform is up and the model is built."""
    if "governance" not in ctx.state:

        def served_version() -> int:
            status, card = ctx.http("GET", f"/v1/models/{MODEL}")
            expect(status == 200, f"model card: {status} {card}")
            return int(card["version"])

        ctx.state["governance"] = governance_steps(
            ctx.console,
            ctx.aws,
            ctx.res,
            ctx.built,
            expect,
            served_version,
            MODEL,
            acting_as=ctx.as_identity,
        )
    return ctx.state["governance"]


def _deferred(ctx: DemoContext, index: int) -> Step:
    return TITLES[index], lambda: _shared(ctx)[index][1]()


def steps(ctx: DemoContext) -> list[Step]:
    """Register, promote, refuse an unvalidated version, roll back."""
    return [_deferred(ctx, i) for i in range(4)]


def audit_steps(ctx: DemoContext) -> list[Step]:
    """The closing chapter: the audit trail, checked by the library and from the command line."""

    def verify_cli() -> str:
        ctx.ferry("audit", "verify")
        return "`ferry audit verify --env local`: every model's chain intact"

    return [_deferred(ctx, 4), ("Verify every chain from the command line", verify_cli)]


def governance_steps(
    console: Console,
    aws: dict[str, Any],
    res: Any,
    built: Any,
    expect: Callable[[bool, str], None],
    served_version: Callable[[], int] | None = None,
    model: str = MODEL,
    acting_as: Callable[[str], dict[str, Any]] | None = None,
) -> list[tuple[str, Callable[[], str]]]:
    """(title, step) pairs showing registration, promotion, rollback and audit verify.

    `aws` holds `s3` and `dynamodb` clients (and optionally `events`), `res` the
    StackResources; `expect(cond, message)` fails a step; `served_version()` (optional) asks
    the scoring API which version production serves, to show it follows the rollback.
    `acting_as(identity)` (optional) gives an identity's clients: then the data scientist
    registers and the admin promotes, rolls back and (as an insider would) edits the audit
    table; without it every step uses `aws`.
    """
    from ferry_core.onboarding.intake import build_from_onnx
    from ferry_core.registry.governance import connect
    from ferry_core.registry.lineage import capture
    from ferry_core.registry.reader import RegistryReader
    from ferry_core.registry.registration import register as register_version
    from ferry_core.retrain.gate.policy import GatePolicy
    from ferry_core.retrain.gate.registered import validate_and_record
    from ferry_core.store import ModelStore

    repo_root = Path(__file__).resolve().parents[3]
    cache = tempfile.mkdtemp(prefix="ferry-demo-gov-")

    def clients(identity: str) -> dict[str, Any]:
        return acting_as(identity) if acting_as is not None else aws

    def governance(identity: str) -> Any:
        as_identity = clients(identity)
        return connect(
            dynamodb=as_identity["dynamodb"],
            s3=as_identity["s3"],
            events=as_identity.get("events"),
            registry_table=res.registry_table,
            audit_table=res.audit_table,
            anchor_bucket=res.anchor_bucket,
            cache_dir=cache,
            env="local",
        )

    gov, scientist = governance("admin"), governance("data-scientist")
    aws = clients("admin")
    reader = RegistryReader(aws["dynamodb"], res.registry_table, pointer_ttl_seconds=0)
    s3_scientist = clients("data-scientist")["s3"]
    store = ModelStore(aws["s3"], cache)

    def register_two() -> str:
        lineage = capture(
            repo_root,
            "ferry_core.onboarding.builder:build_credit_risk",
            repo_root / "requirements/dev.txt",
            actor="demo",
        )
        cards = [
            register_version(
                built, model, s3_scientist, res.model_bucket, scientist, lineage, "demo"
            )[0]
            for _ in range(2)
        ]
        console.print(card_table(cards[-1], reader.version_record(model, cards[-1].version)))
        expect(all(c.validation and c.validation["passed"] for c in cards), "validation missing")
        return (
            f"registered v{cards[0].version} and v{cards[1].version}, each with lineage, "
            "its own validation results and a `register` audit entry"
        )

    def promote_both() -> str:
        versions = sorted(c.version for c in reader.versions(model))[-2:]
        for v in versions:
            # The gate against the version live now (the ValidateVersion machine's two steps,
            # here in this process): production takes nothing else.
            gated = validate_and_record(gov, aws["s3"], store, GatePolicy(), model, v, actor="demo")
            console.print(
                f"v{v} gated: {gov.reader.version_record(model, v)['validation']['summary']}"
            )
            expect(gated.after["passed"] is True, f"v{v} did not pass the validation gate")
            o = gov.promote(model, v, actor="demo", reason="release")
            print_outcome(console, o)
        expect(reader.fresh_pointer(model, "production").version == versions[-1], "pointer")
        return (
            f"each gated against the version live, production → v{versions[-1]} "
            f"(stage history keeps v{versions[0]})"
        )

    def refuse_unvalidated() -> str:
        bare = build_from_onnx(built.onnx_bytes, built.schema)
        card, _ = register_version(
            bare,
            model,
            s3_scientist,
            res.model_bucket,
            scientist,
            capture(repo_root, "onnx"),
            "demo",
        )
        try:
            gov.promote(model, card.version, actor="demo")
        except Exception as exc:  # PromotionRefused: what the demo shows
            console.print(f"[yellow]refused:[/] {getattr(exc, 'message', exc)}")
            return f"v{card.version} (ONNX without parity reference) refused for production"
        expect(False, "an unvalidated version was promoted")
        return ""

    def roll_back() -> str:
        o = gov.rollback(model, actor="demo", reason="p99 latency regression")
        print_outcome(console, o)
        target = o.after["production"]
        if served_version is not None:
            served = served_version()
            expect(served == target, f"scoring serves v{served}, expected v{target}")
        return f"production rolled back to v{target}" + (
            "; the scoring API serves it" if served_version else ""
        )

    def verify() -> str:
        report = gov.audit.verify(model)
        expect(report.ok, f"chain broken: {report.first_problem}")
        console.print(
            f"chain of {model}: {report.entries} entries, {report.anchors} anchors, "
            f"head {report.head_hash[:16]}… [green]intact[/]"
        )
        key = {"model": {"S": model}, "seq": {"N": "2"}}
        original = aws["dynamodb"].get_item(TableName=res.audit_table, Key=key)["Item"]
        forged = {**original, "actor": {"S": "mallory"}}
        aws["dynamodb"].put_item(TableName=res.audit_table, Item=forged)
        caught = gov.audit.verify(model)
        console.print(f"after editing entry 2 in DynamoDB: [red]{caught.first_problem}[/]")
        aws["dynamodb"].put_item(TableName=res.audit_table, Item=original)
        expect(not caught.ok and caught.problems[0]["seq"] == 2, "tampering not caught")
        expect(gov.audit.verify(model).ok, "restored chain does not verify")
        return "audit chain verified against its Object Lock anchors; an edit is named"

    return list(
        zip(
            TITLES, (register_two, promote_both, refuse_unvalidated, roll_back, verify), strict=True
        )
    )
