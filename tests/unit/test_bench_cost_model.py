"""The cost model's billing rules, on hand-checkable numbers (no timing, no measurement)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferry_bench.cost_model import (
    HOURS_PER_MONTH,
    PriceTable,
    Sizing,
    Traffic,
    batch_per_million_rows,
    crossings,
    http_api_usd,
    instances_needed,
    lambda_usd,
    load_prices,
    platforms,
    provisioned_usd_month,
    realtime_usd,
    serverless_usd,
)

PRICES = load_prices()
SIZING = Sizing(scoring_memory_mb=2048, batch_memory_mb=3008, serverless_memory_mb=2048)


def one(mean_ms: float = 0.4, request_bytes: int = 300, response_bytes: int = 0) -> Traffic:
    return Traffic(1, mean_ms, mean_ms * 3, request_bytes, response_bytes)


def test_every_checked_in_price_has_its_date_and_source() -> None:
    assert PRICES.region == "us-east-1"
    for name, price in PRICES.prices.items():
        assert price.source.startswith("https://aws.amazon.com/"), name
        assert price.as_of.year >= 2025 and price.per


def test_a_table_without_a_required_price_is_refused(tmp_path: Path) -> None:
    doc = PRICES.model_dump(mode="json")
    del doc["prices"]["lambda_gb_second_arm64"]
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="lambda_gb_second_arm64"):
        load_prices(path)
    assert isinstance(load_prices(None), PriceTable)


def test_lambda_bills_each_invocation_rounded_up_to_a_whole_millisecond() -> None:
    """Given a 0.4 ms mean at 2048 MB, a million requests bill 1 ms each: 2,000 GB-seconds."""
    cost = lambda_usd(1e6, one(0.4), 2048, "x86_64", PRICES)
    want = 0.20 + 2000 * 0.0000166667 + 1.00  # requests + GB-seconds + HTTP API
    assert cost == pytest.approx(want)
    assert one(1.01).billed_ms == 2
    arm = lambda_usd(1e6, one(0.4), 2048, "arm64", PRICES)
    assert arm == pytest.approx(0.20 + 2000 * 0.0000133334 + 1.00)


def test_http_api_meters_512_kb_units_and_its_second_tier() -> None:
    assert http_api_usd(1e6, 512 * 1024, PRICES) == pytest.approx(1.0)
    assert http_api_usd(1e6, 512 * 1024 + 1, PRICES) == pytest.approx(2.0)
    assert http_api_usd(400e6, 100, PRICES) == pytest.approx(300 * 1.0 + 100 * 0.9)


def test_serverless_bills_gb_seconds_and_data_processed() -> None:
    gib = 1024**3
    cost = serverless_usd(1e6, one(0.4, request_bytes=gib // 10**6), 2048, PRICES)
    assert cost == pytest.approx(2000 * 0.00002 + 1e6 * (gib // 10**6) / gib * 0.016)


def test_a_realtime_endpoint_costs_its_hours_whatever_the_traffic() -> None:
    t = one(1.0)
    assert realtime_usd(0, t, "ml.t3.medium", PRICES) == pytest.approx(HOURS_PER_MONTH * 0.05)
    # 2 vCPUs at 1 ms a request serve 2,000 requests/s on average: more needs a second instance
    per_month = 2000 * HOURS_PER_MONTH * 3600
    assert instances_needed(per_month, t, "ml.m5.large") == 1
    assert instances_needed(per_month * 1.01, t, "ml.m5.large") == 2


def test_provisioned_concurrency_is_a_fixed_monthly_cost() -> None:
    sizing = Sizing(2048, 3008, 2048, provisioned_concurrency=2)
    want = 2 * 2 * HOURS_PER_MONTH * 3600 * 0.0000041667
    assert provisioned_usd_month(sizing, "x86_64", PRICES) == pytest.approx(want)
    assert provisioned_usd_month(SIZING, "x86_64", PRICES) == 0


def test_batch_rows_cost_their_gb_seconds_per_architecture() -> None:
    figures = batch_per_million_rows(100_000, 2048, PRICES)
    assert figures["x86_64"]["gb_seconds"] == pytest.approx(20.0)
    assert figures["arm64"]["usd"] == pytest.approx(20 * 0.0000133334)


def test_crossings_are_where_the_cheaper_platform_changes() -> None:
    """Lambda costs grow with traffic, an endpoint's hours do not: they cross once."""
    curves = platforms(one(0.4), SIZING, PRICES)
    found = crossings(
        {k: curves[k] for k in ("Lambda x86_64 + HTTP API", "SageMaker real-time ml.t3.medium")},
        1e3,
        1e10,
    )
    (crossing,) = found
    assert crossing.cheaper_below == "Lambda x86_64 + HTTP API"
    r = crossing.requests_per_month
    lam, rt = curves["Lambda x86_64 + HTTP API"], curves["SageMaker real-time ml.t3.medium"]
    assert lam(r * 0.99) < rt(r * 0.99) and lam(r * 1.01) > rt(r * 1.01)
    assert crossing.usd_per_month == pytest.approx(lam(r), rel=1e-6)
