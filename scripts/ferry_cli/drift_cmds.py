"""`ferry drift MODEL`: the latest drift report as a table (or JSON), and a PNG of the drift.

Reports are written by the drift function beside the capture
(`capture/reports/{model}/latest.json` in the data bucket, ferry_core/monitoring/capture.py);
`--run` computes one now with the environment's thresholds (the same `run_drift` the function runs).
`--plot` draws baseline vs current shares over the baseline's buckets for the most drifted
features (matplotlib, Agg backend: no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ferry_cli.environments import Environment, EnvironmentUnavailable, resolve
from ferry_core.errors import FerryError

STATUS_STYLE = {"ok": "green", "warn": "yellow", "alarm": "bold red", "insufficient_data": "dim"}


def thresholds_for(env_name: str) -> tuple[Any, float]:
    """(DriftThresholds, window hours) of an environment; `local` uses dev's settings."""
    from ferry_core.monitoring.drift import DriftThresholds
    from infra.config import ENVIRONMENTS

    c = ENVIRONMENTS.get(env_name, ENVIRONMENTS["dev"])
    return DriftThresholds(c.drift_psi_warn, c.drift_psi_alarm, c.drift_min_samples), float(
        c.drift_window_hours
    )


def run_drift_now(
    s3: Any,
    dynamodb: Any,
    bucket: str,
    registry_table: str,
    model: str,
    *,
    thresholds: Any,
    window_hours: float,
    version: int | None = None,
) -> dict[str, Any]:
    """Compute and write a drift report now (what the scheduled function does); the demo's step."""
    from ferry_core.monitoring.drift import run_drift
    from ferry_core.registry.reader import RegistryReader

    registry = RegistryReader(dynamodb, registry_table, 0)
    report = run_drift(
        s3,
        bucket,
        registry,
        model,
        window_hours=window_hours,
        thresholds=thresholds,
        version=version,
    )
    return report.as_dict()


def render_report(report: dict[str, Any], console: Console) -> None:
    """The report as a Rich table: one row per feature, worst first."""
    verdict = report["verdict"]
    th = report["thresholds"]
    console.print(
        f"[bold]{report['model']}[/] v{report['version']}  window {report['window_start']} → "
        f"{report['window_end']}  rows {report['rows']:,}  verdict "
        f"[{STATUS_STYLE.get(verdict, '')}]{verdict}[/]"
    )
    if verdict == "insufficient_data":
        console.print(
            f"fewer than {th['min_samples']:,} captured rows in the window: no verdict "
            "(send more traffic, widen the window or raise the capture rate)"
        )
        return
    table = Table(title=f"PSI warn ≥ {th['psi_warn']}, alarm ≥ {th['psi_alarm']} (KS: reported)")
    for col, justify in (
        ("feature", "left"),
        ("kind", "left"),
        ("PSI", "right"),
        ("KS", "right"),
        ("status", "left"),
        ("non-null", "right"),
        ("largest shift", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for f in report["features"]:
        name = "score" if f["feature"] == "__score__" else f["feature"]
        worst = max(f["buckets"], key=lambda b: abs(b["actual"] - b["expected"]))
        shift = f"{worst['bucket']}: {worst['expected']:.1%} → {worst['actual']:.1%}"
        status = f["status"]
        table.add_row(
            name,
            f["kind"],
            f"{f['psi']:.4f}",
            "—" if f["ks"] is None else f"{f['ks']:.4f}",
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            f"{f['non_null']:,}",
            shift,
        )
    console.print(table)
    if report.get("other_version_rows"):
        console.print(f"{report['other_version_rows']:,} rows of other versions were not compared")


def plot_report(report: dict[str, Any], path: Path, top: int = 4) -> Path:
    """Baseline vs current share per bucket for the `top` most drifted features, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    features = report["features"][:top]
    if not features:
        raise ValueError("the report has no feature statistics (insufficient data)")
    cols = 2 if len(features) > 1 else 1
    rows = (len(features) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.2 * rows), squeeze=False)
    for ax, f in zip(axes.flat, features, strict=False):
        buckets = [b for b in f["buckets"] if b["expected"] > 0 or b["actual"] > 0]
        x = np.arange(len(buckets))
        ax.bar(x - 0.2, [b["expected"] for b in buckets], 0.4, label="baseline", color="#8c9eb5")
        ax.bar(x + 0.2, [b["actual"] for b in buckets], 0.4, label="current", color="#d9603b")
        ax.set_xticks(x, [b["bucket"] for b in buckets], rotation=35, ha="right", fontsize=8)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        name = "score" if f["feature"] == "__score__" else f["feature"]
        ks = "" if f["ks"] is None else f"  KS {f['ks']:.3f}"
        ax.set_title(f"{name}: PSI {f['psi']:.3f}{ks}  ({f['status']})", fontsize=11)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(features) :]:
        ax.axis("off")
    fig.suptitle(
        f"{report['model']} v{report['version']}: baseline vs current, "
        f"{report['rows']:,} rows, {report['window_start']} → {report['window_end']}",
        fontsize=12,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fail(message: str) -> typer.Exit:
    typer.echo(f"ferry drift: {message}", err=True)
    return typer.Exit(1)


def register_drift_commands(app: typer.Typer) -> None:
    @app.command("drift")
    def drift(
        model: str = typer.Argument(..., help="model name"),
        env: str = typer.Option("local", "--env", help="local | dev | prod"),
        json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
        plot: bool = typer.Option(False, "--plot", help="write a PNG of the most drifted features"),
        out: str | None = typer.Option(None, "--out", help="PNG path (default drift-MODEL.png)"),
        top: int = typer.Option(4, min=1, max=12, help="features in the plot"),
        run: bool = typer.Option(False, "--run", help="compute a report now instead"),
        version: int | None = typer.Option(None, help="with --run: a version, not production"),
    ) -> None:
        """Show the latest drift report of MODEL (PSI and KS per feature and for the score)."""
        from ferry_core.monitoring.capture import read_report

        try:
            environment: Environment = resolve(env)
            s3 = environment.client("s3")
            bucket = environment.output("DataBucketName")
            if run:
                thresholds, window = thresholds_for(env)
                report = run_drift_now(
                    s3,
                    environment.client("dynamodb"),
                    bucket,
                    environment.output("RegistryTableName"),
                    model,
                    thresholds=thresholds,
                    window_hours=window,
                    version=version,
                )
            else:
                report = read_report(s3, bucket, model)
        except (EnvironmentUnavailable, FerryError) as exc:
            raise _fail(str(exc)) from exc
        except Exception as exc:  # botocore: credentials, network, access denied
            raise _fail(f"{type(exc).__name__}: {exc}") from exc
        if json_out:
            typer.echo(json.dumps(report, indent=2))
        else:
            render_report(report, Console())
        if plot:
            try:
                path = plot_report(report, Path(out or f"drift-{model}.png"), top=top)
            except ValueError as exc:
                raise _fail(str(exc)) from exc
            typer.echo(f"wrote {path}", err=json_out)
