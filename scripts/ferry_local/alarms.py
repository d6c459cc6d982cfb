"""CloudWatch alarms evaluated locally on the metrics the functions publish.

moto stores alarms but never evaluates them, and its CloudWatch computes no percentiles.
`AlarmEvaluator` reads every metric alarm from (moto's) CloudWatch on each tick (the
template's and those put at run time, such as a model's by the governance function at
registration), computes its statistic
over its evaluation periods from the raw values `emf.MetricSink` kept, sets the alarm's state
with `set_alarm_state`, and on a change does what AWS does: puts the
`CloudWatch Alarm State Change` event on the default bus (EventBridge routes it to the rules'
targets: the drift alarm starts retraining) and runs the alarm's actions (SNS, Lambda).

Differences from AWS, on purpose: windows end now instead of at the last whole period, so a
breach shows on the next tick; `time_scale` shrinks every period (0.1 turns 5 minutes into
30 s) so a demo need not wait; metric math supports + - * /, numbers, FILL, ABS, and
SEARCH('{Namespace,dims} MetricName="X"', stat, period) reduced by SUM/AVG/MAX/MIN. Besides
the functions' EMF metrics, the AWS/Lambda, AWS/SQS and AWS/States metrics the services
publish are derived locally (emf.lambda_report_points, service_metrics.ServiceSampler).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import operator
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ferry_local.emf import MetricSink, dims
from ferry_local.eventbridge import Dispatcher, Periodic, RegionalClients, arn_parts
from ferry_local.service_metrics import ServiceSampler
from ferry_local.statistics import statistic

log = logging.getLogger("ferry.local.alarms")

ALARM, OK, INSUFFICIENT = "ALARM", "OK", "INSUFFICIENT_DATA"
UNCHECKED = "Unchecked"  # the state reason of an alarm never evaluated
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
SYMBOL = {
    "GreaterThanThreshold": "greater than",
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}


# ---------------------------------------------------------------- metric math (a small subset)

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


Search = Callable[[str, str, float], list[float]]
_REDUCE: dict[str, Callable[[list[float]], float]] = {
    "SUM": math.fsum,
    "AVG": lambda v: math.fsum(v) / len(v),
    "MAX": max,
    "MIN": min,
}


def evaluate_expression(
    expression: str, series: Mapping[str, float | None], search: Search | None = None
) -> float | None:
    """One period's value of a metric-math expression over the other queries' values there.

    `search(query, stat, period)` answers SEARCH(...) with one value per matching series;
    SUM/AVG/MAX/MIN reduce it (or a single value) to one.
    """

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
            return node.value if isinstance(node.value, str) else float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in series:
                raise ValueError(f"metric math refers to unknown id {node.id!r}")
            return series[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = scalar(node.operand)
            return None if v is None else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            a, b = scalar(node.left), scalar(node.right)
            if a is None or b is None or (isinstance(node.op, ast.Div) and b == 0):
                return None
            return _BINARY[type(node.op)](a, b)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name, args = node.func.id.upper(), node.args
            if name == "FILL" and len(args) == 2:
                v = scalar(args[0])
                return scalar(args[1]) if v is None else v
            if name == "ABS" and len(args) == 1:
                v = scalar(args[0])
                return None if v is None else abs(v)
            if name == "SEARCH" and search is not None and len(args) == 3:
                query, stat, period = (walk(a) for a in args)
                return search(str(query), str(stat), float(period))
            if name in _REDUCE and len(args) == 1:
                v = walk(args[0])
                values = [x for x in (v if isinstance(v, list) else [v]) if x is not None]
                return _REDUCE[name](values) if values else None
        raise ValueError(f"metric math not supported locally: {ast.unparse(node)!r}")

    def scalar(node: ast.AST) -> float | None:
        v = walk(node)
        if isinstance(v, list | str):
            raise ValueError(f"metric math needs one value here: {ast.unparse(node)!r}")
        return v

    return scalar(ast.parse(expression, mode="eval"))


_SEARCH = re.compile(r"^\s*\{([^}]*)\}\s*(.*)$")
_TERM = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)'|(\S+))""")


def search_series(store_series: list[tuple[str, str, Any]], query: str) -> list[tuple]:
    """The series a CloudWatch SEARCH `{Namespace,dim,…} MetricName="X" dim="v"` matches:
    exactly that namespace and dimension-name set, and every name="value" term."""
    m = _SEARCH.match(query)
    if not m:
        raise ValueError(f"SEARCH supports '{{Namespace,dims}} Name=\"value\"' locally: {query!r}")
    namespace, *names = [x.strip().strip('"') for x in m.group(1).split(",")]
    terms = {t[0]: t[1] or t[2] or t[3] for t in _TERM.findall(m.group(2))}
    rest = _TERM.sub("", m.group(2)).strip()
    if rest:
        raise ValueError(f"SEARCH term not supported locally: {rest!r}")
    found = []
    for ns, name, key in store_series:
        d = dict(key)
        if ns != namespace or set(d) != set(names):
            continue
        if all((name if k == "MetricName" else d.get(k)) == v for k, v in terms.items()):
            found.append((ns, name, key))
    return found


# ---------------------------------------------------------------- one alarm


@dataclass(frozen=True)
class StateChange:
    alarm_name: str
    alarm_arn: str
    previous: str
    new: str
    reason: str
    value: float | None


class Evaluation:
    """An alarm (as `describe_alarms` returns it) evaluated over the store's values."""

    def __init__(self, alarm: Mapping[str, Any], sink: MetricSink, time_scale: float) -> None:
        self.alarm = alarm
        self.sink = sink
        self.scale = time_scale
        self.period = self._period()

    def _period(self) -> float:
        if self.alarm.get("Metrics"):
            periods = [
                q.get("Period") or (q.get("MetricStat") or {}).get("Period")
                for q in self.alarm["Metrics"]
            ]
            period = max((int(p) for p in periods if p), default=60)
        else:
            period = int(self.alarm.get("Period") or 60)
        return period * self.scale

    def _metric(
        self, metric: Mapping[str, Any], stat: str, unit: str | None, start: float, end: float
    ) -> float | None:
        values = self.sink.store.values(
            metric["Namespace"],
            metric["MetricName"],
            dims(metric.get("Dimensions") or []),
            start,
            end,
            unit,
        )
        return statistic(values, stat)

    def value(self, start: float, end: float) -> float | None:
        """The alarm's value over [start, end)."""
        a = self.alarm
        if not a.get("Metrics"):
            stat = a.get("ExtendedStatistic") or a.get("Statistic") or "Average"
            return self._metric(a, stat, a.get("Unit"), start, end)
        values: dict[str, float | None] = {}
        returned: str | None = None
        for q in a["Metrics"]:
            ms = q.get("MetricStat")
            if ms:
                values[q["Id"]] = self._metric(ms["Metric"], ms["Stat"], ms.get("Unit"), start, end)
            if q.get("ReturnData", True) and (ms or q.get("Expression")):
                returned = q["Id"]

        def search(query: str, stat: str, _period: float) -> list[float]:
            found = search_series(self.sink.store.series(), query)
            results = [
                statistic(self.sink.store.values(ns, name, key, start, end), stat)
                for ns, name, key in found
            ]
            return [r for r in results if r is not None]

        for q in a["Metrics"]:  # expressions after every metric they may use
            if q.get("Expression"):
                values[q["Id"]] = evaluate_expression(q["Expression"], values, search)
        if returned is None:
            raise ValueError("an alarm's Metrics need one query with ReturnData")
        return values[returned]

    def decide(self, now: float) -> tuple[str, str, list[float | None]]:
        """(state, reason, values newest first) over the evaluation periods ending now."""
        a = self.alarm
        n = int(a.get("EvaluationPeriods") or 1)
        m = int(a.get("DatapointsToAlarm") or n)
        op = a["ComparisonOperator"]
        if op not in COMPARE:
            raise ValueError(f"comparison {op} not supported locally")
        threshold = float(a["Threshold"])
        edge = now + 0.001  # the newest window includes what was sampled at `now`
        values = [
            self.value(edge - (i + 1) * self.period, edge - i * self.period) for i in range(n)
        ]
        missing = a.get("TreatMissingData") or "missing"
        breaching = sum(1 for v in values if v is not None and COMPARE[op](v, threshold))
        if missing == "breaching":
            breaching += values.count(None)
        present = [v for v in values if v is not None]
        shown = ", ".join(f"{v:g}" for v in present[:m]) or "no datapoints"
        if breaching >= m:
            reason = (
                f"Threshold Crossed: {breaching} out of the last {n} datapoints [{shown}] "
                f"{'were' if breaching > 1 else 'was'} {SYMBOL[op]} the threshold ({threshold:g})"
            )
            return ALARM, reason, values
        if not present and missing in ("missing", "ignore"):
            reason = f"Insufficient Data: {n} datapoints were unknown."
            return (INSUFFICIENT if missing == "missing" else ""), reason, values
        if not present:
            reason = f"No datapoints in {n} period(s), treated as not breaching"
        else:
            reason = (
                f"Threshold Crossed: {len(present) - breaching} datapoint(s) [{shown}] "
                f"{'were' if len(present) - breaching != 1 else 'was'} not {SYMBOL[op]} "
                f"the threshold ({threshold:g})"
            )
        return OK, reason, values


# ---------------------------------------------------------------- the evaluator


class AlarmEvaluator(Periodic):
    """Evaluates every metric alarm in CloudWatch every `interval` seconds (or on demand)."""

    def __init__(
        self,
        clients: RegionalClients | Mapping[str, Any],
        sink: MetricSink,
        dispatcher: Dispatcher,
        interval: float = 5.0,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        sampler: ServiceSampler | None = None,
    ) -> None:
        if interval <= 0 or time_scale <= 0:
            raise ValueError("interval and time_scale must be positive")
        self.clients = clients if isinstance(clients, RegionalClients) else RegionalClients(clients)
        self.sink = sink
        self.dispatcher = dispatcher
        self.interval = interval
        self.time_scale = time_scale
        self._clock = clock
        self.sampler = sampler
        self._lock = threading.Lock()
        self.changes: list[StateChange] = []

    def tick(self) -> list[StateChange]:
        return self.evaluate_once()

    def evaluate_once(self) -> list[StateChange]:
        """Publish pending metrics, evaluate every alarm once; returns the state changes."""
        with self._lock:
            cloudwatch = self.clients.get("cloudwatch")
            if self.sampler is not None:
                try:
                    self.sampler.sample(self._clock())
                except Exception:  # one unreadable queue must not stop alarm evaluation
                    log.exception("sampling AWS service metrics failed")
            try:
                self.sink.flush(cloudwatch)
            except Exception:  # CloudWatch's copy is for reading; the alarms use the store
                log.exception("putting metrics into CloudWatch failed")
            now = self._clock()
            self.sink.store.prune(now)
            changes: list[StateChange] = []
            for alarm in _alarms(cloudwatch):
                try:
                    change = self._evaluate(cloudwatch, alarm, now)
                except (ValueError, KeyError) as exc:
                    self._unevaluable(cloudwatch, alarm, exc)
                    continue
                if change:
                    changes.append(change)
            self.changes += changes
            return changes

    def _unevaluable(self, cloudwatch: Any, alarm: Mapping[str, Any], exc: Exception) -> None:
        """Say so in the alarm's state reason (once), as AWS does for alarms it cannot read."""
        reason = f"Not evaluated locally: {exc}"[:1023]
        if alarm.get("StateReason") != reason:
            log.error("alarm %s cannot be evaluated: %s", alarm["AlarmName"], exc)
            cloudwatch.set_alarm_state(
                AlarmName=alarm["AlarmName"], StateValue=INSUFFICIENT, StateReason=reason
            )

    def _evaluate(
        self, cloudwatch: Any, alarm: Mapping[str, Any], now: float
    ) -> StateChange | None:
        evaluation = Evaluation(alarm, self.sink, self.time_scale)
        state, reason, values = evaluation.decide(now)
        # moto starts a new alarm at OK; AWS at INSUFFICIENT_DATA, until its first evaluation.
        unchecked = str(alarm.get("StateReason", "")).startswith(UNCHECKED)
        previous = INSUFFICIENT if unchecked else alarm.get("StateValue", INSUFFICIENT)
        state = state or previous  # TreatMissingData=ignore and no data: keep the state
        if state == previous:
            if unchecked:
                cloudwatch.set_alarm_state(
                    AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason[:1023]
                )
            return None
        reason_data = {
            "version": "1.0",
            "queryDate": _iso(now),
            "startDate": _iso(now - len(values) * evaluation.period),
            "period": int(evaluation.period),
            "recentDatapoints": [v for v in values if v is not None],
            "threshold": float(alarm["Threshold"]),
        }
        cloudwatch.set_alarm_state(
            AlarmName=alarm["AlarmName"],
            StateValue=state,
            StateReason=reason[:1023],
            StateReasonData=json.dumps(reason_data),
        )
        change = StateChange(
            alarm["AlarmName"], alarm["AlarmArn"], previous, state, reason, values[0]
        )
        log.warning("alarm %s: %s → %s (%s)", change.alarm_name, previous, state, reason)
        self._announce(alarm, change, reason_data, now)
        return change

    def _announce(
        self,
        alarm: Mapping[str, Any],
        change: StateChange,
        reason_data: dict[str, Any],
        now: float,
    ) -> None:
        """The EventBridge event every state change produces, and the alarm's own actions."""
        region = arn_parts(change.alarm_arn)[1]
        detail = {
            "alarmName": change.alarm_name,
            "state": {
                "value": change.new,
                "reason": change.reason,
                "reasonData": json.dumps(reason_data),
                "timestamp": _iso(now),
            },
            "previousState": {
                "value": change.previous,
                "reason": alarm.get("StateReason", ""),
                "timestamp": _iso(now),
            },
            "configuration": _configuration(alarm),
        }
        events = self.clients.get("events", region)
        resp = events.put_events(
            Entries=[
                {
                    "Source": "aws.cloudwatch",
                    "DetailType": "CloudWatch Alarm State Change",
                    "Resources": [change.alarm_arn],
                    "Detail": json.dumps(detail),
                }
            ]
        )
        if resp.get("FailedEntryCount"):
            log.error("EventBridge refused the alarm event: %s", resp["Entries"])
        if not alarm.get("ActionsEnabled", True):
            return
        key = {ALARM: "AlarmActions", OK: "OKActions"}.get(change.new, "InsufficientDataActions")
        for arn in alarm.get(key) or []:
            self.dispatcher.send(
                change.alarm_arn, {"Arn": arn}, _action_message(arn, alarm, change, detail, now)
            )


def _alarms(cloudwatch: Any) -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"]}
    while True:
        resp = cloudwatch.describe_alarms(**kwargs)
        alarms += resp.get("MetricAlarms", [])
        if not resp.get("NextToken"):
            return alarms
        kwargs["NextToken"] = resp["NextToken"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _configuration(alarm: Mapping[str, Any]) -> dict[str, Any]:
    if alarm.get("Metrics"):
        metrics = alarm["Metrics"]
    else:
        metrics = [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": alarm.get("Namespace"),
                        "name": alarm.get("MetricName"),
                        "dimensions": dict(dims(alarm.get("Dimensions") or [])),
                    },
                    "period": alarm.get("Period"),
                    "stat": alarm.get("ExtendedStatistic") or alarm.get("Statistic"),
                },
                "returnData": True,
            }
        ]
    return {"description": alarm.get("AlarmDescription", ""), "metrics": metrics}


def _action_message(
    arn: str,
    alarm: Mapping[str, Any],
    change: StateChange,
    detail: dict[str, Any],
    now: float,
) -> str:
    """What an alarm action receives: the SNS alarm message, or the Lambda alarm event."""
    _, region, account, _ = arn_parts(change.alarm_arn)
    if arn_parts(arn)[0] == "lambda":
        return json.dumps(
            {
                "source": "aws.cloudwatch",
                "alarmArn": change.alarm_arn,
                "accountId": account,
                "time": _iso(now),
                "region": region,
                "alarmData": detail,
            }
        )
    return json.dumps(
        {
            "AlarmName": change.alarm_name,
            "AlarmDescription": alarm.get("AlarmDescription"),
            "AWSAccountId": account,
            "NewStateValue": change.new,
            "NewStateReason": change.reason,
            "StateChangeTime": _iso(now),
            "Region": region,
            "AlarmArn": change.alarm_arn,
            "OldStateValue": change.previous,
            "Trigger": {
                "MetricName": alarm.get("MetricName"),
                "Namespace": alarm.get("Namespace"),
                "Statistic": alarm.get("Statistic"),
                "ExtendedStatistic": alarm.get("ExtendedStatistic"),
                "Dimensions": alarm.get("Dimensions", []),
                "Period": alarm.get("Period"),
                "EvaluationPeriods": alarm.get("EvaluationPeriods"),
                "ComparisonOperator": alarm.get("ComparisonOperator"),
                "Threshold": alarm.get("Threshold"),
                "TreatMissingData": alarm.get("TreatMissingData", "missing"),
            },
        }
    )


class LocalMonitoring:
    """What the local platform starts beside moto: EventBridge delivery to every target,
    schedule rules, and the alarm evaluator. `sink` is the Lambda runtime's `on_logs`."""

    def __init__(
        self,
        clients: Mapping[str, Any],
        sink: MetricSink,
        interval: float = 5.0,
        time_scale: float = 1.0,
        role_clients: Callable[[str, str], Any] | None = None,
    ) -> None:
        """`role_clients(role_arn, service)`: clients signed as a role (a rule target's
        RoleArn); without it every delivery is made with `clients`."""
        from ferry_local import moto_hooks
        from ferry_local.eventbridge import Scheduler

        self._moto_hooks = moto_hooks
        self.clients = RegionalClients(clients)
        self.dispatcher = Dispatcher(self.clients, role_clients=role_clients)
        moto_hooks.install(dispatcher=self.dispatcher)
        self.scheduler = Scheduler(self.dispatcher, interval)
        self.evaluator = AlarmEvaluator(
            self.clients,
            sink,
            self.dispatcher,
            interval,
            time_scale,
            sampler=ServiceSampler(self.clients, sink),
        )

    def start(self) -> LocalMonitoring:
        self.scheduler.start()
        self.evaluator.start()
        return self

    def stop(self) -> None:
        self.evaluator.stop()
        self.scheduler.stop()
        self.dispatcher.drain()
        self.dispatcher.shutdown()
        self._moto_hooks.uninstall(dispatcher=self.dispatcher)

    def __enter__(self) -> LocalMonitoring:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_alarm_state(
    cloudwatch: Any, alarm_name: str, state: str, timeout: float = 60.0, poll: float = 0.5
) -> dict[str, Any]:
    """Poll `describe_alarms` until `alarm_name` is in `state` (for the demo and tests, which
    see the platform only through its AWS endpoint); raises TimeoutError with the last state."""
    deadline = time.monotonic() + timeout
    while True:
        found = cloudwatch.describe_alarms(AlarmNames=[alarm_name]).get("MetricAlarms", [])
        if not found:
            raise LookupError(f"no alarm named {alarm_name!r}")
        if found[0]["StateValue"] == state:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"alarm {alarm_name} is {found[0]['StateValue']} after {timeout:g} s, not {state}"
                f" ({found[0].get('StateReason', '')})"
            )
        time.sleep(poll)


def wait_for_model_alarms(
    cloudwatch: Any, prefix: str, count: int, timeout: float = 90.0
) -> dict[str, dict[str, Any]]:
    """The alarms named `prefix`…, by the rest of their name, once `count` exist (the
    governance function puts a model's on the registry event, delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
        if len(found) >= count or time.monotonic() > deadline:
            return {a["AlarmName"].removeprefix(prefix): a for a in found}
        time.sleep(0.5)
