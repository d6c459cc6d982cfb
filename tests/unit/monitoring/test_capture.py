"""Data capture: sampling, batching by count and age, the S3 layout, reading a window back."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ferry_core.errors import DriftReportNotFound
from ferry_core.monitoring.capture import (
    ROWS_PREFIX,
    CaptureBuffer,
    read_capture,
    read_report,
    write_report,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def instance(i: int) -> dict[str, Any]:
    return {"age": 30 + i % 40, "purpose": "car" if i % 2 else None, "prior_default": bool(i % 3)}


def offer(buf: CaptureBuffer, i: int, n: int = 1, model: str = "credit-risk") -> bool:
    return buf.offer(
        model, 1, f"req-{i}", [instance(i)] * n, [{"score": 0.25, "label": 0, "warnings": []}] * n
    )


def keys(boto: dict[str, Any], bucket: str) -> list[str]:
    got = boto["s3"].list_objects_v2(Bucket=bucket, Prefix=ROWS_PREFIX)
    return sorted(o["Key"] for o in got.get("Contents", []))


def test_rate_zero_captures_nothing_and_rate_one_everything(aws, boto) -> None:
    off = CaptureBuffer(boto["s3"], aws.data_bucket, sample_rate=0.0, background=False)
    assert not any(offer(off, i) for i in range(100))
    assert off.flush() == []
    on = CaptureBuffer(boto["s3"], aws.data_bucket, sample_rate=1.0, background=False)
    assert all(offer(on, i) for i in range(10))
    assert len(on.flush()) == 1 and on.written_rows == 10


def test_sampling_keeps_about_the_configured_share_of_requests(aws, boto) -> None:
    """
    Given a rate of 0.2 and 5,000 requests
    Then the kept share is within binomial bounds (±5 sigma) and whole requests are kept
    """
    buf = CaptureBuffer(
        boto["s3"], aws.data_bucket, sample_rate=0.2, max_records=10**6, seed=1, background=False
    )
    kept = sum(offer(buf, i, n=3) for i in range(5000))
    sigma = (5000 * 0.2 * 0.8) ** 0.5
    assert abs(kept - 1000) < 5 * sigma
    buf.flush()
    assert buf.written_rows == 3 * kept


def test_flushes_by_count_and_by_age_into_hourly_prefixes(aws, boto) -> None:
    """
    Given max_records=10 and max_age=60 s on a controlled clock
    When 25 rows arrive, then one more after 61 s
    Then two objects are written at 10 and 20 rows, and the aged one on the next request
        (even an unsampled one), under capture/rows/{model}/{date}/{hour}/
    """
    clock = Clock()
    buf = CaptureBuffer(
        boto["s3"],
        aws.data_bucket,
        sample_rate=1.0,
        max_records=10,
        max_age_seconds=60,
        background=False,
        clock=clock,
    )
    for i in range(25):
        offer(buf, i)
    assert len(keys(boto, aws.data_bucket)) == 2
    clock.t += 61
    buf.sample_rate = 0.0  # the age is checked on every request, sampled or not
    offer(buf, 99)
    found = keys(boto, aws.data_bucket)
    assert len(found) == 3
    assert all(k.startswith("capture/rows/credit-risk/2026-01-01/00/") for k in found)
    assert all(k.endswith("-realtime-" + k.rsplit("-", 1)[1]) for k in found)


def test_a_window_reads_back_what_was_captured(aws, boto) -> None:
    """
    Given rows captured over three hours for two models
    When I read a 2-hour window of one model
    Then I get exactly its rows with start <= ts < end, inputs and scores intact
    """
    clock = Clock()
    buf = CaptureBuffer(
        boto["s3"], aws.data_bucket, sample_rate=1.0, max_records=5, background=False, clock=clock
    )
    for hour in range(3):
        clock.t = T0 + hour * 3600 + 10
        for i in range(5):
            offer(buf, hour * 10 + i)
            offer(buf, i, model="other")
    buf.flush()
    rows = read_capture(boto["s3"], aws.data_bucket, "credit-risk", T0 + 3600, T0 + 3 * 3600)
    assert sorted(r["request_id"] for r in rows) == [f"req-{i}" for i in (10, 11, 12, 13, 14)] + [
        f"req-{i}" for i in (20, 21, 22, 23, 24)
    ]
    r = next(r for r in rows if r["request_id"] == "req-11")
    assert r["features"] == instance(11)
    assert (r["score"], r["label"], r["version"], r["source"]) == (0.25, 0, 1, "realtime")
    capped = read_capture(boto["s3"], aws.data_bucket, "credit-risk", T0, T0 + 4 * 3600, 7)
    assert len(capped) == 7 and all(r["ts"] >= T0 + 7200 for r in capped[:5])  # newest first


def test_batch_rows_are_sampled_and_captured(aws, boto) -> None:
    """
    Given a batch chunk as a pyarrow table and a 0.1 rate
    When the batch path samples positions and adds those rows with their scores
    Then about a tenth of the rows is captured, with source `batch` and the run id
    """
    table = pa.table({"age": list(range(18, 18 + 2000)), "purpose": ["car"] * 2000})
    scores = np.linspace(0, 1, 2000)
    buf = CaptureBuffer(
        boto["s3"], aws.data_bucket, sample_rate=0.1, source="batch", background=False, seed=4
    )
    pos = buf.sample_positions(table.num_rows)
    assert 120 < pos.size < 280
    buf.add_rows("credit-risk", 2, "run-1", table.take(pos).to_pylist(), scores[pos], pos % 2)
    buf.flush()
    rows = read_capture(
        boto["s3"], aws.data_bucket, "credit-risk", time.time() - 60, time.time() + 60
    )
    assert len(rows) == pos.size
    assert {(r["source"], r["request_id"], r["version"]) for r in rows} == {("batch", "run-1", 2)}
    assert rows[0]["score"] == pytest.approx(float(scores[pos[0]]))


def test_background_flush_and_a_failed_upload_never_reach_the_request(aws, boto) -> None:
    """
    Given a buffer writing from its background thread, then one pointed at a missing bucket
    Then the first writes everything after flush(wait=True); the second counts dropped rows
        instead of raising
    """
    buf = CaptureBuffer(boto["s3"], aws.data_bucket, sample_rate=1.0, max_records=50)
    for i in range(120):
        offer(buf, i)
    buf.close()
    assert buf.written_rows == 120 and len(keys(boto, aws.data_bucket)) == 3
    lost = CaptureBuffer(boto["s3"], "no-such-bucket", sample_rate=1.0, max_records=5)
    for i in range(12):
        offer(lost, i)
    lost.close()
    assert (lost.written_rows, lost.dropped_rows) == (0, 12)


def test_real_time_settings_write_a_tenth_in_objects_of_500_rows(aws, boto) -> None:
    """
    Given the real-time settings (10 % sampled, flush every 500 rows in the background)
    When 20,000 one-row requests are offered
    Then about a tenth is written (±5 sigma), in objects of 500 rows and one last partial one
    (What an offer costs is `ferry bench scoring`'s figure, checked there against 5 µs.)
    """
    buf = CaptureBuffer(boto["s3"], aws.data_bucket, sample_rate=0.1, seed=2)
    inst, pred = [instance(1)], [{"score": 0.5, "label": 1, "warnings": []}]
    n = 20_000
    kept = sum(buf.offer("credit-risk", 1, "r", inst, pred) for _ in range(n))
    buf.close()
    assert abs(kept - n * 0.1) < 5 * (n * 0.1 * 0.9) ** 0.5
    assert (buf.written_rows, buf.dropped_rows) == (kept, 0)
    assert len(keys(boto, aws.data_bucket)) == -(-kept // 500)


def test_reports_round_trip_and_a_missing_one_is_a_domain_error(aws, boto) -> None:
    report = {"model": "credit-risk", "version": 1, "key": "capture/reports/credit-risk/x.json"}
    write_report(boto["s3"], aws.data_bucket, report)
    assert read_report(boto["s3"], aws.data_bucket, "credit-risk") == report
    with pytest.raises(DriftReportNotFound):
        read_report(boto["s3"], aws.data_bucket, "nobody")


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        CaptureBuffer(None, "b", sample_rate=1.5)
    with pytest.raises(ValueError):
        CaptureBuffer(None, "b", sample_rate=0.5, max_records=0)
