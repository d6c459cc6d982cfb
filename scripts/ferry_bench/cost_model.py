"""What serving a model costs on each platform, from measured durations and a price table.

Pure arithmetic: the prices are inputs (`aws_prices.json`, or a file of the same shape), the
durations and memory sizes come from the caller (measured by `ferry bench scoring` and `ferry
bench batch`, memory from infra/config.py). Nothing here fetches a price or times anything.

Billing rules modelled (on-demand, no free tier, no Savings Plans):
- Lambda: requests × price + GB-seconds, each invocation's duration rounded up to 1 ms, GB =
  configured MB / 1024, at the architecture's GB-second price.
- API Gateway HTTP API: per million requests, each request counted once per 512 KB of its
  payload; the first 300 million a month at one price, the rest at the lower one.
- SageMaker Serverless Inference: GB-seconds at its configured memory (per ms), plus data in
  and out per GB.
- SageMaker real-time endpoint: instance-hours, always on, whatever the traffic; as many
  instances as the mean request rate needs at the measured per-request CPU time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PRICES = Path(__file__).with_name("aws_prices.json")
HOURS_PER_MONTH = 730.0  # AWS's own monthly convention for hourly prices
METERING_BYTES = 512 * 1024  # HTTP API counts a request once per 512 KB of payload
HTTP_API_TIER = 300_000_000  # requests a month at the first HTTP API price
GB = 1024**3

ARCHITECTURES = ("x86_64", "arm64")
# Real-time endpoint instance types compared, with their vCPUs (the pricing page's figures).
INSTANCES = {"ml.t3.medium": 2, "ml.m5.large": 2}


def instance_price_name(instance: str) -> str:
    """The price-table name of a real-time endpoint instance type's hourly price."""
    return f"sagemaker_{instance.replace('.', '_')}_hour"


REQUIRED = (
    "lambda_request",
    *(f"lambda_gb_second_{a}" for a in ARCHITECTURES),
    *(f"lambda_provisioned_gb_second_{a}" for a in ARCHITECTURES),
    "http_api_request_first_300m",
    "http_api_request_over_300m",
    "sagemaker_serverless_gb_second",
    "sagemaker_data_processed_gb",
    *(instance_price_name(i) for i in INSTANCES),
)


class Price(BaseModel):
    """One list price with the date it was read and the page it was read from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float = Field(ge=0)
    per: str
    as_of: date
    source: str = Field(pattern=r"^https://")


class PriceTable(BaseModel):
    """Every price the cost model needs, for one region."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str
    currency: str = "USD"
    note: str = ""
    prices: dict[str, Price]

    def model_post_init(self, _: object) -> None:
        missing = [name for name in REQUIRED if name not in self.prices]
        if missing:
            raise ValueError(f"the price table lacks {missing}")

    def usd(self, name: str) -> float:
        return self.prices[name].usd


def load_prices(path: Path | None = None) -> PriceTable:
    """The checked-in table, or `path` in the same shape."""
    return PriceTable.model_validate_json((path or DEFAULT_PRICES).read_text())


@dataclass(frozen=True)
class Traffic:
    """One kind of request: its mean and tail duration in the handler, and its payload sizes."""

    instances: int  # predictions per request
    mean_ms: float
    p99_ms: float
    request_bytes: int
    response_bytes: int

    @property
    def billed_ms(self) -> int:
        """Lambda's billed duration: the mean rounded up to the next whole millisecond."""
        return max(1, math.ceil(self.mean_ms))


@dataclass(frozen=True)
class Sizing:
    """The configured sizes the prices apply to (read from infra/config.py by the caller)."""

    scoring_memory_mb: int
    batch_memory_mb: int
    serverless_memory_mb: int
    provisioned_concurrency: int = 0


def http_api_usd(requests: float, request_bytes: int, prices: PriceTable) -> float:
    """HTTP API requests a month, each counted once per started 512 KB of its payload."""
    metered = requests * max(1, math.ceil(request_bytes / METERING_BYTES))
    first = min(metered, HTTP_API_TIER)
    return (
        first * prices.usd("http_api_request_first_300m")
        + (metered - first) * prices.usd("http_api_request_over_300m")
    ) / 1e6


def lambda_usd(requests: float, t: Traffic, memory_mb: int, arch: str, prices: PriceTable) -> float:
    """Lambda behind the HTTP API: requests, GB-seconds at the billed duration, the API."""
    gb_seconds = requests * t.billed_ms / 1000 * memory_mb / 1024
    return (
        requests * prices.usd("lambda_request") / 1e6
        + gb_seconds * prices.usd(f"lambda_gb_second_{arch}")
        + http_api_usd(requests, t.request_bytes, prices)
    )


def provisioned_usd_month(sizing: Sizing, arch: str, prices: PriceTable) -> float:
    """A month of the configured provisioned concurrency, billed whether used or not."""
    seconds = HOURS_PER_MONTH * 3600
    gb = sizing.scoring_memory_mb / 1024
    price = prices.usd(f"lambda_provisioned_gb_second_{arch}")
    return sizing.provisioned_concurrency * gb * seconds * price


def data_usd(requests: float, t: Traffic, prices: PriceTable) -> float:
    return (
        requests
        * (t.request_bytes + t.response_bytes)
        / GB
        * prices.usd("sagemaker_data_processed_gb")
    )


def serverless_usd(requests: float, t: Traffic, memory_mb: int, prices: PriceTable) -> float:
    """SageMaker Serverless Inference: GB-seconds at its memory (per ms), data in and out."""
    gb_seconds = requests * t.billed_ms / 1000 * memory_mb / 1024
    return gb_seconds * prices.usd("sagemaker_serverless_gb_second") + data_usd(requests, t, prices)


def instances_needed(requests_per_month: float, t: Traffic, instance: str) -> int:
    """Instances for the mean request rate, each vCPU serving one request per mean duration."""
    rate = requests_per_month / (HOURS_PER_MONTH * 3600)
    per_instance = INSTANCES[instance] / (t.mean_ms / 1000)
    return max(1, math.ceil(rate / per_instance))


def realtime_usd(requests: float, t: Traffic, instance: str, prices: PriceTable) -> float:
    """A month of an always-on real-time endpoint (scaled to the mean rate), plus data."""
    hours = HOURS_PER_MONTH * instances_needed(requests, t, instance)
    return hours * prices.usd(instance_price_name(instance)) + data_usd(requests, t, prices)


MonthlyCost = Callable[[float], float]


def platforms(t: Traffic, sizing: Sizing, prices: PriceTable) -> dict[str, MonthlyCost]:
    """Monthly cost against requests a month, per platform, for traffic `t`."""
    out: dict[str, MonthlyCost] = {}
    for arch in ARCHITECTURES:
        fixed = provisioned_usd_month(sizing, arch, prices)
        label = f"Lambda {arch} + HTTP API"
        out[label] = lambda r, a=arch, f=fixed: (
            lambda_usd(r, t, sizing.scoring_memory_mb, a, prices) + f
        )
    out["SageMaker Serverless"] = lambda r: serverless_usd(
        r, t, sizing.serverless_memory_mb, prices
    )
    for instance in INSTANCES:
        out[f"SageMaker real-time {instance}"] = lambda r, i=instance: realtime_usd(r, t, i, prices)
    return out


def per_million_predictions(t: Traffic, sizing: Sizing, prices: PriceTable) -> dict[str, float]:
    """Marginal dollars per million predictions, requests of `t.instances` predictions each
    (the fixed monthly parts excluded: provisioned concurrency, an idle endpoint)."""
    requests = 1e6 / t.instances
    out = {
        f"Lambda {a} + HTTP API": lambda_usd(requests, t, sizing.scoring_memory_mb, a, prices)
        for a in ARCHITECTURES
    }
    out["SageMaker Serverless"] = serverless_usd(requests, t, sizing.serverless_memory_mb, prices)
    return out


def batch_per_million_rows(rows_per_second: float, memory_mb: int, prices: PriceTable) -> dict:
    """Lambda GB-seconds for a million rows at the measured end-to-end rate, per architecture
    (one invocation per file: the request charge is negligible and left out)."""
    seconds = 1e6 / rows_per_second
    gb_seconds = seconds * memory_mb / 1024
    return {
        a: {"seconds": seconds, "gb_seconds": gb_seconds,
            "usd": gb_seconds * prices.usd(f"lambda_gb_second_{a}")}
        for a in ARCHITECTURES
    }  # fmt: skip


@dataclass(frozen=True)
class Crossing:
    """Where two platforms' monthly costs cross: below it `cheaper_below` costs less."""

    requests_per_month: float
    usd_per_month: float
    cheaper_below: str
    cheaper_above: str


def crossings(curves: dict[str, MonthlyCost], low: float, high: float) -> list[Crossing]:
    """Every pair's crossing between `low` and `high` requests a month (log-spaced scan, then
    bisection; a curve with steps may cross more than once)."""
    grid = [low * (high / low) ** (i / 400) for i in range(401)]
    names = list(curves)
    found: list[Crossing] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:

            def diff(r: float, a: str = a, b: str = b) -> float:
                return curves[a](r) - curves[b](r)

            for lo, hi in itertools.pairwise(grid):
                d_lo, d_hi = diff(lo), diff(hi)
                if d_lo == 0 or (d_lo > 0) == (d_hi > 0):
                    continue
                for _ in range(60):
                    mid = math.sqrt(lo * hi)
                    if (diff(mid) > 0) == (d_lo > 0):
                        lo = mid
                    else:
                        hi = mid
                below, above = (a, b) if d_lo < 0 else (b, a)
                found.append(Crossing(hi, curves[a](hi), below, above))
    return sorted(found, key=lambda c: c.requests_per_month)
