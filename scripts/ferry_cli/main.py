"""The `ferry` command line (Typer + Rich). Every failure exits non-zero with a one-line reason."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Ferry: tabular models into governed production.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print their figures.")
app.add_typer(bench_app, name="bench")


@app.command()
def demo(
    rows: int = typer.Option(6000, help="rows of generated training data"),
    estimators: int = typer.Option(100, help="boosting rounds of the demo model"),
) -> None:
    """Build, register, promote and score a model on the local platform, end to end."""
    from ferry_cli.demo import run_demo

    if not run_demo(rows=rows, estimators=estimators):
        typer.echo("ferry demo: a step did not hold (see above)", err=True)
        raise typer.Exit(1)


@bench_app.command("scoring")
def bench_scoring(
    iterations: int = typer.Option(3000, help="timed requests per case"),
    cold_runs: int = typer.Option(5, help="fresh processes for the cold-start figures"),
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """Latency of raw onnxruntime vs the full handler vs sklearn, and the cold start."""
    from ferry_cli.bench import run_scoring_bench

    if not run_scoring_bench(iterations=iterations, cold_runs=cold_runs, as_json=json_out):
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
