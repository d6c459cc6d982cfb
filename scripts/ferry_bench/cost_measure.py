"""The measurements `ferry bench cost` prices: the scoring handler's warm duration and payload
sizes per request, and the batch path's end-to-end rows per second, with their conditions.

The handler is timed the way `ferry bench scoring` times it (its cases and interleaved blocks,
the real handler under moto with the model registered); the batch path is `ferry bench batch`
itself. Earlier output of either bench (or of `ferry bench cost --json`) can stand in for a run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferry_bench.running_platform import registered_handler
from ferry_bench.scoring_latency import MODEL, SIZES, Case, _handler_call, _run_cases


def machine() -> dict[str, Any]:
    """Where the figures were measured: this CPU is not a Lambda or SageMaker one."""
    return {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "bytecode": "CPython, .pyc cache as installed",
        "emulator": "moto (in-process), no network hop",
    }


def measure_online(estimators: int, iterations: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Warm handler durations for 1 and 100 instances a request, and the bytes in and out."""
    import onnxruntime as ort

    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, build, fit_credit_risk, records
    from ferry_local.events import LambdaContext, http_api_event

    log(f"training {MODEL} ({estimators} trees) and converting to ONNX…")
    pipe, train, valid = fit_credit_risk(n_estimators=estimators)
    built = build(pipe, CREDIT_RISK_SCHEMA, train, valid)
    rows = records(valid.iloc[: max(SIZES)].reset_index(drop=True), CREDIT_RISK_SCHEMA)
    sizes: dict[str, dict[str, int]] = {}
    with (
        Path(os.devnull).open("w") as sink,
        contextlib.redirect_stdout(sink),  # Powertools logs and EMF: written, not shown
        registered_handler(built, MODEL) as handler,
    ):
        handler.capture.cache_clear()
        capture_rate = handler.capture().sample_rate
        context = LambdaContext("ferry-scoring")
        cases = []
        for n in SIZES:
            body = json.dumps({"instances": rows[:n]})
            path = f"/v1/models/{MODEL}/predict"
            event = http_api_event("POST", path, body, routes=handler.ROUTES)
            call = _handler_call(handler, event, context)
            answer = call()["body"]
            sizes[str(n)] = {
                "request_bytes": len(body.encode()),
                "response_bytes": len(answer.encode()),
            }
            cases.append(Case("handler", n, call, []))
        log(f"timing the handler, {len(cases)} request sizes × {iterations} calls…")
        _run_cases(cases, iterations)
        handler.capture().close()
    warm = {str(c.instances): {**c.stats(), **sizes[str(c.instances)]} for c in cases}
    return {
        "warm": warm,
        "conditions": {
            **machine(),
            "model": f"{MODEL}, {estimators} trees, {len(built.onnx_bytes):,} ONNX bytes",
            "iterations": iterations,
            "capture_sample_rate": capture_rate,
            "onnxruntime": ort.__version__,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "source": "measured now (the scoring handler in this process)",
        },
    }


def measure_batch(rows: int, estimators: int, log: Callable[[str], None]) -> dict[str, Any]:
    """`ferry bench batch` at `rows` rows: its JSON figures."""
    from ferry_bench.batch_throughput import run_batch_bench

    log(f"running the batch path on {rows:,} rows…")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_batch_bench(
            rows=rows, chunk_rows=min(65_536, rows), estimators=estimators, as_json=True
        )
    return batch_figures(json.loads(out.getvalue()), "measured now (`ferry bench batch`)")


def batch_figures(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """The batch bench's JSON reduced to what the cost model needs, with its conditions."""
    return {
        "rows_per_second": doc["end_to_end_rows_per_second"],
        "conditions": {
            **{k: doc.get(k) for k in ("rows", "chunk_rows", "estimators", "cpu_count", "python")},
            "peak_rss_bytes": doc.get("peak_rss_bytes"),
            "emulator": "moto server on 127.0.0.1 (S3 reads and writes over HTTP)",
            "source": source,
        },
    }


def online_from_scoring(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """`ferry bench scoring --json` output as online figures. It records no payload sizes:
    the request bytes are those of the same generated rows, the response bytes unknown (0)."""
    from ferry_bench.running_platform import valid_instances

    rows = valid_instances(max(SIZES))
    warm = {}
    for key, figures in doc["warm"].items():
        kind, n = key.split("/")
        if kind == "handler":
            body = json.dumps({"instances": rows[: int(n)]}).encode()
            warm[n] = {**figures, "request_bytes": len(body), "response_bytes": 0}
    conditions = {
        **doc.get("meta", {}),
        "source": source,
        "payloads": "request bytes of generated rows; response bytes not recorded (0)",
    }
    return {"warm": warm, "conditions": conditions}


def load_earlier(paths: list[Path]) -> dict[str, Any]:
    """Online and batch figures from earlier JSON: `ferry bench scoring`, `ferry bench batch` or
    `ferry bench cost` output, told apart by their keys."""
    found: dict[str, Any] = {}
    for path in paths:
        doc = json.loads(path.read_text())
        source = f"earlier output: {path}"
        if "measured" in doc:  # a `ferry bench cost --json` document
            for part, figures in doc["measured"].items():
                found[part] = {**figures, "conditions": {**figures["conditions"], "source": source}}
        elif "warm" in doc:
            found["online"] = online_from_scoring(doc, source)
        elif "end_to_end_rows_per_second" in doc:
            found["batch"] = batch_figures(doc, source)
        else:
            raise ValueError(f"{path}: not the JSON of a scoring, batch or cost bench")
    return found
