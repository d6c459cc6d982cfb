"""Rich renderings shared by the governance commands and `ferry demo`: a version's card and
the outcome of a governance action."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table


def print_warnings(c: Console, warnings: list[str]) -> None:
    for w in warnings:
        c.print(f"[yellow]warning:[/] {w}")


def card_table(card: Any, record: dict[str, Any]) -> Table:
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
    if lin.trainer_sha256:
        t.add_row(
            "trainer",
            f"{lin.trainer_uri}\nsha256 {lin.trainer_sha256}\nlock {lin.trainer_lock_sha256}",
        )
    if lin.trained_on:
        t.add_row("trained on", lin.trained_on + (f"\n{lin.image_uri}" if lin.image_uri else ""))
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
    gate = record.get("validation")
    if gate:
        t.add_row("gate", gate_line(gate))
    return t


def gate_line(gate: dict[str, Any]) -> str:
    """A recorded gate result in one line: the verdict and the champion it was gated against."""
    against = gate.get("champion_version")
    champion = f"v{against}" if against is not None else "no production version"
    verdict = "passed" if gate.get("passed") else "[red]FAILED[/]"
    return f"{verdict} against {champion} ({gate.get('summary', '')})"


def gate_table(report: dict[str, Any], title: str) -> Table:
    """A validation gate's result: one row per check, passed or failed and why."""
    table = Table("check", "result", "detail", title=title)
    for check in report.get("checks", []):
        mark = "[green]passed" if check["passed"] else "[red]failed"
        table.add_row(check["name"], mark, str(check.get("message", ""))[:90])
    return table


def print_outcome(c: Console, o: dict[str, Any]) -> None:
    """A governance outcome as the API answers it (`Outcome.as_dict()`)."""
    stage, before, after = o.get("stage"), o.get("before") or {}, o.get("after") or {}
    if stage:
        was = before.get(stage)
        c.print(
            f"[green]✔[/] {o['model']} {stage}: "
            f"{'v' + str(was) if was else 'none'} → v{after[stage]}"
            + (f" (revision {o['revision']})" if o.get("revision") else "")
        )
    elif o["event"] == "register":
        c.print(f"[green]✔[/] {o['model']} v{o['version']} registered ({after.get('status')})")
    else:
        c.print(
            f"[green]✔[/] {o['model']} v{o['version']}: {before.get('status')} → "
            f"{after.get('status')}"
        )
    if o.get("audit_seq"):
        c.print(
            f"  audit entry {o['audit_seq']}, hash {str(o['audit_hash'])[:16]}…; "
            f"event {o.get('event_id') or '-'}"
        )
    print_warnings(c, o.get("warnings") or [])


def short_json(value: Any) -> str:
    return "-" if value is None else json.dumps(value, sort_keys=True)
