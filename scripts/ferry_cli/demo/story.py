"""`ferry demo`: the platform's main job, end to end, on this machine.

Start the local platform (the synthesized stack on moto, the real handlers), build a
credit-risk model, register and govern it, score over the HTTP API and in batch, refuse bad
requests, let drift start a retraining run; onboard a second model (another owner's, with its own
trainer) on the running platform, gate, promote and monitor it, and let its drift start a run
fitted by that trainer; retrain behind an approval gate and a canary, and verify the audit
trail from the command line. Each chapter is a module with its list of steps;
every step checks what it claims, and the demo exits non-zero if any did not hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ferry_cli.demo import (
    batch,
    drift,
    governance,
    platform_up,
    retraining,
    scoring,
    second_model,
)
from ferry_cli.demo.context import DemoContext, Step, StepFailed


def story(ctx: DemoContext, rows: int, estimators: int) -> list[Step]:
    """Every chapter's steps, in the order the story is told."""
    return [
        *platform_up.steps(ctx, rows, estimators),
        *governance.steps(ctx),
        *scoring.steps(ctx),
        *batch.steps(ctx),
        *retraining.data_steps(ctx),
        *drift.steps(ctx),
        *retraining.steps(ctx),
        *second_model.steps(ctx),
        *retraining.canary_steps(ctx),
        *governance.audit_steps(ctx),
    ]


@dataclass
class Demo:
    """Runs steps one after another, prints each outcome, stops at the first that fails."""

    console: Console
    results: list[tuple[str, bool, str, float]] = field(default_factory=list)

    def step(self, title: str, fn: Callable[[], str]) -> None:
        self.console.rule(f"[bold]{len(self.results) + 1}. {title}")
        started = time.perf_counter()
        try:
            outcome, ok = fn(), True
        except StepFailed as exc:
            outcome, ok = str(exc), False
        except Exception as exc:  # a step that crashed did not hold: say why, stop the story
            outcome, ok = f"{type(exc).__name__}: {exc}", False
        seconds = time.perf_counter() - started
        mark = "[green]✔" if ok else "[red]✘"
        self.console.print(f"{mark} {outcome}[/] [dim]({seconds:.1f}s)[/]")
        self.results.append((title, ok, outcome, seconds))
        if not ok:
            raise StepFailed(outcome)


def run_demo(
    cli: Any, console: Console | None = None, rows: int = 6000, estimators: int = 100
) -> bool:
    """Run every step of every chapter, in order; True when all held.

    `cli` is the `ferry` app: the story runs some commands as a user would type them.
    """
    console = console or Console()
    ctx = DemoContext(console, cli)
    demo = Demo(console)
    steps = story(ctx, rows, estimators)
    started = time.perf_counter()
    try:
        for title, fn in steps:
            demo.step(title, fn)
    except StepFailed:
        pass
    finally:
        if ctx.platform is not None:
            ctx.platform.stop(snapshot=False)
            console.print(f"[dim]function logs: {ctx.state['state_dir'] / 'logs'}[/]")
    summary = Table("step", "result", "seconds", title="ferry demo — summary")
    for title, ok, _outcome, seconds in demo.results:
        summary.add_row(title, "[green]ok" if ok else "[red]FAILED", f"{seconds:.1f}")
    console.print(summary)
    total = time.perf_counter() - started
    ok = all(ok for _, ok, _, _ in demo.results) and len(demo.results) == len(steps)
    verdict = "[green]every step held" if ok else "[red]a step did not hold"
    console.print(f"{verdict}[/] ({len(demo.results)}/{len(steps)} steps, {total:.0f} s)")
    return ok
