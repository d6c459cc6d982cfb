"""`ferry local up`: run the whole platform on this machine until Ctrl-C (DESIGN.md §4)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_STATE_DIR = Path(".ferry")

local_app = typer.Typer(
    no_args_is_help=True, help="The local platform: the stack on moto, with the real handlers."
)


def register_local_commands(app: typer.Typer) -> None:
    app.add_typer(local_app, name="local")


@local_app.command("up")
def up(
    api_port: int = typer.Option(8080, help="port of the HTTP API (0: any free port)"),
    aws_port: int = typer.Option(4566, help="port of the local AWS endpoint (0: any free port)"),
    state_dir: Annotated[
        Path, typer.Option(help="where local.json, the state snapshot and the logs go")
    ] = DEFAULT_STATE_DIR,
    fresh: bool = typer.Option(False, help="start empty instead of restoring the last snapshot"),
    alarm_interval: float = typer.Option(5.0, help="seconds between alarm evaluations"),
    alarm_time_scale: float = typer.Option(
        1.0, help="shrink alarm periods (0.1: a 5-minute period lasts 30 s)"
    ),
) -> None:
    """Start the platform, print its endpoints, keep serving until Ctrl-C, then snapshot."""
    from ferry_local.platform import LocalPlatform, PlatformError
    from ferry_local.template import TemplateError

    console = Console()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a supervisor stopping us
        signal.signal(signum, lambda *_: stopping.set())
    platform = LocalPlatform(
        state_dir=state_dir.resolve(),
        api_port=api_port,
        aws_port=aws_port,
        restore=not fresh,
        export_env=True,
        alarm_interval=alarm_interval,
        alarm_time_scale=alarm_time_scale,
        progress=lambda message: console.print(f"[dim]… {message}[/]"),
    )
    try:
        platform.start()
    except (PlatformError, TemplateError, OSError) as exc:
        typer.echo(f"ferry local up: {exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        _print_endpoints(console, platform)
        while not stopping.wait(0.5):
            pass
        console.print("[dim]… stopping: saving buckets and tables[/]")
    finally:
        platform.stop()
    console.print(f"[green]✔[/] state saved to {platform.snapshot_dir}")


def _print_endpoints(console: Console, platform: Any) -> None:
    table = Table(title=f"{platform.info()['stack']} is up", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("HTTP API", platform.api_url)
    table.add_row("AWS endpoint", platform.aws_endpoint_url)
    table.add_row("region", platform.region)
    for key, value in platform.outputs.items():
        table.add_row(key, str(value))
    table.add_row("functions", ", ".join(sorted(platform.report.functions)) or "-")
    table.add_row(
        "identities",
        ", ".join(sorted(platform.identities)) + " (credentials in the endpoints file)",
    )
    table.add_row("endpoints file", str(platform.local_json))
    if platform.restored:
        restored = ", ".join(f"{k} ({n})" for k, n in sorted(platform.restored.items()))
        table.add_row("restored", restored)
    startup = sum(platform.timings.values())
    table.add_row("started in", f"{startup:.1f}s")
    console.print(table)
    console.print(
        f"boto3: endpoint_url={platform.aws_endpoint_url!r}; "
        "`ferry … --env local` reads the endpoints file. Ctrl-C stops and saves."
    )
