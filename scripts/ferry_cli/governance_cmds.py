"""`ferry register|models|show|promote|rollback|archive|approve|reject|audit`.

Every command resolves `--env` once (ferry_cli.environments), calls the core
(ferry_core.registry: governance, registration, intake; ferry_core.audit) and renders: Rich
tables by default, `--json` for scripts. Any failure prints `ferry CMD: one-line reason` on
stderr, exit 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ferry_cli.environments import Environment, EnvironmentUnavailable, resolve

LOCK_FILES = (
    "uv.lock",
    "poetry.lock",
    "requirements.lock",
    "requirements/dev.txt",
    "requirements.txt",
)
STAGE_CHOICES = ("production", "staging")
CWD = Path()
NO_SEGMENTS: list[str] = []  # typer copies list defaults; never mutated

ENV_OPTION = typer.Option("local", "--env", help="local (the local platform), dev or prod")
JSON_OPTION = typer.Option(False, "--json", help="print JSON instead of tables")
ACTOR_OPTION = typer.Option(None, "--actor", help="who acts (default: your AWS identity or user)")
REASON_OPTION = typer.Option("", "--reason", help="why: recorded in the audit trail")
SEGMENT_OPTION = typer.Option(NO_SEGMENTS, help="metrics per segment: NAME=FEATURE[:EDGES]")
CODE_DIR_OPTION = typer.Option(CWD, help="the training code's git checkout (lineage)")
LOCK_FILE_OPTION = typer.Option(None, help="dependency lock file (lineage; default: found)")


def _console() -> Console:
    return Console(width=140)


def fail(command: str, message: str) -> NoReturn:
    first = " ".join(str(message).split())  # one line, whatever the error carried
    typer.echo(f"ferry {command}: {first}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def reporting(command: str) -> Iterator[None]:
    """Turn every expected failure into a one-line reason and exit status 1."""
    from ferry_core.errors import FerryError

    try:
        yield
    except typer.Exit:
        raise
    except FerryError as exc:
        fail(command, exc.message)
    except EnvironmentUnavailable as exc:
        fail(command, str(exc))
    except (ClientError, BotoCoreError) as exc:
        fail(command, f"AWS call failed: {exc}")


def emit(data: Any, as_json: bool, render: Callable[[Console], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render(_console())


@dataclass
class Platform:
    """The core objects for one resolved environment (built lazily, clients shared)."""

    env: Environment
    cache_dir: str

    @cached_property
    def governance(self) -> Any:
        from ferry_core.registry.governance import connect

        return connect(
            dynamodb=self.env.client("dynamodb"),
            s3=self.env.client("s3"),
            events=self.env.client("events"),
            registry_table=self.env.output("RegistryTableName"),
            audit_table=self.env.output("AuditTableName"),
            anchor_bucket=self.env.output("AuditAnchorBucketName"),
            cache_dir=self.cache_dir,
            env=self.env.name,
            approval_required=self.env.approval_required,
        )

    @property
    def reader(self) -> Any:
        return self.governance.reader

    def decide(self, model: str, version: int, approved: bool, actor: str, reason: str) -> Any:
        """Approve or reject, then resume the retraining run waiting on it
        (ferry_core.retrain.approval)."""
        from ferry_core.retrain.approval import ApprovalGate, decide

        gate = ApprovalGate(self.env.client("dynamodb"), self.env.output("RegistryTableName"))
        outcome, _ = decide(
            self.governance,
            gate,
            self.env.client("stepfunctions"),
            model,
            version,
            approved=approved,
            actor=actor,
            reason=reason,
        )
        return outcome

    @property
    def audit(self) -> Any:
        return self.governance.audit

    def actor(self, given: str | None) -> str:
        if given:
            return given
        if self.env.endpoint_url is None:  # a deployed environment: the AWS identity acting
            with contextlib.suppress(ClientError, BotoCoreError):
                return self.env.client("sts").get_caller_identity()["Arn"]
        return getpass.getuser()


@contextlib.contextmanager
def platform(env_name: str) -> Iterator[Platform]:
    with tempfile.TemporaryDirectory(prefix="ferry-cli-") as cache:
        yield Platform(resolve(env_name), cache)


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


def _lock_file(code_dir: Path, given: Path | None) -> Path | None:
    if given:
        return given
    return next((code_dir / f for f in LOCK_FILES if (code_dir / f).is_file()), None)


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
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="score at which label=1"),
    parity_tolerance: float = typer.Option(1e-5, min=0.0, help="max |ONNX - source| allowed"),
    reference_column: str | None = typer.Option(
        None, help="with --onnx: the source model's scores in the validation data (parity)"
    ),
    description: str | None = typer.Option(None, help="free text on the card"),
    code_dir: Path = CODE_DIR_OPTION,
    entry_point: str | None = typer.Option(None, help="training entry point (lineage)"),
    lock_file: Path | None = LOCK_FILE_OPTION,
    actor: str | None = ACTOR_OPTION,
    reason: str = REASON_OPTION,
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a new version: convert, check parity, measure, upload, record with lineage."""
    from ferry_core.registry import intake
    from ferry_core.registry.lineage import capture
    from ferry_core.registry.registration import register as register_version

    if (pipeline is None) == (onnx is None):
        fail("register", "give exactly one of --pipeline or --onnx")
    if pipeline and not (train and valid):
        fail("register", "--pipeline needs --train and --valid data")
    if onnx and not schema:
        fail("register", "--onnx needs --schema")
    with reporting("register"), platform(env) as p:
        s3 = p.env.client("s3")
        segments = parse_segments(segment)
        given_schema = intake.read_schema(schema, s3) if schema else None
        train_df = train_ref = valid_df = valid_ref = None
        if train:
            train_df, train_ref = intake.read_table(train, s3)
        if valid:
            valid_df, valid_ref = intake.read_table(valid, s3)
        if pipeline:
            model = intake.load_pipeline(pipeline, s3)
            built = intake.build_from_pipeline(
                model,
                train_df,
                valid_df,
                target,
                schema=given_schema,
                segments=segments,
                threshold=threshold,
                parity_tolerance=parity_tolerance,
                names=(train or "", valid or ""),
            )
        else:
            onnx_bytes, _ = intake.read_bytes(onnx, s3)
            built = intake.build_from_onnx(
                onnx_bytes,
                given_schema,
                valid=valid_df,
                train=train_df,
                target=target,
                reference_column=reference_column,
                segments=segments,
                threshold=threshold,
                parity_tolerance=parity_tolerance,
            )
        who = p.actor(actor)
        data_ref = train_ref or valid_ref
        lineage = capture(
            code_dir.resolve(),
            entry_point or (pipeline or onnx or ""),
            _lock_file(code_dir.resolve(), lock_file),
            training_data_uri=data_ref.uri if data_ref else None,
            training_data_sha256=data_ref.sha256 if data_ref else None,
            training_data_version=data_ref.s3_version_id if data_ref else None,
            actor=who,
        )
        trained_at = intake.file_mtime_iso(pipeline or onnx or "")
        if trained_at:
            lineage = lineage.model_copy(update={"trained_at": trained_at})
        evidence = {"validation_data": valid_ref.as_dict()} if valid_ref else None
        card, outcome = register_version(
            built,
            name,
            s3,
            p.env.output("ModelBucketName"),
            p.governance,
            lineage,
            who,
            description=description,
            reason=reason,
            evidence=evidence,
        )
        data = {"card": card.model_dump(mode="json"), "outcome": outcome.as_dict()}

        def render(c: Console) -> None:
            c.print(_card_table(card, p.reader.version_record(card.name, card.version)))
            if card.validation is None:
                c.print(
                    "[yellow]registered WITHOUT validation results (no parity reference): it "
                    "cannot be promoted until the validation pipeline records them[/]"
                )
            _warnings(c, outcome.warnings)

        emit(data, as_json, render)


def _warnings(c: Console, warnings: list[str]) -> None:
    for w in warnings:
        c.print(f"[yellow]warning:[/] {w}")


def _card_table(card: Any, record: dict[str, Any]) -> Table:
    t = Table("field", "value", title=f"{card.name} v{card.version}", show_lines=False)
    a, lin = card.artifact, card.lineage
    t.add_row("status", str(record.get("status", card.status)))
    if record.get("approved_by"):
        t.add_row("approved by", f"{record['approved_by']} at {record.get('status_at')}")
    t.add_row(
        "artifact", f"{a.uri}\nS3 version {a.s3_version_id}\nsha256 {a.sha256}\n{a.size:,} bytes"
    )
    t.add_row("features", ", ".join(f"{f.name}:{f.type}" for f in card.input_schema.features))
    t.add_row("threshold", str(card.output.threshold))
    t.add_row("git commit", f"{lin.git_commit} (dirty: {lin.git_dirty})")
    t.add_row(
        "training data",
        f"{lin.training_data_uri}\nsha256 {lin.training_data_sha256}"
        + (f"\nS3 version {lin.training_data_version}" if lin.training_data_version else ""),
    )
    t.add_row("dependency lock", str(lin.dependency_lock_sha256))
    t.add_row(
        "python / libraries",
        f"{lin.python_version} / "
        + ", ".join(f"{k} {v}" for k, v in sorted(lin.libraries.items())),
    )
    t.add_row("entry point", str(lin.entry_point))
    t.add_row("trained", f"{lin.trained_at} by {lin.trained_by}")
    t.add_row("registered", f"{lin.registered_at} by {lin.registered_by}")
    overall = card.metrics.get("overall", {})
    if overall:
        t.add_row("metrics", ", ".join(f"{k} {v:.4g}" for k, v in sorted(overall.items())))
    for seg, groups in card.metrics.get("segments", {}).items():
        t.add_row(
            f"segment {seg}",
            "\n".join(
                f"{g}: auc {m.get('auc', float('nan')):.3f} ({m['rows']} rows)"
                for g, m in groups.items()
            ),
        )
    v = card.validation
    if v is None:
        t.add_row("validation", "[yellow]none recorded: cannot be promoted[/]")
    else:
        checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'}" for c in v["checks"])
        t.add_row("validation", f"{'passed' if v['passed'] else 'FAILED'} ({checks})")
    return t


# -- models, show ----------------------------------------------------------------------------
def models(env: str = ENV_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List models with their production and staging versions."""
    with reporting("models"), platform(env) as p:
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

    with reporting("show"), platform(env) as p:
        r = p.reader
        if not r.model_exists(model):
            raise ModelNotFound(f"no model named {model!r}")
        if version is not None:
            card = r.card(model, version)
            record = r.version_record(model, version)
            emit(
                {"card": card.model_dump(mode="json"), "registry": record},
                as_json,
                lambda c: c.print(_card_table(card, record)),
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


# -- stage moves and decisions ---------------------------------------------------------------
def _outcome(c: Console, o: Any) -> None:
    if o.stage:
        before = o.before.get(o.stage)
        c.print(
            f"[green]✔[/] {o.model} {o.stage}: "
            f"{'v' + str(before) if before else 'none'} → v{o.after[o.stage]}"
            + (f" (revision {o.revision})" if o.revision else "")
        )
    else:
        c.print(f"[green]✔[/] {o.model} v{o.version}: {o.before['status']} → {o.after['status']}")
    if o.entry:
        c.print(
            f"  audit entry {o.entry.seq}, hash {o.entry.hash[:16]}…; event {o.event_id or '-'}"
        )
    _warnings(c, o.warnings)


def promote(
    model: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1),
    to: str = typer.Option("production", "--to", help="production or staging"),
    expect: int | None = typer.Option(
        None, "--expect", min=1, help="only if the stage is currently this version"
    ),
    actor: str | None = ACTOR_OPTION,
    reason: str = REASON_OPTION,
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Point a stage at a version (integrity, validation and approval checked first)."""
    if to not in STAGE_CHOICES:
        fail("promote", f"--to must be production or staging, not {to!r}")
    with reporting("promote"), platform(env) as p:
        kwargs = {"expected_version": expect} if expect is not None else {}
        o = p.governance.promote(model, version, to, actor=p.actor(actor), reason=reason, **kwargs)
        emit(o.as_dict(), as_json, lambda c: _outcome(c, o))


def rollback(
    model: str = typer.Argument(...),
    stage: str = typer.Option("production", "--stage", help="production or staging"),
    actor: str | None = ACTOR_OPTION,
    reason: str = REASON_OPTION,
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Return a stage to the version that was live before the current one."""
    if stage not in STAGE_CHOICES:
        fail("rollback", f"--stage must be production or staging, not {stage!r}")
    with reporting("rollback"), platform(env) as p:
        o = p.governance.rollback(model, actor=p.actor(actor), reason=reason, stage=stage)
        emit(o.as_dict(), as_json, lambda c: _outcome(c, o))


def _decision(command: str) -> Callable[..., None]:
    def run(
        model: str = typer.Argument(...),
        version: int = typer.Argument(..., min=1),
        actor: str | None = ACTOR_OPTION,
        reason: str = REASON_OPTION,
        env: str = ENV_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        with reporting(command), platform(env) as p:
            if command == "archive":
                o = p.governance.archive(model, version, actor=p.actor(actor), reason=reason)
            else:  # approve/reject also resume a retraining run waiting on this decision
                o = p.decide(model, version, command == "approve", p.actor(actor), reason)
            emit(o.as_dict(), as_json, lambda c: _outcome(c, o))

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
    with reporting("audit"), platform(env) as p:
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
                    f"{_short(e.before)} → {_short(e.after)}",
                    e.reason,
                    e.hash[:12] + "…",
                )
            c.print(t)

        emit([e.as_dict() for e in entries], as_json, render)


def _short(value: Any) -> str:
    return "-" if value is None else json.dumps(value, sort_keys=True)


@audit_app.command("verify")
def audit_verify(
    model: str | None = typer.Argument(None, help="one model (default: every model)"),
    env: str = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Prove every chain intact (hashes, sequence, links, Object Lock anchors) or name the
    first broken, missing or altered entry."""
    from ferry_core.audit.chain import verify_all

    with reporting("audit verify"), platform(env) as p:
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
    """Add the governance commands to the `ferry` app (one call from ferry_cli.main)."""
    app.command("register")(register)
    app.command("models")(models)
    app.command("show")(show)
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    for name in ("archive", "approve", "reject"):
        app.command(name)(_decision(name))
    app.add_typer(audit_app, name="audit")


# -- for `ferry demo` (the lead integrates these steps into ferry_cli.demo) ---------------------
def demo_steps(
    console: Console,
    aws: dict[str, Any],
    res: Any,
    built: Any,
    expect: Callable[[bool, str], None],
    served_version: Callable[[], int] | None = None,
    model: str = "credit-risk",
) -> list[tuple[str, Callable[[], str]]]:
    """(title, step) pairs showing registration, promotion, rollback and audit verify.

    `aws` holds `s3` and `dynamodb` clients (and optionally `events`), `res` the
    StackResources; `expect(cond, message)` fails a step; `served_version()` (optional) asks
    the scoring API which version production serves, to show it follows the rollback.
    """
    from ferry_core.audit.table import AuditEntry
    from ferry_core.registry.governance import connect
    from ferry_core.registry.intake import build_from_onnx
    from ferry_core.registry.lineage import capture
    from ferry_core.registry.reader import RegistryReader
    from ferry_core.registry.registration import register as register_version
    from ferry_local.handlers import REPO_ROOT

    cache = tempfile.mkdtemp(prefix="ferry-demo-gov-")
    gov = connect(
        dynamodb=aws["dynamodb"],
        s3=aws["s3"],
        events=aws.get("events"),
        registry_table=res.registry_table,
        audit_table=res.audit_table,
        anchor_bucket=res.anchor_bucket,
        cache_dir=cache,
        env="local",
    )
    reader = RegistryReader(aws["dynamodb"], res.registry_table, pointer_ttl_seconds=0)

    def register_two() -> str:
        lineage = capture(
            REPO_ROOT,
            "ferry_core.retrain.builder:build_credit_risk",
            REPO_ROOT / "requirements/dev.txt",
            actor="demo",
        )
        cards = [
            register_version(built, model, aws["s3"], res.model_bucket, gov, lineage, "demo")[0]
            for _ in range(2)
        ]
        console.print(_card_table(cards[-1], reader.version_record(model, cards[-1].version)))
        expect(all(c.validation and c.validation["passed"] for c in cards), "validation missing")
        return (
            f"registered v{cards[0].version} and v{cards[1].version}, each with lineage, "
            "its own validation results and a `register` audit entry"
        )

    def promote_both() -> str:
        versions = sorted(c.version for c in reader.versions(model))[-2:]
        for v in versions:
            o = gov.promote(model, v, actor="demo", reason="release")
            _outcome(console, o)
        expect(reader.fresh_pointer(model, "production").version == versions[-1], "pointer")
        return f"production → v{versions[-1]} (stage history keeps v{versions[0]})"

    def refuse_unvalidated() -> str:
        bare = build_from_onnx(built.onnx_bytes, built.schema)
        card, _ = register_version(
            bare, model, aws["s3"], res.model_bucket, gov, capture(REPO_ROOT, "onnx"), "demo"
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
        _outcome(console, o)
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
        key = gov.audit.table.key(model, 2)
        original = aws["dynamodb"].get_item(TableName=res.audit_table, Key=key)["Item"]
        forged = dataclasses.replace(AuditEntry.from_item(original), actor="mallory").to_item()
        aws["dynamodb"].put_item(TableName=res.audit_table, Item=forged)
        caught = gov.audit.verify(model)
        console.print(f"after editing entry 2 in DynamoDB: [red]{caught.first_problem}[/]")
        aws["dynamodb"].put_item(TableName=res.audit_table, Item=original)
        expect(not caught.ok and caught.problems[0]["seq"] == 2, "tampering not caught")
        expect(gov.audit.verify(model).ok, "restored chain does not verify")
        return "audit chain verified against its Object Lock anchors; an edit is named"

    return [
        ("Register two versions with lineage and audit", register_two),
        ("Promote v1, then v2, to production", promote_both),
        ("Refuse a version without validation results", refuse_unvalidated),
        ("Roll production back to the previous version", roll_back),
        ("Verify the audit trail (and catch a forged entry)", verify),
    ]
