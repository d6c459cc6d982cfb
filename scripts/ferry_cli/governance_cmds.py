"""`ferry register|models|show|promote|rollback|archive|approve|reject|audit`.

Every command resolves `--env` once (ferry_cli.shell). Changes go through the stage's governance
API, signed as the caller (ferry_cli.governance_api), which records the caller's verified
identity; reads (`models`, `show`, `audit`) read the registry and the audit trail directly.
Output: Rich tables by default, `--json` for scripts. Any failure prints `ferry CMD: one-line
reason` on stderr, exit 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ferry_cli.shell import (
    ENV_OPTION,
    JSON_OPTION,
    REASON_OPTION,
    STAGE_CHOICES,
    emit,
    fail,
    reporting,
    session,
)
from ferry_cli.views import card_table, print_outcome, print_warnings, short_json

CWD = Path()
NO_SEGMENTS: list[str] = []  # typer copies list defaults; never mutated
SEGMENT_OPTION = typer.Option(NO_SEGMENTS, help="metrics per segment: NAME=FEATURE[:EDGES]")
NO_FEATURES: list[str] = []  # typer copies list defaults; never mutated
FEATURE_OPTION = typer.Option(
    NO_FEATURES,
    "--feature",
    "--feature-type",
    help="override an inferred input column (repeatable): "
    '"NAME=TYPE[,nullable][,min=N][,max=N][,out_of_range=reject|clip_and_warn]", TYPE one of '
    "number, integer, category, boolean; NAME is everything before the last =TYPE",
)
SCHEMA_OVERRIDES_OPTION = typer.Option(
    None, help="a partial input schema JSON merged over the inferred one (--feature wins)"
)
CODE_DIR_OPTION = typer.Option(CWD, help="the training code's git checkout (lineage)")
LOCK_FILE_OPTION = typer.Option(None, help="dependency lock file (lineage; default: found)")
TRAINER_OPTION = typer.Option(
    None, help="your trainer file (.py defining Trainer): retraining runs it for this model"
)
TRAINER_LOCK_OPTION = typer.Option(
    None, help="the trainer's lock, pinned name==version lines (with --trainer)"
)


def parse_segments(specs: list[str]) -> dict[str, dict[str, Any]]:
    """`age_band=age:18,30,45,60,101` bands a number; `purpose` (or `p=purpose`) a category."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, rest = spec.split("=", 1) if "=" in spec else (spec.split(":", 1)[0], spec)
        feature, _, edges = rest.partition(":")
        if not feature:
            raise typer.BadParameter(f"segment {spec!r}: expected NAME=FEATURE[:EDGES]")
        seg: dict[str, Any] = {"feature": feature}
        if edges:
            try:
                seg["edges"] = [float(e) if "." in e else int(e) for e in edges.split(",")]
            except ValueError as exc:
                raise typer.BadParameter(f"segment {spec!r}: edges must be numbers") from exc
            if seg["edges"] != sorted(seg["edges"]) or len(seg["edges"]) < 2:
                raise typer.BadParameter(f"segment {spec!r}: edges must increase")
        out[name] = seg
    return out


def parse_features(specs: list[str]) -> list[Any]:
    """`--feature` specs, parsed by the core (ferry_core.onboarding.overrides)."""
    from ferry_core.onboarding.overrides import OverrideError, parse_feature_specs

    try:
        return parse_feature_specs(specs)
    except OverrideError as exc:
        raise typer.BadParameter(exc.message) from exc


# -- register --------------------------------------------------------------------------------
def register(
    name: str = typer.Argument(..., help="model name (lowercase, digits, dashes)"),
    pipeline: str | None = typer.Option(
        None, help="fitted sklearn Pipeline (joblib), path or s3://"
    ),
    onnx: str | None = typer.Option(None, help="an ONNX file instead of a pipeline"),
    schema: str | None = typer.Option(None, help="input schema JSON (required with --onnx)"),
    train: str | None = typer.Option(None, help="training data (CSV/Parquet, path or s3://)"),
    valid: str | None = typer.Option(None, help="validation data (CSV/Parquet, path or s3://)"),
    target: str = typer.Option("target", help="the 0/1 label column of the data"),
    segment: list[str] = SEGMENT_OPTION,
    feature: list[str] = FEATURE_OPTION,
    schema_overrides: str | None = SCHEMA_OVERRIDES_OPTION,
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="score at which label=1"),
    parity_tolerance: float = typer.Option(1e-5, min=0.0, help="max |ONNX - source| allowed"),
    reference_column: str | None = typer.Option(
        None, help="with --onnx: the source model's scores in the validation data (parity)"
    ),
    description: str | None = typer.Option(None, help="free text on the card"),
    code_dir: Path = CODE_DIR_OPTION,
    entry_point: str | None = typer.Option(None, help="training entry point (lineage)"),
    lock_file: Path | None = LOCK_FILE_OPTION,
    trainer: Path | None = TRAINER_OPTION,
    trainer_lock: Path | None = TRAINER_LOCK_OPTION,
    reason: str = REASON_OPTION,
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a new version: convert, check parity, measure and upload a candidate here; the
    governance API registers it with its lineage, as you."""
    from ferry_core.onboarding.use_cases import RegistrationRequest
    from ferry_core.retrain.manual import upload_candidate

    request = RegistrationRequest(
        name=name,
        pipeline=pipeline,
        onnx=onnx,
        schema=schema,
        train=train,
        valid=valid,
        target=target,
        segments=parse_segments(segment),
        features=parse_features(feature),
        schema_overrides=schema_overrides,
        threshold=threshold,
        parity_tolerance=parity_tolerance,
        reference_column=reference_column,
        description=description,
        code_dir=code_dir,
        entry_point=entry_point,
        lock_file=lock_file,
        trainer=trainer,
        trainer_lock=trainer_lock,
        reason=reason,
    )
    problem = request.problem()
    if problem:
        fail("register", problem)
    with reporting("register"), session(env) as p:
        bundle = upload_candidate(
            request, p.env.client("s3"), p.env.output("ModelBucketName"), p.caller()
        )
        body = {"model": name, "candidate": bundle.spec.run_id, "reason": reason}
        outcome = p.api.call("register", body)
        card = p.reader.card(name, outcome["version"])
        data = {"card": card.model_dump(mode="json"), "outcome": _outcome(outcome)}

        def render(c: Console) -> None:
            c.print(card_table(card, p.reader.version_record(card.name, card.version)))
            if card.validation is None:
                c.print(
                    "[yellow]registered WITHOUT validation results (no parity reference): it "
                    "cannot be promoted until the validation pipeline records them[/]"
                )
            print_warnings(c, outcome["warnings"])

        emit(data, as_json, render)


# -- models, show ----------------------------------------------------------------------------
def models(env: str = ENV_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List models with their production and staging versions."""
    with reporting("models"), session(env) as p:
        listing = p.reader.models()

        def render(c: Console) -> None:
            t = Table("model", "production", "staging", "latest version", title=f"models ({env})")
            for m in listing:
                st = m["stages"]
                t.add_row(
                    m["name"],
                    *(f"v{st[s]}" if st[s] else "-" for s in STAGE_CHOICES),
                    str(m["latest_version"]),
                )
            c.print(t)

        emit({"models": listing}, as_json, render)


def show(
    model: str = typer.Argument(...),
    version: int | None = typer.Option(None, "--version", min=1, help="one version's card"),
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """A model's versions, stage pointers and stage history; or one version's card."""
    from ferry_core.errors import ModelNotFound

    with reporting("show"), session(env) as p:
        r = p.reader
        if not r.model_exists(model):
            raise ModelNotFound(f"no model named {model!r}")
        if version is not None:
            card = r.card(model, version)
            record = r.version_record(model, version)
            emit(
                {"card": card.model_dump(mode="json"), "registry": record},
                as_json,
                lambda c: c.print(card_table(card, record)),
            )
            return
        cards = {c.version: c for c in r.versions(model)}
        records = {int(x["version"]): x for x in r.version_records(model)}
        history = {s: r.history(model, s) for s in STAGE_CHOICES}
        stages = {s: (h[-1].version if h else None) for s, h in history.items()}
        versions = [
            {
                "version": v,
                "status": records[v].get("status"),
                "registered_at": c.lineage.registered_at,
                "registered_by": c.lineage.registered_by,
                "sha256": c.artifact.sha256,
                "validation_passed": bool(c.validation and c.validation.get("passed")),
                "gate": records[v].get("validation"),
                "auc": c.metrics.get("overall", {}).get("auc"),
                "approved_by": records[v].get("approved_by"),
            }
            for v, c in sorted(cards.items())
        ]
        data = {
            "model": model,
            "stages": stages,
            "versions": versions,
            "history": {s: [h.__dict__ for h in hs] for s, hs in history.items()},
        }

        def render(c: Console) -> None:
            t = Table(
                "version",
                "status",
                "live",
                "validation",
                "gate",
                "auc",
                "sha256",
                "registered",
                title=f"{model} ({env})",
            )
            for v in versions:
                live = ", ".join(s for s, n in stages.items() if n == v["version"])
                auc = f"{v['auc']:.3f}" if v["auc"] is not None else "-"
                t.add_row(
                    f"v{v['version']}",
                    str(v["status"]),
                    live or "-",
                    "passed" if v["validation_passed"] else "[yellow]none/failed[/]",
                    _gate_cell(v["gate"]),
                    auc,
                    v["sha256"][:12] + "…",
                    f"{v['registered_at']} by {v['registered_by']}",
                )
            c.print(t)
            for s, hs in history.items():
                if not hs:
                    continue
                h = Table(
                    "rev",
                    "version",
                    "live from",
                    "until",
                    "event",
                    "by",
                    "reason",
                    title=f"{s} history",
                )
                for x in hs:
                    h.add_row(
                        str(x.revision),
                        f"v{x.version}",
                        x.since,
                        x.until or "now",
                        x.event,
                        x.by,
                        x.reason,
                    )
                c.print(h)

        emit(data, as_json, render)


def _gate_cell(gate: dict[str, Any] | None) -> str:
    """The latest gate result of a version in a few characters (`ferry validate` records one)."""
    if not gate:
        return "-"
    against = gate.get("champion_version")
    champion = f"v{against}" if against is not None else "none"
    return f"{'passed' if gate.get('passed') else '[red]FAILED[/]'} vs {champion}"


# -- stage moves and decisions ---------------------------------------------------------------
def _outcome(answer: dict[str, Any]) -> dict[str, Any]:
    """The outcome as the API answered it, without the envelope's `ok`."""
    return {k: v for k, v in answer.items() if k != "ok"}


def _change(command: str, route: str, body: dict[str, Any], env: str, as_json: bool) -> None:
    """One governance change through the API, rendered as its outcome."""
    with reporting(command), session(env) as p:
        o = _outcome(p.api.call(route, body))
        emit(o, as_json, lambda c: print_outcome(c, o))


def promote(
    model: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1),
    to: str = typer.Option("production", "--to", help="production or staging"),
    expect: int | None = typer.Option(
        None, "--expect", min=1, help="only if the stage is currently this version"
    ),
    reason: str = REASON_OPTION,
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Point a stage at a version (integrity, validation and approval checked first)."""
    if to not in STAGE_CHOICES:
        fail("promote", f"--to must be production or staging, not {to!r}")
    body: dict[str, Any] = {"model": model, "version": version, "reason": reason}
    if expect is not None:
        body["expected_version"] = expect
    _change("promote", f"promote/{to}", body, env, as_json)


def rollback(
    model: str = typer.Argument(...),
    stage: str = typer.Option("production", "--stage", help="production or staging"),
    reason: str = REASON_OPTION,
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Return a stage to the version that was live before the current one."""
    if stage not in STAGE_CHOICES:
        fail("rollback", f"--stage must be production or staging, not {stage!r}")
    _change("rollback", f"rollback/{stage}", {"model": model, "reason": reason}, env, as_json)


def _decision(command: str) -> Callable[..., None]:
    def run(
        model: str = typer.Argument(...),
        version: int = typer.Argument(..., min=1),
        reason: str = REASON_OPTION,
        env: str = ENV_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        # approve/reject also resume a retraining run waiting on this decision (server-side)
        body = {"model": model, "version": version, "reason": reason}
        _change(command, command, body, env, as_json)

    run.__doc__ = {
        "archive": "Retire a version (kept for the record, can no longer go live).",
        "approve": "Record an approval of a version (required before production where configured).",
        "reject": "Record a rejection of a version (it can never be promoted afterwards).",
    }[command]
    return run


# -- audit ------------------------------------------------------------------------------------
class AuditGroup(TyperGroup):
    """`ferry audit MODEL` lists; `ferry audit verify [MODEL]` verifies."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().resolve_command(ctx, args)


audit_app = typer.Typer(
    cls=AuditGroup,
    no_args_is_help=True,
    help="The hash-chained audit trail: `ferry audit MODEL`, `ferry audit verify [MODEL]`.",
)


@audit_app.command("list")
def audit_list(
    model: str = typer.Argument(...),
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Every audit entry of a model, oldest first."""
    with reporting("audit"), session(env) as p:
        entries = p.audit.entries(model)
        if not entries:
            fail("audit", f"no audit entries for {model!r}")

        def render(c: Console) -> None:
            t = Table(
                "seq",
                "at",
                "event",
                "version",
                "actor",
                "before → after",
                "reason",
                "hash",
                title=f"audit trail of {model} ({env})",
            )
            for e in entries:
                t.add_row(
                    str(e.seq),
                    e.at,
                    e.event,
                    f"v{e.version}" if e.version else "-",
                    e.actor,
                    f"{short_json(e.before)} → {short_json(e.after)}",
                    e.reason,
                    e.hash[:12] + "…",
                )
            c.print(t)

        emit([e.as_dict() for e in entries], as_json, render)


@audit_app.command("verify")
def audit_verify(
    model: str | None = typer.Argument(None, help="one model (default: every model)"),
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Prove every chain intact (hashes, sequence, links, Object Lock anchors) or name the
    first broken, missing or altered entry."""
    from ferry_core.audit.chain import verify_all

    with reporting("audit verify"), session(env) as p:
        reports = verify_all(p.audit, [model] if model else None)
        if model and reports[0].entries == 0 and reports[0].anchors == 0:
            fail("audit verify", f"no audit entries for {model!r}")

        def render(c: Console) -> None:
            t = Table(
                "model", "entries", "anchors", "head", "verdict", title=f"audit verify ({env})"
            )
            for r in reports:
                t.add_row(
                    r.model,
                    str(r.entries),
                    str(r.anchors),
                    f"{r.head_seq}: {r.head_hash[:12]}…",
                    "[green]intact" if r.ok else f"[red]{r.first_problem}",
                )
            c.print(t)

        emit([r.as_dict() for r in reports], as_json, render)
    bad = [r for r in reports if not r.ok]
    if bad:
        fail("audit verify", bad[0].first_problem or "chain broken")


def register_commands(app: typer.Typer) -> None:
    """Add the governance commands to the `ferry` app."""
    app.command("register")(register)
    app.command("models")(models)
    app.command("show")(show)
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    for name in ("archive", "approve", "reject"):
        app.command(name)(_decision(name))
    app.add_typer(audit_app, name="audit")
