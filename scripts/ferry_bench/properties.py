"""The registry of reliability properties, the fast/long mode, and the report (table + JSON)."""

from __future__ import annotations

import importlib
import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The property modules, imported on demand (each pulls its own heavy imports).
MODULES = (
    "ferry_bench.bad_input",
    "ferry_bench.rows_accounted",
    "ferry_bench.transient_faults",
    "ferry_bench.registry_transitions",
    "ferry_bench.artifact_integrity",
    "ferry_bench.stack_lockdown",
    "ferry_bench.load_held",
)


@dataclass(frozen=True)
class Mode:
    """How big a run is: `fast` for the README test command, `long` for the full counts."""

    long: bool = False

    def size(self, fast: int, long: int) -> int:
        return long if self.long else fast

    @property
    def name(self) -> str:
        return "long" if self.long else "fast"


@dataclass
class PropertyResult:
    """What one property's run measured. `passed` means no violation was observed.

    `emulator_only` names the figures the local emulator produced itself (a 413 the local API
    builds, throttling by its gate, moto's queues and state-machine interpreter), with why: a
    figure that says what Ferry's code does on AWS is not among them.
    """

    number: int
    title: str
    mode: str
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    emulator_only: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


Check = Callable[[Mode], PropertyResult]


@dataclass(frozen=True)
class Property:
    number: int
    title: str
    check: Callable[[Mode, PropertyResult], None]


PROPERTIES: dict[int, Property] = {}
_MODULE_OF: dict[int, str] = {}  # number → the module that registered it


def prop(number: int, title: str) -> Callable[[Callable[[Mode, PropertyResult], None]], Check]:
    """Register `fn(mode, result)`: it fills `result.figures` and appends `result.violations`.

    The returned callable runs it with timing and turns an unexpected exception into a
    violation (so one broken property never hides the others' figures).
    """

    def wrap(fn: Callable[[Mode, PropertyResult], None]) -> Check:
        PROPERTIES[number] = Property(number, title, fn)
        _MODULE_OF[number] = fn.__module__

        def run(mode: Mode) -> PropertyResult:
            return _run(PROPERTIES[number], mode)

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run

    return wrap


def _run(p: Property, mode: Mode) -> PropertyResult:
    result = PropertyResult(p.number, p.title, mode.name)
    started = time.perf_counter()
    try:
        p.check(mode, result)
    except Exception as exc:  # reported as a violation with its cause, never swallowed
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result.violations.append(f"the check itself failed: {tb}")
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def load_all() -> None:
    for module in MODULES:
        importlib.import_module(module)


def select(names: Iterable[str]) -> list[int] | None:
    """Property numbers from `--only` words: a number, or its module's name (`bad_input`)."""
    load_all()
    by_name = {m.rsplit(".", 1)[-1]: n for n, m in _MODULE_OF.items()}
    wanted = [w.strip() for w in names if w.strip()]
    unknown = [w for w in wanted if not w.isdigit() and w not in by_name]
    if unknown:
        raise KeyError(f"no reliability property {unknown}; known: {sorted(by_name)}")
    return sorted({int(w) if w.isdigit() else by_name[w] for w in wanted}) or None


def run_properties(numbers: Iterable[int] | None, mode: Mode) -> list[PropertyResult]:
    """Run the properties numbered (all by default), in number order."""
    load_all()
    wanted = sorted(PROPERTIES) if numbers is None else sorted(set(numbers))
    unknown = [n for n in wanted if n not in PROPERTIES]
    if unknown:
        raise KeyError(f"no reliability property {unknown}; known: {sorted(PROPERTIES)}")
    return [_run(PROPERTIES[n], mode) for n in wanted]


EMULATOR_MARK = "[emulator]"


def _figures_text(figures: dict[str, Any], emulator_only: dict[str, str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    return "\n".join(
        f"{k}: {fmt(v)}" + (f" {EMULATOR_MARK}" if k in emulator_only else "")
        for k, v in figures.items()
    )


def _emulator_text(r: PropertyResult) -> str:
    """Why each emulator-only figure of `r` says nothing about AWS."""
    return "\n".join(f"{k}: {why}" for k, why in r.emulator_only.items() if k in r.figures)


def print_report(results: list[PropertyResult]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Ferry reliability and security properties", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("property")
    table.add_column(escape(f"figures ({EMULATOR_MARK}: emulator-only)"))
    table.add_column("emulator-only figures: why")
    table.add_column("verdict")
    table.add_column("s", justify="right")
    for r in results:
        verdict = (
            "[green]held[/]"
            if r.passed
            else "[red]BROKEN[/]\n" + "\n".join(f"- {v}" for v in r.violations[:5])
        )
        figures = escape(_figures_text(r.figures, r.emulator_only))
        why = escape(_emulator_text(r))
        table.add_row(str(r.number), r.title, figures, why, verdict, f"{r.seconds}")
    Console().print(table)


def write_json(results: list[PropertyResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "mode": results[0].mode if results else None,
        "passed": all(r.passed for r in results),
        "properties": [r.as_dict() for r in results],
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
