"""Property 7: load is held, and a promotion and a rollback under load drop nothing.

Locust (through `ferry bench load`'s runner, scripts/ferry_bench/http_load.py: headless, in its
own process, bounded in time, 10% bad requests judged by their documented refusal) against the
local HTTP API of a `ferry local up` child process (or a given platform):

- steps of 10 and 50 users, then more users until the platform degrades (failures, p99 over
  `SUSTAINABLE_P99_MS`, or no more throughput): requests/s, fail ratio and p50/p95/p99 per step,
  and the highest sustainable rate on this machine;
- in the middle of one step, a governed promotion of v2 and then a rollback to v1
  (ferry_core.registry.governance, as `ferry promote` / `ferry rollback` do them). Probe
  clients score a fixed set of applications all along; each response must be 200, name one
  version, and carry exactly that version's scores for every instance (v1 and v2 are different
  models, so a response mixing the two, or naming one while scoring with the other, cannot
  pass), and Locust must count 0 failures over the switch;
- the throttling of the stack's API stage, read from the synthesized template the platform runs
  (and, in the long mode, from the dev and prod templates). The local API throttles as API
  Gateway does, so a step over the stage's rate gets 429s: they are counted apart (as
  throttled, not failed), and a probe's 429 is throttling, not a wrong answer.

Every request is signed as the platform's `client` identity.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.running_platform import (
    RunningPlatform,
    local_platform,
    small_model,
    valid_instances,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SUSTAINABLE_P99_MS = 1000.0  # a step whose p99 is over this is not sustained
SUSTAINABLE_FAIL_RATIO = 0.001
PROBE_INSTANCES = 8
PROBE_CLIENTS = 3


@dataclass
class Step:
    users: int
    seconds: int
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    throttled: int = 0  # 429s from the stage's throttling (not in `failures`)
    errors: list[str] = field(default_factory=list)

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def sustained(self) -> bool:
        return (
            self.requests > 0
            and self.fail_ratio <= SUSTAINABLE_FAIL_RATIO
            and self.p99_ms <= SUSTAINABLE_P99_MS
        )

    def text(self) -> str:
        return (
            f"{self.rps:,.0f} req/s, {self.failures}/{self.requests:,} failed "
            f"({self.fail_ratio:.2%}), p50/p95/p99 {self.p50_ms:.0f}/{self.p95_ms:.0f}/"
            f"{self.p99_ms:.0f} ms, {self.throttled:,} throttled"
        )


def locust_target(platform: RunningPlatform) -> Any:
    """The platform as `ferry bench load`'s target, signing as its `client` identity."""
    from ferry_bench.http_load import Target

    return Target(
        platform.api_url,
        platform.aws_endpoint_url,
        platform.outputs,
        False,
        platform.credentials,
        platform.region,
        platform.identities,
    )


def locust_step(platform: RunningPlatform, model: str, users: int, seconds: int) -> Step:
    """One headless Locust run (http_load's runner and locustfile) → its aggregated figures."""
    from ferry_bench.http_load import _is_429, _run_locust

    target = locust_target(platform)
    with tempfile.TemporaryDirectory(prefix="ferry-p7-locust-") as tmp:
        rows, failures, _ = _run_locust(
            target,
            Path(tmp),
            users=users,
            spawn_rate=max(10.0, users / 2),
            run_time=f"{seconds}s",
            bad_percent=10,
            instances=1,
            model=model,
        )
    step = Step(users, seconds)
    failed = [f for f in failures if not _is_429(f)]
    step.errors = [
        f"{f.get('Name')}: {f.get('Error')} (×{f.get('Occurrences')})" for f in failed[:5]
    ]
    step.throttled = sum(int(f.get("Occurrences", 0)) for f in failures if _is_429(f))
    total = next((r for r in rows if r.name == "Aggregated"), None)
    if total is not None:
        step.requests, step.rps = total.requests, total.rps
        step.failures = total.failures - step.throttled
        step.p50_ms, step.p95_ms, step.p99_ms = total.p50_ms, total.p95_ms, total.p99_ms
    return step


# -- the version switch -------------------------------------------------------------------------


@dataclass
class Switch:
    """What the probe clients saw while production moved v1 → v2 → v1."""

    responses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    promoted_at: float | None = None
    v2_seen_at: float | None = None
    rolled_back_at: float | None = None
    v1_again_at: float | None = None
    during_load: bool = False


class Probe:
    """Clients that score PROBE_INSTANCES fixed applications and judge every response."""

    def __init__(
        self,
        api_url: str,
        model: str,
        expected: dict[int, list[float]],
        old: int,
        auth: Any = None,
    ) -> None:
        self.url = f"{api_url}/v1/models/{model}/predict"
        self.auth = auth
        self.old = old
        self.body = {"instances": valid_instances()[:PROBE_INSTANCES]}
        self.expected = expected
        self.switch = Switch()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, name=f"p7-probe-{i}", daemon=True)
            for i in range(PROBE_CLIENTS)
        ]

    def __enter__(self) -> Probe:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)

    def _loop(self) -> None:
        import requests

        session = requests.Session()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                resp = session.post(self.url, json=self.body, timeout=60, auth=self.auth)
                status, text = resp.status_code, resp.text
            except requests.RequestException as exc:
                self._record("dropped", f"transport error: {exc!r}"[:200])
                continue
            self.judge(status, text, sent)

    def judge(self, status: int, text: str, sent: float | None = None) -> None:
        """One response: 200, one version, and that version's scores for every instance.

        `sent` is when the request left: a switch counts as seen from the first request sent
        after it (responses to requests already in flight may still, rightly, be the old).
        """
        sent = time.monotonic() if sent is None else sent
        if status == 429:  # the stage's throttling: no answer, and no wrong one
            with self._lock:
                self.switch.responses["throttled"] += 1
            return
        if status != 200:
            self._record("dropped", f"{status}: {text[:160]}")
            return
        try:
            doc = json.loads(text)
            version = doc["version"]
            scores = [p["score"] for p in doc["predictions"]]
        except (ValueError, KeyError, TypeError):
            self._record("malformed", f"not a prediction body: {text[:160]}")
            return
        if version not in self.expected:
            self._record("unknown version", f"names version {version!r}")
            return
        if scores != self.expected[version]:
            others = [v for v, s in self.expected.items() if v != version and s == scores]
            why = f"names v{version}, scored by v{others[0]}" if others else "mixed scores"
            self._record("mixed", f"{why}: {scores}")
            return
        with self._lock:
            self.switch.responses[f"v{version}"] += 1
            now, sw = time.monotonic(), self.switch
            if sw.promoted_at and not sw.v2_seen_at and version != self.old:
                sw.v2_seen_at = now
            after_rollback = sw.rolled_back_at is not None and sent >= sw.rolled_back_at
            if after_rollback and not sw.v1_again_at and version == self.old:
                sw.v1_again_at = now

    def _record(self, kind: str, problem: str) -> None:
        with self._lock:
            self.switch.responses[kind] += 1
            if len(self.switch.problems) < 10:
                self.switch.problems.append(problem)

    def wait_for(self, attr: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while getattr(self.switch, attr) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _expected_scores(
    platform: RunningPlatform, model: str, versions: list[int]
) -> dict[int, list[float]]:
    """Each version's own scores for the probe applications, asked with `?version=N`."""
    import requests

    body = {"instances": valid_instances()[:PROBE_INSTANCES]}
    expected = {}
    for v in versions:
        url = f"{platform.api_url}/v1/models/{model}/predict?version={v}"
        resp = requests.post(url, json=body, timeout=60, auth=platform.auth())
        resp.raise_for_status()
        expected[v] = [p["score"] for p in resp.json()["predictions"]]
    return expected


def switch_under_load(
    platform: RunningPlatform, model: str, v1: int, v2: int, users: int, seconds: int, wait: float
) -> tuple[Step, Switch]:
    """A Locust step with a promotion of v2 and a rollback to v1 in its middle (the admin's,
    through the governance API)."""
    from ferry_core.registry.policies import wait_for_gate
    from ferry_core.registry.reader import RegistryReader

    expected = _expected_scores(platform, model, [v1, v2])
    if expected[v1] == expected[v2]:
        raise RuntimeError("v1 and v2 score the probe alike: a mixed response would not show")
    # Production takes v2 only with a passed gate against v1, the champion now.
    started = platform.govern("admin", "validate", {"model": model, "version": v2})
    reader = RegistryReader(
        platform.client("dynamodb"), platform.outputs["RegistryTableName"], pointer_ttl_seconds=0
    )
    gate = wait_for_gate(reader, model, v2, started["execution"])
    if gate is None or gate.get("passed") is not True:
        raise RuntimeError(f"v2 did not pass the validation gate against v1: {gate}")
    result: dict[str, Step] = {}
    load = threading.Thread(
        target=lambda: result.setdefault("step", locust_step(platform, model, users, seconds)),
        daemon=True,
    )
    with Probe(platform.api_url, model, expected, v1, platform.auth()) as probe:
        load.start()
        time.sleep(min(4.0, seconds / 5))  # Locust starts and spawns its users
        probe.switch.promoted_at = time.monotonic()
        promote = {"model": model, "version": v2, "reason": "promotion under load"}
        platform.govern("admin", "promote/production", promote)
        if probe.wait_for("v2_seen_at", wait):
            probe.switch.rolled_back_at = time.monotonic()
            rollback = {"model": model, "reason": "rollback under load"}
            platform.govern("admin", "rollback/production", rollback)
            probe.wait_for("v1_again_at", wait)
        probe.switch.during_load = load.is_alive()
        load.join(timeout=seconds + 180)
    return result.get("step", Step(users, seconds)), probe.switch


# -- throttling in the templates ----------------------------------------------------------------


def stage_throttles(template: dict[str, Any]) -> list[tuple[float, int] | None]:
    """(rate, burst) of every HTTP API stage's default route settings (None: not throttled)."""
    found: list[tuple[float, int] | None] = []
    for r in template["Resources"].values():
        if r["Type"] != "AWS::ApiGatewayV2::Stage":
            continue
        settings = r["Properties"].get("DefaultRouteSettings", {})
        rate, burst = settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
        found.append((rate, burst) if rate and burst else None)
    return found


def throttle_checks(templates: dict[str, dict[str, Any]], result: PropertyResult) -> None:
    from infra.config import ENVIRONMENTS

    for env, template in sorted(templates.items()):
        throttles = stage_throttles(template)
        config = ENVIRONMENTS.get("dev" if env == "local" else env)
        if not throttles or None in throttles:
            result.violations.append(f"{env}: an API stage without throttling ({throttles})")
            continue
        want = (config.api_throttle_rate_limit, config.api_throttle_burst_limit) if config else None
        if want and any(t != want for t in throttles):
            result.violations.append(
                f"{env}: stage throttling {throttles} is not the config's {want}"
            )
        rate, burst = throttles[0]
        result.figures[f"throttle {env} (rate/burst)"] = f"{rate:g}/s, burst {burst}"


def _local_template() -> dict[str, Any] | None:
    path = REPO_ROOT / ".ferry" / "cdk.out" / "Ferry-local.template.json"
    return json.loads(path.read_text()) if path.exists() else None


# -- the property -------------------------------------------------------------------------------


def judge(steps: list[Step], step: Step, switch: Switch, result: PropertyResult) -> None:
    """Figures and violations of the load steps and of the switch step."""
    through = "measured through the local HTTP API on this machine, 429s from its throttling gate"
    for s in steps:
        result.figures[f"{s.users} users ({s.seconds} s)"] = s.text()
        result.emulator_only[f"{s.users} users ({s.seconds} s)"] = through
    sustained = [s for s in steps if s.sustained]
    best = max(sustained, key=lambda s: s.rps, default=None)
    result.figures["highest sustainable"] = (
        f"{best.rps:,.0f} req/s at {best.users} users" if best else "none"
    )
    if step not in steps:
        result.figures[f"switch step: {step.users} users ({step.seconds} s)"] = step.text()
        result.emulator_only[f"switch step: {step.users} users ({step.seconds} s)"] = through
    result.figures["switch: probe responses"] = ", ".join(
        f"{k} {n:,}" for k, n in sorted(switch.responses.items())
    )
    result.emulator_only["highest sustainable"] = through
    if switch.responses.get("throttled"):
        result.emulator_only["switch: probe responses"] = (
            "its `throttled` count is the local gate's"
        )
    if switch.promoted_at and switch.v2_seen_at:
        result.figures["promotion seen after s"] = round(switch.v2_seen_at - switch.promoted_at, 2)
    if switch.rolled_back_at and switch.v1_again_at:
        result.figures["rollback seen after s"] = round(
            switch.v1_again_at - switch.rolled_back_at, 2
        )
    v = result.violations
    for s in steps[:2]:  # 10 and 50 users must be served without a failed request
        if (s.requests == 0 or s.failures) and s is not step:
            v.append(f"{s.users} users: {s.failures} of {s.requests} failed: {s.errors}")
    if step.requests == 0 or step.failures:
        v.append(f"switch step: {step.failures} of {step.requests} failed: {step.errors}")
    bad = {k: n for k, n in switch.responses.items() if k != "throttled" and not k.startswith("v")}
    if bad:
        v.append(f"switch: probe responses {bad}; first: {switch.problems[:3]}")
    if not switch.v2_seen_at:
        v.append("switch: the promotion was never seen by the API")
    if not switch.v1_again_at:
        v.append("switch: the rollback was never seen by the API")
    if not switch.during_load:
        v.append("switch: Locust had finished before the switch was over; nothing was loaded")


def run(
    mode: Mode, result: PropertyResult, platform: RunningPlatform | None = None
) -> tuple[list[Step], Step, Switch]:
    """Register v1 and v2 of a fresh model, run the steps, the switch and the throttle checks."""
    from ferry_bench.http_load import wait_until_served

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if platform is None:
            platform = stack.enter_context(local_platform())
        model = f"load-{uuid.uuid4().hex[:8]}"
        # v2 is another model (other seed, more trees): its scores differ from v1's, and it
        # is the better one, so the validation gate lets it replace v1 under load.
        v1 = platform.register(small_model(12, 5), model).version
        v2 = platform.register(small_model(11), model, production=False).version
        wait_until_served(locust_target(platform), model)
        result.figures["setup s"] = round(time.perf_counter() - started, 1)
        steps: list[Step] = []
        if mode.long:
            for users in (10, 50):
                steps.append(locust_step(platform, model, users, 20))
            for users in (100, 200, 400):  # step up until it degrades
                steps.append(locust_step(platform, model, users, 20))
                last, before = steps[-1], steps[-2]
                if not last.sustained or last.rps < before.rps * 1.05:
                    break
            step, switch = switch_under_load(platform, model, v1, v2, 50, 30, wait=12)
        else:
            step, switch = switch_under_load(platform, model, v1, v2, 10, 18, wait=7)
            steps.append(step)
    judge(steps, step, switch, result)
    templates: dict[str, dict[str, Any]] = {}
    local = _local_template()
    if local is not None:
        templates["local"] = local
    if mode.long:
        from ferry_bench.stack_lockdown import synthesize

        with tempfile.TemporaryDirectory() as tmp:
            templates.update(synthesize(Path(tmp)).templates)
    if not templates:
        result.violations.append("no synthesized template to read the throttling from")
    throttle_checks(templates, result)
    return steps, step, switch


@prop(7, "Load is held")
def check(mode: Mode, result: PropertyResult) -> None:
    """Locust steps on the local HTTP API, a promotion and a rollback under load, throttling."""
    run(mode, result)
