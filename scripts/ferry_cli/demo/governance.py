"""Chapter 2: versions are registered with lineage, promoted, refused and rolled back; the
audit trail that records it all is verified (and catches a forged entry) at the end."""

from __future__ import annotations

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
            ctx.as_identity,
            ctx.govern,
            ctx.res,
            ctx.built,
            expect,
            served_version,
            MODEL,
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
    acting_as: Callable[[str], dict[str, Any]],
    govern: Callable[[str, str, dict[str, Any]], tuple[int, dict[str, Any]]],
    res: Any,
    built: Any,
    expect: Callable[[bool, str], None],
    served_version: Callable[[], int] | None = None,
    model: str = MODEL,
) -> list[tuple[str, Callable[[], str]]]:
    """(title, step) pairs showing registration, promotion, rollback and audit verify.

    Every change goes through the governance API: `govern(identity, route, body)` signs
    `POST /v1/governance/{route}` as one of the platform's identities and returns (status,
    answer). The data scientist uploads candidate bundles (`acting_as(identity)` gives an
    identity's clients) and registers them; the approver promotes and rolls back; the admin
    (as an insider would) tries to edit the audit table. `res` holds the stack's resource
    names; `expect(cond, message)` fails a step; `served_version()` (optional) asks the
    scoring API which version production serves, to show it follows the rollback.
    """
    from ferry_core.audit.anchors import AnchorStore
    from ferry_core.audit.chain import AuditLog
    from ferry_core.onboarding.intake import build_from_onnx
    from ferry_core.registry.lineage import capture
    from ferry_core.registry.policies import wait_for_gate
    from ferry_core.registry.reader import RegistryReader
    from ferry_core.retrain.candidate import write_bundle
    from ferry_core.retrain.manual import manual_run_id

    repo_root = Path(__file__).resolve().parents[3]
    admin = acting_as("admin")
    reader = RegistryReader(admin["dynamodb"], res.registry_table, pointer_ttl_seconds=0)
    audit = AuditLog(
        admin["dynamodb"], res.audit_table, AnchorStore(admin["s3"], res.anchor_bucket)
    )

    def change(identity: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = govern(identity, route, body)
        # 202: the change started a run (a validation) and answers before the run ends.
        expect(status in (200, 202), f"{route} as {identity}: {status} {answer}")
        return answer

    def register(candidate: Any, lineage: Any) -> int:
        """The data scientist uploads a candidate bundle and registers it."""
        run_id = manual_run_id()
        s3 = acting_as("data-scientist")["s3"]
        write_bundle(s3, res.model_bucket, candidate, model, run_id, lineage)
        answer = change("data-scientist", "register", {"model": model, "candidate": run_id})
        return int(answer["version"])

    def register_two() -> str:
        lineage = capture(
            repo_root,
            "ferry_core.onboarding.builder:build_credit_risk",
            repo_root / "requirements/dev.txt",
            actor="demo",
        )
        cards = [reader.card(model, register(built, lineage)) for _ in range(2)]
        console.print(card_table(cards[-1], reader.version_record(model, cards[-1].version)))
        expect(all(c.validation and c.validation["passed"] for c in cards), "validation missing")
        return (
            f"registered v{cards[0].version} and v{cards[1].version} as the data scientist, each "
            "with lineage, its own validation results and a `register` audit entry"
        )

    def promote_both() -> str:
        versions = sorted(c.version for c in reader.versions(model))[-2:]
        for v in versions:
            # The gate against the version live now (the ValidateVersion machine, started
            # through the governance API): production takes nothing else.
            started = change("approver", "validate", {"model": model, "version": v})
            gate = wait_for_gate(reader, model, v, started.get("execution"))
            expect(gate is not None, f"v{v}: no gate result was recorded")
            console.print(f"v{v} gated: {gate.get('summary', '')}")
            expect(gate.get("passed") is True, f"v{v} did not pass the validation gate")
            body = {"model": model, "version": v, "reason": "release"}
            print_outcome(console, change("approver", "promote/production", body))
        expect(reader.fresh_pointer(model, "production").version == versions[-1], "pointer")
        return (
            f"each gated against the version live, production → v{versions[-1]} by the "
            f"approver (stage history keeps v{versions[0]})"
        )

    def refuse_unvalidated() -> str:
        version = register(
            build_from_onnx(built.onnx_bytes, built.schema), capture(repo_root, "onnx")
        )
        body = {"model": model, "version": version}
        status, answer = govern("approver", "promote/production", body)
        expect(status == 409, f"an unvalidated version was not refused: {status} {answer}")
        console.print(f"[yellow]refused:[/] {answer['message']}")
        return f"v{version} (ONNX without parity reference) refused for production"

    def roll_back() -> str:
        body = {"model": model, "reason": "p99 latency regression"}
        o = change("approver", "rollback/production", body)
        print_outcome(console, o)
        target = o["after"]["production"]
        if served_version is not None:
            served = served_version()
            expect(served == target, f"scoring serves v{served}, expected v{target}")
        return f"production rolled back to v{target}" + (
            "; the scoring API serves it" if served_version else ""
        )

    def verify() -> str:
        from botocore.exceptions import ClientError

        report = audit.verify(model)
        expect(report.ok, f"chain broken: {report.first_problem}")
        console.print(
            f"chain of {model}: {report.entries} entries, {report.anchors} anchors, "
            f"head {report.head_hash[:16]}… [green]intact[/]"
        )
        key = {"model": {"S": model}, "seq": {"N": "2"}}
        original = admin["dynamodb"].get_item(TableName=res.audit_table, Key=key)["Item"]
        forged = {**original, "actor": {"S": "mallory"}}
        try:
            admin["dynamodb"].put_item(TableName=res.audit_table, Item=forged)
            expect(False, "the admin could edit the audit table")
        except ClientError as exc:
            console.print(
                f"the admin edits entry 2 in DynamoDB: [red]{exc.response['Error']['Code']}[/]"
            )
        items = [forged if i["seq"] == key["seq"] else i for i in audit.items(model)]
        caught = audit.verify(model, items)
        console.print(f"a copy of the chain with entry 2 edited: [red]{caught.first_problem}[/]")
        expect(not caught.ok and caught.problems[0]["seq"] == 2, "tampering not caught")
        expect(audit.verify(model).ok, "the chain does not verify")
        return (
            "audit chain verified against its Object Lock anchors; no person may edit it, and "
            "an edited copy is named"
        )

    return list(
        zip(
            TITLES, (register_two, promote_both, refuse_unvalidated, roll_back, verify), strict=True
        )
    )
