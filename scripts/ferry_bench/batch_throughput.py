"""`ferry bench batch`: end-to-end batch rows/s on a 1M-row CSV vs raw onnxruntime, and peak RSS.

The AWS emulation runs as a separate process (`moto_server`), as S3 is a separate service:
the parent registers the model and uploads the CSV there; a fresh child process then runs
the batch (read from the bucket → validate → score with one onnxruntime thread → write the
scored, rejected and manifest objects) and reports its own peak RSS (`ru_maxrss`), which is
the batch run's memory and nothing else's. The same child then scores the same rows, already
encoded in memory, with raw onnxruntime in the same chunk size.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.40
TARGET_RSS_BYTES = 1 << 30
KEY = "batch/incoming/credit-risk/bench.csv"


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _child(rows: int, chunk_rows: int, env: dict[str, str], out: Any) -> None:
    """The measured process: the batch run first (peak RSS read right after), then raw."""
    os.environ.update(env)
    import numpy as np

    from ferry_core.batch.keys import ObjectRef
    from ferry_core.batch.run import BatchRunner
    from ferry_core.batch.settings import BatchSettings
    from ferry_core.registry.reader import RegistryReader
    from ferry_core.serving.scoring import ScoringService
    from ferry_core.store import ModelStore
    from ferry_local.moto_stack import clients, stack_resources

    res = stack_resources()
    c = clients()
    service = ScoringService(
        RegistryReader(c["dynamodb"], res.registry_table),
        ModelStore(c["s3"], tempfile.mkdtemp()),
        threads=1,
    )
    runner = BatchRunner(c["s3"], service, BatchSettings(chunk_rows=chunk_rows))
    figures: dict[str, Any] = {"rss_before_run_bytes": _rss_bytes()}
    t0 = time.perf_counter()
    manifest = runner.run(ObjectRef(res.data_bucket, KEY))
    e2e = time.perf_counter() - t0
    figures["peak_rss_bytes"] = _rss_bytes()
    ok = manifest["status"] == "succeeded" and manifest["rows_in"] == rows
    figures["manifest_ok"] = ok and rows == manifest["rows_scored"] + manifest["rows_rejected"]
    figures["end_to_end_seconds"] = round(e2e, 3)
    figures["end_to_end_rows_per_second"] = round(rows / e2e)

    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data

    model = service.model(service.registry.resolve("credit-risk"))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, rows, 100_000):
        df = generate_credit_data(min(100_000, rows - start), seed=5 + start)
        for f in CREDIT_RISK_SCHEMA.features:
            col = df[f.name]
            if f.type == "category":
                arr = np.array(col.fillna("").astype(str), dtype=object)
            else:
                arr = col.to_numpy(dtype=np.float32, na_value=np.nan)
            parts.setdefault(f.name, []).append(arr)
    feeds = {k: np.concatenate(v).reshape(-1, 1) for k, v in parts.items()}
    t0 = time.perf_counter()
    for start in range(0, rows, chunk_rows):
        model.score({k: v[start : start + chunk_rows] for k, v in feeds.items()})
    raw = time.perf_counter() - t0
    figures["raw_onnxruntime_seconds"] = round(raw, 3)
    figures["raw_onnxruntime_rows_per_second"] = round(rows / raw)
    out.put(figures)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(rows: int, estimators: int, endpoint: str) -> int:
    """Resources, the registered model and the uploaded CSV, in the emulator; returns bytes."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from ferry_core.batch.sample_files import csv_bytes
    from ferry_core.card import Lineage
    from ferry_core.onboarding.builder import build_credit_risk
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_local.moto_stack import FAKE_CREDENTIALS, clients, create_resources

    os.environ.update(FAKE_CREDENTIALS)
    res = create_resources()
    c = clients()
    writer = RegistryWriter(c["dynamodb"], res.registry_table)
    built = build_credit_risk(rows=6000, n_estimators=estimators)
    card = register_built(built, "credit-risk", c["s3"], res.model_bucket, writer, Lineage())
    writer.set_stage("credit-risk", "production", card.version, None, actor="bench")
    body = csv_bytes(rows)
    c["s3"].put_object(Bucket=res.data_bucket, Key=KEY, Body=body)
    return len(body)


def run_batch_bench(
    rows: int = 1_000_000, chunk_rows: int = 65_536, estimators: int = 100, as_json: bool = False
) -> bool:
    """Run the benchmark; print the figures; True when both targets hold."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server_bin = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen(
        [str(server_bin), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        size = _setup(rows, estimators, endpoint)
        from ferry_local.moto_stack import FAKE_CREDENTIALS

        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        ctx = mp.get_context("spawn")
        queue: Any = ctx.Queue()
        proc = ctx.Process(target=_child, args=(rows, chunk_rows, env, queue))
        proc.start()
        figures = queue.get()
        proc.join()
    finally:
        server.terminate()
        server.wait(timeout=10)
    figures.update(rows=rows, chunk_rows=chunk_rows, estimators=estimators, file_bytes=size)
    figures.update(cpu_count=os.cpu_count(), python=sys.version.split()[0])
    figures["ratio"] = round(
        figures["end_to_end_rows_per_second"] / figures["raw_onnxruntime_rows_per_second"], 3
    )
    figures["targets"] = [
        {
            "target": f"end to end ≥ {TARGET_RATIO:.0%} of raw onnxruntime rows/s",
            "measured": figures["ratio"],
            "limit": TARGET_RATIO,
            "passed": figures["ratio"] >= TARGET_RATIO,
        },
        {
            "target": "peak RSS of the batch process < 1 GiB",
            "measured": figures["peak_rss_bytes"],
            "limit": TARGET_RSS_BYTES,
            "passed": figures["peak_rss_bytes"] < TARGET_RSS_BYTES,
        },
    ]
    ok = figures["manifest_ok"] and all(t["passed"] for t in figures["targets"])
    figures["targets_met"] = ok
    if as_json:
        print(json.dumps(figures, indent=2))
        return ok
    from rich.console import Console
    from rich.table import Table

    mib = 1024 * 1024
    t = Table(title=f"batch scoring, {rows:,} CSV rows (credit-risk, {estimators} trees)")
    for col in ("figure", "value", "target"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    t.add_row("file size", f"{size / mib:.1f} MiB", "")
    t.add_row("end to end (S3 → validate → score → write)",
              f"{figures['end_to_end_rows_per_second']:,} rows/s", "")  # fmt: skip
    t.add_row("raw onnxruntime (in memory, 1 thread)",
              f"{figures['raw_onnxruntime_rows_per_second']:,} rows/s", "")  # fmt: skip
    t.add_row("ratio", f"{figures['ratio']:.0%}", f"≥ {TARGET_RATIO:.0%}")
    t.add_row("RSS of the batch process before the run",
              f"{figures['rss_before_run_bytes'] / mib:.0f} MiB", "")  # fmt: skip
    t.add_row("peak RSS of the batch process", f"{figures['peak_rss_bytes'] / mib:.0f} MiB",
              "< 1024 MiB")  # fmt: skip
    Console().print(t)
    return ok
