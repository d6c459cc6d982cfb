"""`ferry bench refresh`: what the background refresh of stage pointers costs a request.

A warm scorer's request path reads the stage pointer from its cache; a daemon thread re-reads
the cached pointers every second (`ferry_core.registry.refresh`). The thread never blocks a
request, but it holds the GIL while botocore builds, signs and parses its BatchGetItem, and a
request that wants the GIL then waits. Measured here:

- the refresh itself: wall time and the refresh thread's own CPU time per refresh (the most
  it can hold the GIL), against DynamoDB served by a moto server in ANOTHER process on
  127.0.0.1 (the way Lambda reaches DynamoDB over the network, so the server's work does not
  count against this process);
- the request path: `ScoringService.predict` of one row with the refresh off, at the
  interval the stack sets (1 s) and at 100× that rate (10 ms, where overlaps are common enough
  to show in p99), in interleaved blocks; added µs = on − off at p50 and p99.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from rich.console import Console
from rich.table import Table

MODEL = "credit-risk"
STACK_INTERVAL_S = 1.0  # infra/environment.py REGISTRY_REFRESH_SECONDS
STRESS_INTERVAL_S = 0.01
ROUNDS = 10  # each case runs in this many interleaved blocks, so noise hits all alike


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server_process() -> Iterator[str]:
    """A moto server in a child process; yields its endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _pointed_at(endpoint: str) -> Any:
    """This process's boto3 pointed at `endpoint` with fake credentials, restored after."""
    from ferry_local.moto_stack import FAKE_CREDENTIALS

    return mock.patch.dict(os.environ, {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})


class TimedReader:
    """Wraps a reader's `refresh` to record each one's wall and thread CPU time (ns)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.wall: list[int] = []
        self.cpu: list[int] = []

    def refresh(self) -> int:
        w, c = time.perf_counter_ns(), time.thread_time_ns()
        read = int(self.reader.refresh())
        self.cpu.append(time.thread_time_ns() - c)
        self.wall.append(time.perf_counter_ns() - w)
        return read


def _refresher_at(timed: TimedReader, interval: float | None, held: list[Any]) -> None:
    """Stop the running refresher and start one at `interval` (None: none)."""
    from ferry_core.registry.refresh import PointerRefresher

    while held:
        held.pop().stop(30)
    if interval is not None:
        held.append(PointerRefresher(timed, interval).start())


def _timed_for(fn: Callable[[], Any], seconds: float, out: array) -> None:
    """Call `fn` back to back for `seconds`, appending each call's ns to `out`."""
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        out.append(t1 - t0)
        if t1 >= end:
            return


def _percentile(values: list[int], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) / 1e3


def _stats(ns: array) -> dict[str, float]:
    import numpy as np

    a = np.frombuffer(ns, dtype=np.int64).astype(np.float64) / 1e3
    return {
        "p50_us": float(np.percentile(a, 50)),
        "p99_us": float(np.percentile(a, 99)),
        "p999_us": float(np.percentile(a, 99.9)),
        "mean_us": float(a.mean()),
        "n": len(ns),
    }


def _measure(seconds: float, log: Any) -> dict[str, Any]:
    from ferry_core.card import Lineage
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, build, fit_credit_risk, records
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_core.serving.scoring import ScoringService
    from ferry_core.settings import ScoringSettings
    from ferry_local.moto_stack import create_resources

    log("training a small credit-risk model and converting it to ONNX…")
    pipe, train, valid = fit_credit_risk(rows=1600, n_estimators=15, seed=11)
    built = build(pipe, CREDIT_RISK_SCHEMA, train, valid)
    row = records(valid.iloc[:1], CREDIT_RISK_SCHEMA)
    log("moto server in a child process; registering the model…")
    with (
        moto_server_process() as endpoint,
        _pointed_at(endpoint),
        tempfile.TemporaryDirectory(prefix="ferry-bench-refresh-") as tmp,
    ):
        import boto3

        res = create_resources()
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        writer = RegistryWriter(ddb, res.registry_table)
        card = register_built(built, MODEL, s3, res.model_bucket, writer, Lineage())
        writer.set_stage(MODEL, "production", card.version, None, actor="bench")
        settings = ScoringSettings.from_env(res.environment(Path(tmp) / "tmp"))
        service = ScoringService.from_settings(settings, ddb, s3)
        service.predict(MODEL, row)  # warm: the card, the session, the cached pointers
        timed = TimedReader(service.registry)
        held: list[Any] = []
        intervals = {"off": None, "1s": STACK_INTERVAL_S, "10ms": STRESS_INTERVAL_S}
        samples = {name: array("q") for name in intervals}
        log(f"timing one-row predictions, {seconds:g} s per case in {ROUNDS} interleaved blocks…")
        for _ in range(ROUNDS):
            for name, interval in intervals.items():
                _refresher_at(timed, interval, held)
                _timed_for(lambda: service.predict(MODEL, row), seconds / ROUNDS, samples[name])
        _refresher_at(timed, None, held)
        hits = array("q")
        _timed_for(lambda: service.registry.pointer(MODEL, "production"), 1.0, hits)
        keys = timed.reader.refresh()
    figs = {name: _stats(ns) for name, ns in samples.items()}
    return {
        "request": figs,
        "added_us": {
            name: {
                "p50": figs[name]["p50_us"] - figs["off"]["p50_us"],
                "p99": figs[name]["p99_us"] - figs["off"]["p99_us"],
            }
            for name in ("1s", "10ms")
        },
        "pointer_hit_ns": _stats(hits)["p50_us"] * 1e3,
        "refresh": {
            "count": len(timed.wall),
            "keys": keys,
            "wall_p50_us": _percentile(timed.wall, 50),
            "wall_p99_us": _percentile(timed.wall, 99),
            "cpu_p50_us": _percentile(timed.cpu, 50),
            "cpu_p99_us": _percentile(timed.cpu, 99),
        },
    }


def run_refresh_bench(seconds: float, as_json: bool) -> bool:
    """Measure and print (a table, or one JSON object); True when the figures were taken."""
    if seconds < 1:
        raise ValueError("each case needs at least 1 s")
    console = Console(stderr=as_json)
    figures = _measure(seconds, console.log)
    meta = {
        "seconds_per_case": seconds,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "conditions": "ScoringService.predict, 1 row, credit-risk 15 trees, warm; DynamoDB = "
        "moto server in a child process on 127.0.0.1; refresh = 1 BatchGetItem of the cached "
        "pointer and canary, ConsistentRead",
    }
    if as_json:
        print(json.dumps({"meta": meta, **figures}, indent=2))
        return True
    t = Table("request path", "calls", "p50 µs", "p99 µs", "p99.9 µs", "added p50", "added p99")
    t.title = f"one-row predict, back to back, {seconds:g} s per case, interleaved"
    labels = {
        "off": "refresh off",
        "1s": "refresh every 1 s (the stack)",
        "10ms": "refresh every 10 ms (100× the stack's rate)",
    }
    for name, label in labels.items():
        f = figures["request"][name]
        added = figures["added_us"].get(name, {"p50": 0.0, "p99": 0.0})
        t.add_row(
            label,
            f"{f['n']:,}",
            f"{f['p50_us']:,.1f}",
            f"{f['p99_us']:,.1f}",
            f"{f['p999_us']:,.1f}",
            f"{added['p50']:+.1f}",
            f"{added['p99']:+.1f}",
        )
    console.print(t)
    r = figures["refresh"]
    console.print(
        f"one refresh ({r['keys']} keys, {r['count']} timed): wall p50 {r['wall_p50_us']:,.0f} µs"
        f" / p99 {r['wall_p99_us']:,.0f} µs; its thread's CPU p50 {r['cpu_p50_us']:,.0f} µs / p99"
        f" {r['cpu_p99_us']:,.0f} µs (the most it holds the GIL). A cached pointer read on the"
        f" request path: {figures['pointer_hit_ns']:,.0f} ns (p50)."
    )
    console.print(
        f"[dim]{meta['conditions']}; {meta['cpu_count']} CPUs, Python {meta['python']}[/]"
    )
    return True
