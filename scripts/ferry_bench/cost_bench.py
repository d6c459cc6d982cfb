"""`ferry bench cost`: what serving on Ferry's platform costs, beside SageMaker, in dollars.

Measured durations (the scoring handler and the batch path, here or from earlier bench JSON)
times the configured memory (infra/config.py) times a dated price table (aws_prices.json or
`--prices`). Every figure carries its conditions; arm64 durations are x86's unless measured,
since this machine has no arm64 CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ferry_bench.cost_measure import load_earlier, measure_batch, measure_online
from ferry_bench.cost_model import (
    ARCHITECTURES,
    INSTANCES,
    PriceTable,
    Sizing,
    Traffic,
    batch_per_million_rows,
    crossings,
    instances_needed,
    load_prices,
    per_million_predictions,
    platforms,
    provisioned_usd_month,
)

PLOT_RANGE = (1e3, 1e10)  # requests a month on the plot's x axis
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)  # sizes SageMaker offers
ARM64_ASSUMPTION = "arm64 duration assumed equal to x86_64 (no arm64 CPU here to measure it)"
SAGEMAKER_ASSUMPTION = (
    "SageMaker duration assumed equal to Ferry's handler (its serving container's own "
    "overhead not measured)"
)


def sizing_for(env: str) -> tuple[Sizing, dict[str, Any]]:
    """The configured memory and provisioned concurrency of `env`, from infra/config.py."""
    from infra.config import ENVIRONMENTS

    config = ENVIRONMENTS[env]
    serverless = next(
        (m for m in SERVERLESS_MEMORY_MB if m >= config.scoring_memory_mb), SERVERLESS_MEMORY_MB[-1]
    )
    sizing = Sizing(
        scoring_memory_mb=config.scoring_memory_mb,
        batch_memory_mb=config.batch_memory_mb,
        serverless_memory_mb=serverless,
        provisioned_concurrency=config.scoring_provisioned_concurrency,
    )
    conditions = {
        "environment": env,
        "config": "infra/config.py",
        "scoring_memory_mb": sizing.scoring_memory_mb,
        "batch_memory_mb": sizing.batch_memory_mb,
        "configured_architectures": config.function_architectures.model_dump(),
        "scoring_provisioned_concurrency": sizing.provisioned_concurrency,
        "serverless_memory_mb": serverless,
        "serverless_memory_rule": "the smallest SageMaker Serverless size ≥ the scoring memory",
    }
    return sizing, conditions


def traffic(online: dict[str, Any], instances: int) -> Traffic:
    w = online["warm"][str(instances)]
    return Traffic(
        instances=instances,
        mean_ms=w["mean_us"] / 1000,
        p99_ms=w["p99_us"] / 1000,
        request_bytes=w["request_bytes"],
        response_bytes=w["response_bytes"],
    )


def compute(
    measured: dict[str, Any], sizing: Sizing, prices: PriceTable, months: list[float]
) -> dict[str, Any]:
    """Every dollar figure, from the measured figures and the configured sizes."""
    online = measured["online"]
    per_million = {}
    for n in sorted(online["warm"], key=int):
        t = traffic(online, int(n))
        per_million[n] = {
            "mean_ms": round(t.mean_ms, 4),
            "p99_ms": round(t.p99_ms, 4),
            "billed_ms": t.billed_ms,
            "request_bytes": t.request_bytes,
            "response_bytes": t.response_bytes,
            "usd": per_million_predictions(t, sizing, prices),
        }
    one = traffic(online, 1)
    curves = platforms(one, sizing, prices)
    monthly = {
        f"{r:g}": {name: cost(r) for name, cost in curves.items()}
        | {f"{i} instances": instances_needed(r, one, i) for i in INSTANCES}
        for r in months
    }
    fixed = {a: provisioned_usd_month(sizing, a, prices) for a in ARCHITECTURES}
    doc: dict[str, Any] = {
        "per_million_predictions": per_million,
        "monthly_usd_one_instance_requests": monthly,
        "provisioned_concurrency_usd_month": fixed,
        "crossings": [c.__dict__ for c in crossings(curves, *PLOT_RANGE)],
    }
    if "batch" in measured:
        rate = measured["batch"]["rows_per_second"]
        doc["batch_per_million_rows"] = batch_per_million_rows(rate, sizing.batch_memory_mb, prices)
    return doc


def plot(curves_of: dict[str, Any], crossing: list[dict[str, Any]], path: Path, title: str) -> None:
    """Monthly cost against requests a month (log-log), the crossings marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = PLOT_RANGE
    xs = [low * (high / low) ** (i / 300) for i in range(301)]
    fig, ax = plt.subplots(figsize=(10, 6))
    for name, cost in curves_of.items():
        ax.plot(xs, [cost(x) for x in xs], label=name)
    for i, c in enumerate(crossing):
        ax.scatter([c["requests_per_month"]], [c["usd_per_month"]], color="black", zorder=3)
        ax.annotate(
            f"{c['requests_per_month']:.3g}",
            (c["requests_per_month"], c["usd_per_month"]),
            textcoords="offset points",
            xytext=(4, -12 if i % 2 else 6),  # neighbouring crossings' labels apart
            fontsize=7,
        )
    ax.set(xscale="log", yscale="log", xlabel="requests per month (1 instance each)")
    ax.set(ylabel="USD per month", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _usd(v: float) -> str:
    return f"${v:,.2f}" if v >= 1 else f"${v:.4f}"


def print_report(doc: dict[str, Any]) -> None:
    """Rich tables: per million predictions and rows, monthly cost, crossings, conditions."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    prices, cond = doc["prices"], doc["conditions"]
    region = f"{prices['region']}, prices as of {prices['as_of']}"
    t = Table(title=f"USD per million online predictions ({region})")
    for col in ("platform", "instances/request", "billed", "USD / 1M predictions", "condition"):
        t.add_column(col)
    for n, figs in doc["figures"]["per_million_predictions"].items():
        for name, usd in figs["usd"].items():
            memory = cond["sizing"][
                "serverless_memory_mb" if "Serverless" in name else "scoring_memory_mb"
            ]
            note = f"mean {figs['mean_ms']:.3f} ms measured, {memory} MB"
            if "arm64" in name:
                note += "; " + ARM64_ASSUMPTION
            if "SageMaker" in name:
                note += "; " + SAGEMAKER_ASSUMPTION
            t.add_row(name, n, f"{figs['billed_ms']} ms", _usd(usd), note)
    console.print(t)
    batch = doc["figures"].get("batch_per_million_rows")
    if batch:
        b = Table(title="USD per million batch rows (Lambda, end-to-end rate measured)")
        for col in ("architecture", "seconds", "GB-seconds", "USD / 1M rows", "condition"):
            b.add_column(col)
        mem = cond["sizing"]["batch_memory_mb"]
        for arch, f in batch.items():
            note = f"{mem} MB" + ("; " + ARM64_ASSUMPTION if arch == "arm64" else "")
            b.add_row(arch, f"{f['seconds']:.1f}", f"{f['gb_seconds']:.0f}", _usd(f["usd"]), note)
        console.print(b)
    m = Table(title="USD per month, one instance per request (fixed parts included)")
    monthly = doc["figures"]["monthly_usd_one_instance_requests"]
    names = [k for k in next(iter(monthly.values())) if not k.endswith(" instances")]
    m.add_column("requests / month")
    for name in names:
        m.add_column(name, justify="right")
    for r, row in monthly.items():
        m.add_row(f"{float(r):,.0f}", *(_usd(row[name]) for name in names))
    console.print(m)
    for c in doc["figures"]["crossings"]:
        console.print(
            f"crossing at {c['requests_per_month']:,.0f} requests/month ({_usd(c['usd_per_month'])}"
            f"/month): {c['cheaper_below']} cheaper below, {c['cheaper_above']} above"
        )
    console.print(f"[dim]conditions: {json.dumps(cond, default=str)}[/]")


def run_cost_bench(
    *,
    earlier: list[Path],
    months: list[float],
    env: str,
    prices_path: Path | None,
    iterations: int,
    estimators: int,
    rows: int,
    as_json: bool,
    plot_path: Path | None,
) -> dict[str, Any]:
    """Measure (or read earlier figures), price them, print; the JSON document."""
    from rich.console import Console

    console = Console(stderr=True)
    log = console.log if not as_json else (lambda msg: console.print(f"[dim]{msg}[/]"))
    measured = load_earlier(earlier)
    if "online" not in measured:
        measured["online"] = measure_online(estimators, iterations, log)
    if "batch" not in measured and rows > 0:
        measured["batch"] = measure_batch(rows, estimators, log)
    prices = load_prices(prices_path)
    sizing, sizing_conditions = sizing_for(env)
    figures = compute(measured, sizing, prices, months)
    dates = sorted({p.as_of.isoformat() for p in prices.prices.values()})
    doc = {
        "prices": {
            "region": prices.region,
            "currency": prices.currency,
            "as_of": dates[0] if len(dates) == 1 else f"{dates[0]}…{dates[-1]}",
            "file": str(prices_path or "ferry_bench/aws_prices.json"),
            "table": prices.model_dump(mode="json")["prices"],
        },
        "conditions": {
            "sizing": sizing_conditions,
            "arm64": ARM64_ASSUMPTION,
            "sagemaker": SAGEMAKER_ASSUMPTION,
            "billing": "on-demand, no free tier; Lambda duration = ceil(mean) ms per invocation",
            "cold_starts": "not priced (warm durations only)",
            "realtime_capacity": "instances for the mean rate: vCPUs / measured mean duration",
        },
        "measured": measured,
        "figures": figures,
    }
    if plot_path is not None:
        one = traffic(measured["online"], 1)
        title = f"Ferry scoring, monthly cost ({prices.region}, {env} sizing"
        if sizing.provisioned_concurrency:
            title += f"; Lambda includes {sizing.provisioned_concurrency} provisioned environments"
        title += ")"
        plot(platforms(one, sizing, prices), figures["crossings"], plot_path, title)
        doc["plot"] = str(plot_path)
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print_report(doc)
        if plot_path is not None:
            console.print(f"wrote {plot_path}")
    return doc
