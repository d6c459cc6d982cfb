"""`ferry demo`: the platform's main job, end to end, on this machine.

Build a credit-risk model, register it in the model store and registry, promote it, and
score good and bad requests through the real scoring handler, showing what a client sees.
Every step checks what it claims; the demo exits non-zero if any did not hold.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ferry_cli.events import LambdaContext, http_api_event
from ferry_cli.functions import REPO_ROOT, load_handler
from ferry_cli.local_aws import clients, local_aws

MODEL = "credit-risk"


class StepFailed(Exception):
    pass


@dataclass
class Demo:
    console: Console
    results: list[tuple[str, bool, str, float]] = field(default_factory=list)

    def step(self, title: str, fn: Callable[[], str]) -> None:
        self.console.rule(f"[bold]{len(self.results) + 1}. {title}")
        started = time.perf_counter()
        try:
            outcome = fn()
            ok = True
        except StepFailed as exc:
            outcome, ok = str(exc), False
        seconds = time.perf_counter() - started
        mark = "[green]✔" if ok else "[red]✘"
        self.console.print(f"{mark} {outcome}[/] [dim]({seconds:.1f}s)[/]")
        self.results.append((title, ok, outcome, seconds))
        if not ok:
            raise StepFailed(outcome)


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


class FunctionLogs:
    """Function stdout (JSON logs, EMF metrics) goes to a file, as to CloudWatch Logs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("w")

    def __call__(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.redirect_stdout(self._fh)

    def close(self) -> None:
        self._fh.close()


def call(
    handler: Any,
    logs: FunctionLogs,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request through the real handler, as API Gateway would deliver it."""
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    event = http_api_event(method, path, raw, query, routes=handler.ROUTES)
    with logs():
        resp = handler.lambda_handler(event, LambdaContext("ferry-scoring"))
    return resp["statusCode"], json.loads(resp["body"])


def run_demo(console: Console | None = None, rows: int = 6000, estimators: int = 100) -> bool:
    """Run every step; True when all held."""
    from ferry_core.builder import build_credit_risk, generate_credit_data, records
    from ferry_core.lineage import capture
    from ferry_core.registration import register_built
    from ferry_core.registry import RegistryReader, RegistryWriter

    console = console or Console()
    demo = Demo(console)
    state: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache, local_aws(cache_dir=cache) as res:
        aws = clients()
        logs = FunctionLogs(REPO_ROOT / ".ferry" / "logs" / "scoring.log")
        with logs():  # the function's logger binds stdout when its module is imported
            handler = load_handler("scoring")
        handler.service.cache_clear()

        def build() -> str:
            built = build_credit_risk(rows=rows, n_estimators=estimators)
            state["built"] = built
            p, m = built.parity, built.metrics["overall"]
            t = Table("check", "value", title="candidate: credit-risk (GradientBoosting → ONNX)")
            t.add_row("features", ", ".join(f.name for f in built.schema.features))
            t.add_row("ONNX size", f"{len(built.onnx_bytes):,} bytes")
            t.add_row("parity rows", f"{p['rows']:,}")
            t.add_row(
                "max |ONNX − sklearn|", f"{p['max_abs_diff']:.2e} (tolerance {p['tolerance']:.0e})"
            )
            t.add_row("AUC / accuracy", f"{m['auc']:.3f} / {m['accuracy']:.3f}")
            for band, sm in built.metrics["segments"]["age_band"].items():
                t.add_row(
                    f"AUC age {band}", f"{sm.get('auc', float('nan')):.3f} ({sm['rows']} rows)"
                )
            console.print(t)
            expect(p["passed"], f"parity failed: {p['max_abs_diff']:.2e}")
            return "model trained, converted, parity within tolerance"

        def register() -> str:
            writer = RegistryWriter(aws["dynamodb"], res.registry_table)
            lineage = capture(
                REPO_ROOT,
                "ferry_core.builder:build_credit_risk",
                REPO_ROOT / "requirements/dev.txt",
            )
            card = register_built(
                state["built"], MODEL, aws["s3"], res.model_bucket, writer, lineage
            )
            state["writer"], state["card"] = writer, card
            t = Table("field", "value", title=f"model card: {card.name} v{card.version}")
            t.add_row("artifact", card.artifact.uri)
            t.add_row("S3 version id", str(card.artifact.s3_version_id))
            t.add_row("sha256", card.artifact.sha256)
            t.add_row("git commit", f"{card.lineage.git_commit} (dirty: {card.lineage.git_dirty})")
            t.add_row(
                "registered by", f"{card.lineage.registered_by} at {card.lineage.registered_at}"
            )
            console.print(t)
            expect(
                card.version == 1 and card.artifact.s3_version_id is not None,
                "registration incomplete",
            )
            return f"registered {MODEL} v{card.version}"

        def promote() -> str:
            ptr = state["writer"].set_stage(
                MODEL, "production", 1, None, actor="demo", reason="first release"
            )
            status, body = call(handler, logs, "GET", "/v1/models")
            console.print_json(data=body)
            expect(
                status == 200 and body["models"][0]["stages"]["production"] == 1,
                f"listing says {body}",
            )
            return f"production → v{ptr.version} (revision {ptr.revision})"

        def score() -> str:
            rows_ = records(generate_credit_data(5, seed=99), state["built"].schema)
            rows_[0]["debt_to_income"] = 3.7  # above the schema's 2.0: clipped with a warning
            status, body = call(
                handler, logs, "POST", f"/v1/models/{MODEL}/predict", {"instances": rows_}
            )
            expect(status == 200, f"expected 200, got {status}: {body}")
            t = Table(
                "#",
                "age",
                "income",
                "purpose",
                "dti",
                "score",
                "label",
                "warnings",
                title=f"POST /v1/models/{MODEL}/predict → 200 (v{body['version']})",
            )
            for i, (r, p) in enumerate(zip(rows_, body["predictions"], strict=True)):
                t.add_row(
                    str(i),
                    str(r["age"]),
                    str(r["annual_income"]),
                    str(r["purpose"]),
                    str(r["debt_to_income"]),
                    f"{p['score']:.4f}",
                    str(p["label"]),
                    "; ".join(w["message"] for w in p["warnings"]),
                )
            console.print(t)
            expect(
                len(body["predictions"]) == 5 and body["predictions"][0]["warnings"],
                "missing predictions or clip warning",
            )
            return f"5 applications scored by v{body['version']}, one clipped with a warning"

        def refuse() -> str:
            good = records(generate_credit_data(1, seed=5), state["built"].schema)[0]
            cases = [
                (
                    "wrong type, unknown category, unknown field",
                    "POST",
                    f"/v1/models/{MODEL}/predict",
                    {"instances": [{**good, "age": "forty", "purpose": "yacht", "colour": "red"}]},
                    None,
                    422,
                ),
                (
                    "out of range and missing",
                    "POST",
                    f"/v1/models/{MODEL}/predict",
                    {
                        "instances": [
                            {k: v for k, v in {**good, "age": 130}.items() if k != "employment"}
                        ]
                    },
                    None,
                    422,
                ),
                ("not JSON", "POST", f"/v1/models/{MODEL}/predict", "{oops", None, 400),
                (
                    "1,001 instances",
                    "POST",
                    f"/v1/models/{MODEL}/predict",
                    {"instances": [good] * 1001},
                    None,
                    413,
                ),
                (
                    "unknown model",
                    "POST",
                    "/v1/models/no-such-model/predict",
                    {"instances": [good]},
                    None,
                    404,
                ),
                ("unknown version", "GET", f"/v1/models/{MODEL}", None, {"version": "9"}, 404),
            ]
            t = Table(
                "request", "status", "error", "details", title="bad requests get clear errors"
            )
            for label, method, path, body, query, want in cases:
                status, resp = call(handler, logs, method, path, body, query)
                details = "\n".join(
                    f"[{d.get('instance')}] {d['field']}: {d['problem']} — {d['message']}"
                    for d in resp.get("details", [])
                )
                t.add_row(label, str(status), f"{resp['error']}: {resp['message']}", details)
                expect(
                    status == want and set(resp) == {"error", "message", "details"},
                    f"{label}: expected {want}, got {status} {resp}",
                )
            console.print(t)
            return f"{len(cases)} bad requests refused with the documented error shape"

        def card_and_openapi() -> str:
            status, card = call(handler, logs, "GET", f"/v1/models/{MODEL}")
            expect(status == 200 and card["version"] == 1, f"card: {status}")
            status, doc = call(handler, logs, "GET", "/v1/openapi.json")
            expect(
                status == 200 and "/v1/models/{model}/predict" in doc["paths"], "openapi document"
            )
            reader = RegistryReader(aws["dynamodb"], res.registry_table)
            expect(
                reader.resolve(MODEL).artifact.sha256 == card["artifact"]["sha256"],
                "registry disagrees",
            )
            digest = card["artifact"]["sha256"][:12]
            return f"card served (sha256 {digest}…), OpenAPI lists {len(doc['paths'])} paths"

        try:
            demo.step("Build a model where it is fitted", build)
            demo.step("Register it: artifact, card, lineage", register)
            demo.step("Promote v1 to production", promote)
            demo.step("Score applications through the real handler", score)
            demo.step("Refuse bad requests", refuse)
            demo.step("Serve the model card and the OpenAPI document", card_and_openapi)
        except StepFailed:
            pass
        finally:
            logs.close()
        console.print(f"[dim]function logs and EMF metrics: {logs.path.relative_to(REPO_ROOT)}[/]")
    summary = Table("step", "result", "seconds", title="ferry demo — summary")
    for title, ok, _outcome, seconds in demo.results:
        summary.add_row(title, "[green]ok" if ok else "[red]FAILED", f"{seconds:.1f}")
    console.print(summary)
    return all(ok for _, ok, _, _ in demo.results) and len(demo.results) == 6
