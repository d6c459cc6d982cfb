"""`ferry bench …`: benchmarks and reliability properties that print their figures.

The package ferry_bench loads only when a bench command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks and reliability properties that print their figures."
)


@bench_app.command("batch")
def bench_batch(
    rows: int = typer.Option(1_000_000, help="rows of the generated CSV"),
    chunk_rows: int = typer.Option(65_536, help="rows per validated and scored chunk"),
    estimators: int = typer.Option(100, help="boosting rounds of the benchmark model"),
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """Batch rows/s end to end vs raw onnxruntime on the same rows, and peak RSS."""
    from ferry_bench.batch_throughput import run_batch_bench

    ok = run_batch_bench(rows=rows, chunk_rows=chunk_rows, estimators=estimators, as_json=json_out)
    if not ok:
        typer.echo("ferry bench batch: a target was missed (see above)", err=True)
        raise typer.Exit(1)


@bench_app.command("scoring")
def bench_scoring(
    iterations: int = typer.Option(3000, help="timed requests per case"),
    cold_runs: int = typer.Option(5, help="fresh processes for the cold-start figures"),
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """Latency of raw onnxruntime vs the full handler (capture on and off) vs sklearn, the cold
    start, capture's cost per request and the gate's latency check."""
    from ferry_bench.scoring_latency import run_scoring_bench

    if not run_scoring_bench(iterations=iterations, cold_runs=cold_runs, as_json=json_out):
        typer.echo("ferry bench scoring: a target was missed (see above)", err=True)
        raise typer.Exit(1)


@bench_app.command("refresh")
def bench_refresh(
    seconds: float = typer.Option(20.0, help="seconds of back-to-back predictions per case"),
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """What the background refresh of stage pointers adds to a warm request (p50/p99 µs), and
    what one refresh costs its own thread."""
    from ferry_bench.pointer_refresh import run_refresh_bench

    if not run_refresh_bench(seconds=seconds, as_json=json_out):
        raise typer.Exit(1)


@bench_app.command("load")
def bench_load(
    users: int = typer.Option(10, help="concurrent Locust users (no think time)"),
    spawn_rate: float = typer.Option(10.0, help="users started per second"),
    run_time: str = typer.Option("30s", help="how long to run: 30s, 2m, 1h30m"),
    bad_percent: int = typer.Option(10, help="share of bad requests (0-50 %)"),
    instances: int = typer.Option(1, help="instances per predict request"),
    api_url: str | None = typer.Option(
        None,
        help="default: the running `ferry local up`; a deployed stage's URL is signed with "
        "your own AWS credentials",
    ),
    region: str = typer.Option("us-east-1", help="region of a deployed stage's --api-url"),
    model: str = typer.Option("credit-risk", help="model to score (the demo model by default)"),
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """Locust against the HTTP API, every request signed: requests/s, failures, p50/p95/p99,
    and where the stage's throttling (429) begins."""
    from ferry_bench.http_load import LoadBenchError, run_load_bench

    try:
        ok = run_load_bench(
            users=users,
            spawn_rate=spawn_rate,
            run_time=run_time,
            bad_percent=bad_percent,
            instances=instances,
            api_url=api_url,
            region=region,
            model=model,
            as_json=json_out,
        )
    except LoadBenchError as exc:
        typer.echo(f"ferry bench load: {exc}", err=True)
        raise typer.Exit(1) from exc
    if not ok:
        raise typer.Exit(1)


@bench_app.command("reliability")
def bench_reliability(
    long: bool = typer.Option(True, "--long/--fast", help="full counts, or the test-suite sizes"),
    only: str = typer.Option(
        "", help="properties to run, by number or name: 1,5 or bad_input (default: all)"
    ),
    json_path: str = typer.Option(
        ".ferry/reliability.json", "--json", help="where to write the table as JSON"
    ),
) -> None:
    """Every reliability and security property with its figures: a table and JSON."""
    from ferry_bench.properties import Mode, print_report, run_properties, select, write_json

    try:
        numbers = select(only.split(","))
    except KeyError as exc:
        typer.echo(f"ferry bench reliability: {exc.args[0]}", err=True)
        raise typer.Exit(1) from exc
    results = run_properties(numbers, Mode(long=long))
    print_report(results)
    write_json(results, Path(json_path))
    typer.echo(f"wrote {json_path}")
    if not all(r.passed for r in results):
        broken = ", ".join(str(r.number) for r in results if not r.passed)
        typer.echo(f"ferry bench reliability: property {broken} broken (see above)", err=True)
        raise typer.Exit(1)


DEFAULT_MONTHS = [1e5, 1e6, 1e7, 1e8, 1e9]
PlotOption = Annotated[
    Path | None,
    typer.Option("--plot", metavar="FILE.png", help="plot monthly cost against requests a month"),
]
MonthsOption = Annotated[
    list[float] | None,
    typer.Option(help="monthly volumes to tabulate (repeatable; default 1e5 … 1e9)"),
]
FromOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--from",
        exists=True,
        dir_okay=False,
        help="earlier `ferry bench scoring|batch|cost --json` output to price instead of "
        "measuring (repeatable)",
    ),
]
PricesOption = Annotated[
    Path | None,
    typer.Option(
        exists=True, dir_okay=False, help="price table (default: ferry_bench/aws_prices.json)"
    ),
]


@bench_app.command("cost")
def bench_cost(
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
    plot: PlotOption = None,
    requests_per_month: MonthsOption = None,
    earlier: FromOption = None,
    env: str = typer.Option("prod", help="environment whose configured sizes are priced"),
    prices: PricesOption = None,
    iterations: int = typer.Option(3000, min=1, help="timed handler calls per request size"),
    estimators: int = typer.Option(100, min=1, help="boosting rounds of the benchmark model"),
    rows: int = typer.Option(1_000_000, min=0, help="rows through the batch path (0: skip)"),
) -> None:
    """Dollars per million predictions and batch rows on Lambda + HTTP API (x86_64, arm64)
    beside SageMaker Serverless and real-time endpoints, from measured durations."""
    from ferry_bench.cost_bench import run_cost_bench

    try:
        run_cost_bench(
            earlier=earlier or [],
            months=requests_per_month or DEFAULT_MONTHS,
            env=env,
            prices_path=prices,
            iterations=iterations,
            estimators=estimators,
            rows=rows,
            as_json=json_out,
            plot_path=plot,
        )
    except (KeyError, ValueError) as exc:
        typer.echo(f"ferry bench cost: {exc}", err=True)
        raise typer.Exit(1) from exc
