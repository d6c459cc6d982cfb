"""`ferry bench scoring`: what the scoring handler costs over raw onnxruntime, against sklearn.

One run, one model (credit-risk, gradient boosting, 100 trees), the same held-out rows:
raw `InferenceSession.run` on pre-encoded feeds, the full scoring handler warm in-process
(payload-2.0 event → JSON parse, validation, encoding, inference, Powertools logging and
EMF), and the fitted sklearn pipeline's `predict_proba` on a DataFrame. The handler runs
with data capture at the rate the stack sets and with capture off; two budgets are timed on
their own (`scoring_budgets`): capture's cost per request and the gate's latency check.
Then cold starts in fresh processes (`cold_start.py`): the handler's first request against
moto vs the bare imports plus one session. Every figure is printed with its conditions; the
return value says if targets held.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ferry_bench.scoring_budgets import budget_targets, measure_budgets

MODEL = "credit-risk"
ESTIMATORS = 100
SIZES = (1, 100)
ROUNDS = 10  # each case runs in this many interleaved blocks, so noise hits all alike
COLD_MODES = ("handler", "bare", "bare-boto3")
CAPTURE_OFF = "handler_capture_off"


def _nothing() -> None:
    return None


@dataclass
class Case:
    """One timed case: a callable, its latencies in nanoseconds, and what to set before each
    of its blocks (the handler's capture rate)."""

    name: str
    instances: int
    fn: Callable[[], Any]
    ns: list[int]
    before: Callable[[], None] = field(default=_nothing)

    def stats(self) -> dict[str, float]:
        import numpy as np

        a = np.asarray(self.ns, dtype=np.float64) / 1e3
        return {
            "p50_us": float(np.percentile(a, 50)),
            "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean()),
            "n": len(self.ns),
        }


def _time_block(fn: Callable[[], Any], n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)


def _run_cases(cases: list[Case], iterations: int) -> None:
    """Warm every case, then time them in interleaved blocks (gc stays enabled)."""
    warm = max(20, iterations // 20)
    for c in cases:
        c.before()
        for _ in range(warm):
            c.fn()
    rounds = max(1, min(ROUNDS, iterations))
    for r in range(rounds):
        n = iterations * (r + 1) // rounds - iterations * r // rounds
        for c in cases:
            c.before()
            _time_block(c.fn, n, c.ns)


def _capture_at(buffer: Any, rate: float) -> Callable[[], None]:
    """Set the handler's capture buffer to `rate`; off (0) first drains what it holds, so the
    case sees exactly the rate-0 path (one comparison a request)."""

    def switch() -> None:
        if rate == 0.0:
            buffer.flush(wait=True)
        buffer.sample_rate = rate

    return switch


def _handler_call(handler: Any, event: dict[str, Any], context: Any) -> Callable[[], Any]:
    def call() -> Any:
        resp = handler.lambda_handler(event, context)
        if resp["statusCode"] != 200:
            raise RuntimeError(f"handler answered {resp['statusCode']}: {resp['body'][:300]}")
        return resp

    return call


def _seed_server(built: Any, endpoint: str, workdir: Path, rows: list[dict]) -> dict[str, str]:
    """Register the model in a moto server; return the scoring function's environment for it."""
    import boto3

    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_local.events import http_api_event
    from ferry_local.moto_stack import FAKE_CREDENTIALS, create_resources

    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        res = create_resources()
        s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
        writer = RegistryWriter(ddb, res.registry_table)
        card = register_built(built, MODEL, s3, res.model_bucket, writer, Lineage())
        writer.set_stage(MODEL, "production", card.version, None, actor="bench")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (workdir / "model.onnx").write_bytes(built.onnx_bytes)
    event = http_api_event(
        "POST",
        f"/v1/models/{MODEL}/predict",
        json.dumps({"instances": rows}),
        route_key="POST /v1/models/{model}/predict",
        path_parameters={"model": MODEL},
    )
    (workdir / "event.json").write_text(json.dumps(event))
    return {**env, **res.environment(workdir / "tmp")}


def _cold_child(mode: str, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    cache = Path(tempfile.mkdtemp(prefix="ferry-cold-cache-", dir=workdir))  # empty: a real fetch
    proc = subprocess.run(
        # -P: nothing of the working directory on sys.path, only the installed packages
        [sys.executable, "-P", "-m", "ferry_bench.cold_start", mode, str(workdir)],
        env={**os.environ, **env, "MODEL_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child {mode} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cold_starts(
    workdir: Path, env: dict[str, str], runs: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Each mode in `runs` fresh processes, interleaved; medians in ms."""
    ms: dict[str, list[float]] = {m: [] for m in COLD_MODES}
    parts: dict[str, list[float]] = {"setup_ms": [], "import_ms": [], "first_request_ms": []}
    modules_before: dict[str, int] = {}
    preloaded: list[str] = []
    for i in range(runs):
        for mode in COLD_MODES:
            out = _cold_child(mode, workdir, env)
            ms[mode].append(out["ms"])
            modules_before[mode] = out["modules_before"]
            if mode == "handler":
                preloaded = out["preloaded"]
                for k, v in parts.items():
                    v.append(out[k])
        log(f"cold run {i + 1}/{runs}: " + ", ".join(f"{m} {ms[m][-1]:.0f} ms" for m in ms))
    med = {m: statistics.median(v) for m, v in ms.items()}
    return {
        "runs_ms": ms,
        "median_ms": med,
        "handler_median_parts_ms": {k: statistics.median(v) for k, v in parts.items()},
        "ratio_vs_bare": med["handler"] / med["bare"],
        "ratio_vs_bare_boto3": med["handler"] / med["bare-boto3"],
        "modules_loaded_before_timer": modules_before,
        "handler_preloaded_modules": preloaded,
    }


def _targets(figs: dict[str, dict[str, float]], cold: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, measured: float, limit: float, ok: bool, unit: str) -> None:
        out.append(
            {"target": name, "measured": measured, "limit": limit, "unit": unit, "passed": ok}
        )

    for n in SIZES:
        h, o, s = figs[f"handler/{n}"], figs[f"ort/{n}"], figs[f"sklearn/{n}"]
        r = h["p50_us"] / o["p50_us"]
        add(f"handler p50 ≤ 8× raw ORT p50 ({n})", r, 8.0, r <= 8.0, "×")
        r = h["p50_us"] / s["p50_us"]
        add(f"handler p50 < 1/5 sklearn p50 ({n})", r, 0.2, r < 0.2, "×")
        limit = 1000.0 if n == 1 else 3000.0
        p99 = h["p99_us"]
        add(f"handler p99 < {limit / 1000:.0f} ms ({n})", p99, limit, p99 < limit, "µs")
    if cold:
        r = cold["ratio_vs_bare"]
        add(
            "cold handler ≤ 1.5× bare (both timed from an empty interpreter)", r, 1.5, r <= 1.5, "×"
        )
    return out


def _print_tables(
    console: Console,
    figs: dict[str, dict[str, float]],
    budgets: dict[str, Any],
    cold: dict[str, Any],
    targets: list[dict[str, Any]],
    meta: dict[str, Any],
) -> None:
    t = Table(
        "case",
        "n",
        "p50 µs",
        "p99 µs",
        "mean µs",
        "h/ORT",
        "h/skl",
        title=f"warm latency: {MODEL}, {ESTIMATORS} trees, {meta['iterations']} calls per case",
        caption="n = instances per call; h/ORT, h/skl = handler p50 / raw ORT p50, / sklearn p50",
    )
    labels = {
        "ort": "raw ORT run",
        "handler": f"handler, capture {meta['capture_sample_rate']:.0%}",
        CAPTURE_OFF: "handler, capture off",
        "sklearn": "sklearn proba",
    }
    for kind in labels:
        for n in SIZES:
            f = figs[f"{kind}/{n}"]
            ratios = ["", ""]
            if kind == "handler":
                ratios = [
                    f"{f['p50_us'] / figs[f'ort/{n}']['p50_us']:.1f}×",
                    f"{f['p50_us'] / figs[f'sklearn/{n}']['p50_us']:.2f}×",
                ]
            t.add_row(
                labels[kind],
                str(n),
                f"{f['p50_us']:,.1f}",
                f"{f['p99_us']:,.1f}",
                f"{f['mean_us']:,.1f}",
                *ratios,
            )
    console.print(t)
    _print_budgets(console, figs, budgets)
    if cold:
        c = Table(
            "cold start",
            "median ms",
            "runs ms",
            title=f"cold start: {len(cold['runs_ms']['handler'])} fresh processes each",
        )
        desc = {
            "handler": "handler: import + 1st predict",
            "bare": "bare: imports + session",
            "bare-boto3": "bare, boto3 pre-imported",
        }
        for m in COLD_MODES:
            runs = ", ".join(f"{x:.0f}" for x in cold["runs_ms"][m])
            c.add_row(desc[m], f"{cold['median_ms'][m]:.0f}", runs)
            if m == "handler":
                p = cold["handler_median_parts_ms"]
                c.add_row("  of which reading the event", f"{p['setup_ms']:.0f}", "")
                c.add_row("  of which import", f"{p['import_ms']:.0f}", "")
                c.add_row("  of which 1st predict", f"{p['first_request_ms']:.0f}", "")
        c.add_row("handler / bare", f"{cold['ratio_vs_bare']:.2f}×", "the target")
        c.add_row("handler / bare-boto3", f"{cold['ratio_vs_bare_boto3']:.2f}×", "for reference")
        console.print(c)
        console.print(
            "[dim]bare: `import numpy, onnxruntime, boto3, pydantic` + InferenceSession(file), "
            "timed from the top of a fresh interpreter. handler: the same fresh interpreter, "
            "timed from its top too: import the handler, then its first predict — two boto3 "
            "clients, registry reads and the artifact GET over HTTP to a moto server on "
            "127.0.0.1 (as Lambda calls DynamoDB and S3 over the network), sha256 check, "
            "self-containment check, session. X-Ray tracing is off outside Lambda, so the "
            "X-Ray SDK is not imported (inside Lambda with active tracing it adds ~200 ms).[/]"
        )
    g = Table("target", "measured", "limit", "result", title="targets")
    for tg in targets:
        fmt = "{:,.0f}" if tg["unit"] == "µs" and tg["limit"] >= 100 else "{:.2f}"
        g.add_row(
            tg["target"],
            fmt.format(tg["measured"]) + " " + tg["unit"],
            fmt.format(tg["limit"]) + " " + tg["unit"],
            "[green]PASS" if tg["passed"] else "[red]FAIL",
        )
    console.print(g)


def _print_budgets(
    console: Console, figs: dict[str, dict[str, float]], budgets: dict[str, Any]
) -> None:
    cap, gate = budgets["capture"], budgets["gate_latency"]
    b = Table("figure", "value", title="capture and the gate's latency check")
    b.add_row(
        f"capture.offer, {cap['requests']:,} one-row requests, {cap['sample_rate']:.0%} sampled, "
        f"background flush every {cap['flush_every_rows']} rows",
        f"{cap['mean_us']:.2f} µs mean ({cap['rows_written']:,} rows written)",
    )
    for n, delta in _capture_in_handler_us(figs).items():
        b.add_row(f"handler mean, capture on − off (n = {n})", f"{delta:+,.1f} µs")
    b.add_row(
        f"gate latency check: single-row validate + predict, {gate['runs']} runs",
        f"p50 {gate['p50_ms']:.3f} ms, p99 {gate['p99_ms']:.3f} ms, max {gate['max_ms']:.3f} ms",
    )
    console.print(b)


def _cold_figures(
    built: Any, workdir: Path, rows: list[dict], runs: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Cold starts against a moto server on 127.0.0.1 seeded with the model in production."""
    from moto.server import ThreadedMotoServer

    log(f"cold starts: {runs} fresh processes per mode, moto server on 127.0.0.1…")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = _seed_server(built, f"http://{host}:{port}", workdir, rows)
        return _cold_starts(workdir, env, runs, log)
    finally:
        server.stop()


def _capture_in_handler_us(figs: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean handler latency with capture on minus off, per request size (a figure, not a
    target: the difference of two means is noisier than the offer's own timing)."""
    return {
        f"{n}": figs[f"handler/{n}"]["mean_us"] - figs[f"{CAPTURE_OFF}/{n}"]["mean_us"]
        for n in SIZES
    }


def _json_doc(
    meta: dict[str, Any],
    figs: dict[str, dict[str, float]],
    budgets: dict[str, Any],
    cold: dict[str, Any],
    targets: list[dict[str, Any]],
) -> dict[str, Any]:
    """The figures as one JSON document, with the handler's overhead as ratios."""
    ratios = {
        f"handler_over_{k}_p50/{n}": figs[f"handler/{n}"]["p50_us"] / figs[f"{k}/{n}"]["p50_us"]
        for n in SIZES
        for k in ("ort", "sklearn")
    }
    passed = all(t["passed"] for t in targets)
    capture = {**budgets["capture"], "handler_mean_on_minus_off_us": _capture_in_handler_us(figs)}
    return {
        "meta": meta,
        "warm": figs,
        "ratios": ratios,
        "capture": capture,
        "gate_latency": budgets["gate_latency"],
        "cold": cold,
        "targets": targets,
        "passed": passed,
    }


def run_scoring_bench(iterations: int, cold_runs: int, as_json: bool) -> bool:
    """Measure, print the figures (Rich tables or one JSON object); True if all targets held."""
    import onnxruntime as ort

    from ferry_core.card import Lineage
    from ferry_core.onboarding.builder import (
        CREDIT_RISK_SCHEMA,
        build,
        fit_credit_risk,
        records,
        to_model_frame,
    )
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_core.serving.inference import OnnxModel, session_options
    from ferry_local.events import LambdaContext, http_api_event
    from ferry_local.handlers import load_handler
    from ferry_local.moto_stack import clients, local_aws

    if iterations < 1 or cold_runs < 0:
        raise ValueError("iterations must be ≥ 1 and cold_runs ≥ 0")
    console = Console(stderr=as_json)
    log = console.log if not as_json else (lambda msg: console.print(f"[dim]{msg}[/]"))
    started = time.perf_counter()

    log(f"training {MODEL} ({ESTIMATORS} trees) and converting to ONNX…")
    pipe, train, valid = fit_credit_risk(n_estimators=ESTIMATORS)
    built = build(pipe, CREDIT_RISK_SCHEMA, train, valid)
    if not built.parity["passed"]:
        raise RuntimeError(f"ONNX parity failed: {built.parity}")
    held_out = valid.iloc[: max(SIZES)].reset_index(drop=True)
    rows = records(held_out, CREDIT_RISK_SCHEMA)
    figs: dict[str, dict[str, float]] = {}
    budgets: dict[str, Any] = {}
    cold: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp,
        Path(os.devnull).open("w") as sink,
    ):
        workdir = Path(tmp)
        with local_aws(workdir / "tmp") as res:
            aws = clients()
            writer = RegistryWriter(aws["dynamodb"], res.registry_table)
            lineage = Lineage(entry_point="ferry_core.onboarding.builder:fit_credit_risk")
            card = register_built(built, MODEL, aws["s3"], res.model_bucket, writer, lineage)
            writer.set_stage(MODEL, "production", card.version, None, actor="bench")

            # The Powertools logger binds sys.stdout at import: logs and EMF go to devnull,
            # but every record is still built and written.
            with contextlib.redirect_stdout(sink):
                handler = load_handler("scoring")
            handler.service.cache_clear()
            handler.capture.cache_clear()
            capture = handler.capture()  # at the rate the stack sets the function
            rate = capture.sample_rate
            context = LambdaContext("ferry-scoring")
            session = ort.InferenceSession(  # configured exactly as the handler's session
                built.onnx_bytes, session_options(1), providers=["CPUExecutionProvider"]
            )
            encoder = OnnxModel(card, built.onnx_bytes)
            output = card.output.probability_output
            cases: list[Case] = []
            for n in SIZES:
                feeds = encoder.encode_rows(rows[:n])
                frame = to_model_frame(held_out.iloc[:n], CREDIT_RISK_SCHEMA)
                event = http_api_event(
                    "POST",
                    f"/v1/models/{MODEL}/predict",
                    json.dumps({"instances": rows[:n]}),
                    routes=handler.ROUTES,
                )
                call = _handler_call(handler, event, context)
                with contextlib.redirect_stdout(sink):
                    got = json.loads(call()["body"])["predictions"]
                want = session.run([output], feeds)[0][:, card.output.positive_index]
                if max(abs(p["score"] - w) for p, w in zip(got, want, strict=True)) > 1e-6:
                    raise RuntimeError("handler and raw onnxruntime disagree on the same rows")
                cases += [
                    Case("ort", n, lambda f=feeds: session.run([output], f), []),
                    Case("handler", n, call, [], _capture_at(capture, rate)),
                    Case(CAPTURE_OFF, n, call, [], _capture_at(capture, 0.0)),
                    Case("sklearn", n, lambda x=frame: pipe.predict_proba(x), []),
                ]
            log(f"timing {len(cases)} cases × {iterations} calls (interleaved, after warm-up)…")
            with contextlib.redirect_stdout(sink):
                _run_cases(cases, iterations)
            figs = {f"{c.name}/{c.instances}": c.stats() for c in cases}
            log("timing capture.offer and the gate's latency check…")
            budgets = measure_budgets(capture, rows[0], got[0], built, aws["s3"], res.model_bucket)
        if cold_runs:
            cold = _cold_figures(built, workdir, rows[:1], cold_runs, log)

    targets = _targets(figs, cold) + budget_targets(budgets["capture"], budgets["gate_latency"])
    passed = all(t["passed"] for t in targets)
    meta = {
        "model": MODEL,
        "estimators": ESTIMATORS,
        "iterations": iterations,
        "cold_runs": cold_runs,
        "onnx_bytes": len(built.onnx_bytes),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "capture_sample_rate": rate,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if as_json:
        print(json.dumps(_json_doc(meta, figs, budgets, cold, targets), indent=2))
    else:
        _print_tables(console, figs, budgets, cold, targets, meta)
        verdict = "[green]all targets passed" if passed else "[red]some targets failed"
        console.print(f"{verdict}[/] [dim]({meta['seconds']} s)[/]")
    return passed
