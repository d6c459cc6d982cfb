"""EventBridge delivery for the local platform: rule targets moto cannot reach, and schedules.

moto 5.2.5 matches `put_events` against the rules of a bus but delivers only to log groups,
archives, SQS and other buses, raises NotImplementedError for Step Functions and Lambda
targets, ignores a target's `Input`/`InputPath`, delivers to disabled rules too, and never
fires `ScheduleExpression` rules. `moto_hooks` routes moto's rule deliveries to a
`Dispatcher` here, so that every enabled rule delivers, asynchronously as AWS does, to Step
Functions (StartExecution), Lambda (asynchronous Invoke, which the local runtime runs), SQS
and SNS, with the target's input (Input, InputPath or InputTransformer) and its
dead-letter queue on failure. Those deliveries go through the ordinary AWS APIs of whatever
endpoint boto3 is configured for (the local moto server), never through moto internals.
`Scheduler` fires schedule rules (`rate(…)`, `cron(…)`) the same way.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

log = logging.getLogger("ferry.local.events")

DELIVERED_SERVICES = frozenset({"states", "lambda", "sqs", "sns"})
EVENTS_SERVICE = "events.amazonaws.com"


# ---------------------------------------------------------------- target input (AWS semantics)


def json_path(doc: Any, path: str) -> Any:
    """The value at a simple JSONPath (`$`, `$.a.b`, `$.a[0]`, `$['a-b']`); None if absent."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath must start with '$': {path!r}")
    node = doc
    for dotted, bracket_key, index in re.findall(r"\.([^.\[]+)|\['([^']+)'\]|\[(\d+)\]", path[1:]):
        key: str | int = int(index) if index else (dotted or bracket_key)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def target_input(target: Mapping[str, Any], event: dict[str, Any], rule_arn: str = "") -> str:
    """The payload a target receives: Input, InputPath, InputTransformer or the whole event."""
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        return json.dumps(json_path(event, target["InputPath"]))
    transformer = target.get("InputTransformer")
    if not transformer:
        return json.dumps(event)
    values: dict[str, Any] = {
        name: json_path(event, path)
        for name, path in (transformer.get("InputPathsMap") or {}).items()
    }
    values |= {
        "aws.events.rule-arn": rule_arn,
        "aws.events.rule-name": rule_arn.rsplit("/", 1)[-1],
        "aws.events.event.ingestion-time": event.get("time", ""),
        "aws.events.event": event,
        "aws.events.event.json": event,
    }

    return _fill_template(transformer["InputTemplate"], values)


def _fill_template(template: str, values: Mapping[str, Any]) -> str:
    """Replace `<name>` placeholders as EventBridge does: inside a JSON string the value's text
    (escaped), outside it the value as JSON (`{"id": <id>}` → `{"id": "i-123"}`)."""
    out: list[str] = []
    in_string = escaped = False
    i = 0
    while i < len(template):
        ch = template[i]
        m = _PLACEHOLDER.match(template, i) if ch == "<" else None
        if m and m.group(1) in values:
            value = values[m.group(1)]
            if in_string:
                text = value if isinstance(value, str) else json.dumps(value)
                out.append(json.dumps(text)[1:-1])
            else:
                out.append(json.dumps(value))
            i = m.end()
            continue
        if in_string and ch == "\\" and not escaped:
            escaped = True
        else:
            if ch == '"' and not escaped:
                in_string = not in_string
            escaped = False
        out.append(ch)
        i += 1
    return "".join(out)


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


# ---------------------------------------------------------------- delivery through the AWS APIs


class RegionalClients:
    """boto3 clients per (service, region), created once. `given[service]` (a dict of clients
    or `resources.EndpointClients`) serves its own region; other regions get clients that follow
    boto3's configuration (AWS_ENDPOINT_URL → the local moto server)."""

    def __init__(self, given: Any = None, region: str | None = None) -> None:
        self._given = given
        self.region = region or getattr(given, "region", None) or _first_region(given)
        self._made: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        if self._given is not None and region == self.region:
            try:
                return self._given[service]
            except KeyError:
                pass
        with self._lock:
            if (service, region) not in self._made:
                self._made[service, region] = boto3.client(service, region_name=region)
            return self._made[service, region]


def _first_region(given: Any) -> str:
    if isinstance(given, Mapping):
        for client in given.values():
            return str(client.meta.region_name)
    return boto3.session.Session().region_name or "us-east-1"


@dataclass
class Delivery:
    """One attempt to deliver one event to one target."""

    source: str  # the rule ARN, or the alarm ARN for alarm actions
    target_id: str
    target_arn: str
    payload: str
    ok: bool = False
    result: str = ""
    error: str = ""
    at: float = field(default_factory=time.time)


def arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[2], parts[3], parts[4], parts[5]


def deliver(clients: RegionalClients, target: Mapping[str, Any], payload: str) -> str:
    """Send `payload` to one target through its service's API; returns what the service said."""
    arn = target["Arn"]
    service, region, account, resource = arn_parts(arn)
    if service == "states":
        sfn = clients.get("stepfunctions", region)
        return str(
            sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=payload)[
                "executionArn"
            ]
        )
    if service == "lambda":
        resp = clients.get("lambda", region).invoke(
            FunctionName=arn, InvocationType="Event", Payload=payload.encode()
        )
        return f"status {resp['StatusCode']}"
    if service == "sqs":
        sqs = clients.get("sqs", region)
        url = sqs.get_queue_url(QueueName=resource, QueueOwnerAWSAccountId=account)["QueueUrl"]
        kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": payload}
        group = (target.get("SqsParameters") or {}).get("MessageGroupId")
        if group:
            kwargs["MessageGroupId"] = group
        return str(sqs.send_message(**kwargs)["MessageId"])
    if service == "sns":
        return str(clients.get("sns", region).publish(TopicArn=arn, Message=payload)["MessageId"])
    raise ValueError(f"no local delivery to {service} targets ({arn})")


class Dispatcher:
    """Delivers on a small thread pool (EventBridge is asynchronous) and keeps a record."""

    def __init__(
        self,
        clients: RegionalClients | None = None,
        workers: int = 4,
        role_clients: Callable[[str, str], Any] | None = None,
    ) -> None:
        """A target with a `RoleArn` is reached as EventBridge reaches it: signed with a
        session of that role (`role_clients(role_arn, "events.amazonaws.com")`), which must
        allow the call (states:StartExecution, say); other targets with `clients`."""
        self.clients = clients or RegionalClients()
        self.role_clients = role_clients
        self._as_role: dict[str, RegionalClients] = {}
        self.deliveries: list[Delivery] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferry-events")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, rule_arn: str, target: Mapping[str, Any], event: dict[str, Any]) -> None:
        """Deliver an event to one rule target, with the target's input transformation."""
        self.send(rule_arn, target, target_input(target, event, rule_arn))

    def send(self, source: str, target: Mapping[str, Any], payload: str) -> None:
        """Deliver a ready payload to a target (`{"Arn": …}` at least), asynchronously."""
        record = Delivery(source, str(target.get("Id", "")), target["Arn"], payload)
        future = self._pool.submit(self._run, record, dict(target))
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, record: Delivery, target: dict[str, Any]) -> None:
        try:
            record.result = deliver(self._clients_for(target), target, record.payload)
            record.ok = True
            log.info("delivered %s → %s: %s", record.source, record.target_arn, record.result)
        except Exception as exc:  # a failed delivery must not stop the others
            record.error = f"{type(exc).__name__}: {exc}"
            log.warning("delivery %s → %s failed: %s", record.source, record.target_arn, exc)
            self._dead_letter(record, target)
        with self._lock:
            self.deliveries.append(record)
            del self.deliveries[:-1000]

    def _clients_for(self, target: Mapping[str, Any]) -> RegionalClients:
        role = target.get("RoleArn")
        if not role or self.role_clients is None:
            return self.clients
        with self._lock:
            if role not in self._as_role:
                given = self.role_clients(role, EVENTS_SERVICE)
                self._as_role[role] = RegionalClients(given, self.clients.region)
            return self._as_role[role]

    def _dead_letter(self, record: Delivery, target: Mapping[str, Any]) -> None:
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not dlq:
            return
        try:
            deliver(self.clients, {"Arn": dlq}, record.payload)
        except Exception as exc:
            log.error("dead-letter queue %s refused the event too: %s", dlq, exc)

    def drain(self, timeout: float = 30.0) -> list[Delivery]:
        """Wait for the deliveries under way (tests, shutdown); returns the record so far."""
        with self._lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)
        with self._lock:
            return list(self.deliveries)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


# ---------------------------------------------------------------- schedules

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def rate_seconds(expression: str) -> int | None:
    """Seconds between firings of a `rate(…)` expression, None for other expressions."""
    m = _RATE.match(expression.strip())
    if not m:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2).rstrip("s")]


def _cron_field(spec: str, lo: int, hi: int, names: list[str] | None = None) -> set[int]:
    """Values of one cron field: `*`, `?`, `5`, `1-5`, `1,3`, `*/15`, `10/5`, names."""
    out: set[int] = set()
    for part in spec.upper().split(","):
        for i, name in enumerate(names or []):
            part = part.replace(name, str(i + lo))
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part in ("*", "?"):
            first, last = lo, hi
        elif "-" in part:
            a, b = part.split("-")
            first, last = int(a), int(b)
        else:
            first = int(part)
            last = hi if step > 1 else first
        if not (lo <= first <= hi and lo <= last <= hi):
            raise ValueError(f"cron field {spec!r} is outside {lo}-{hi}")
        out |= set(range(first, last + 1, step))
    return out


def cron_matches(expression: str, at: datetime) -> bool:
    """Whether EventBridge's six-field `cron(min hour dom month dow year)` fires at `at` (UTC)."""
    m = re.match(r"^cron\((.+)\)$", expression.strip())
    fields = m.group(1).split() if m else []
    if len(fields) != 6:
        raise ValueError(f"not a six-field cron expression: {expression!r}")
    minute, hour, dom, month, dow, year = fields
    if any(c in "".join(fields).upper() for c in "LW#"):
        raise ValueError(f"cron L, W and # are not supported locally: {expression!r}")
    aws_dow = (at.isoweekday() % 7) + 1  # SUN=1 … SAT=7
    day_ok = (dom == "?" or at.day in _cron_field(dom, 1, 31)) and (
        dow == "?" or aws_dow in _cron_field(dow, 1, 7, _DAYS)
    )
    return (
        at.minute in _cron_field(minute, 0, 59)
        and at.hour in _cron_field(hour, 0, 23)
        and day_ok
        and at.month in _cron_field(month, 1, 12, _MONTHS)
        and at.year in _cron_field(year, 1970, 2199)
    )


class Periodic:
    """A daemon thread that calls `tick()` every `interval` seconds until `stop()`."""

    interval: float = 5.0

    def tick(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # keep ticking: one bad rule or alarm must not stop the rest
                log.exception("%s tick failed", type(self).__name__)

    def stop(self) -> None:
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._thread = None


class Scheduler(Periodic):
    """Fires the enabled schedule rules of every bus (`Scheduled Event`, source `aws.events`)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}  # rule ARN → when it last fired (or was first seen)

    def tick(self) -> list[str]:
        """Fire what is due since the last tick; returns the ARNs of the rules fired."""
        now = self._clock()
        events = self.dispatcher.clients.get("events")
        fired: list[str] = []
        buses = [b["Name"] for b in events.list_event_buses().get("EventBuses", [])] or ["default"]
        for bus in buses:
            for rule in _paginate(events.list_rules, "Rules", EventBusName=bus):
                expr = rule.get("ScheduleExpression")
                if not expr or rule.get("State") != "ENABLED":
                    continue
                last = self._last.setdefault(rule["Arn"], now)
                if self._due(expr, last, now):
                    self._last[rule["Arn"]] = now
                    self._fire(events, bus, rule, now)
                    fired.append(rule["Arn"])
        return fired

    @staticmethod
    def _due(expression: str, last: float, now: float) -> bool:
        every = rate_seconds(expression)
        if every is not None:
            return now - last >= every
        start = datetime.fromtimestamp(last, UTC).replace(second=0, microsecond=0)
        minute = start + timedelta(minutes=1)
        while minute.timestamp() <= now:
            if cron_matches(expression, minute):
                return True
            minute += timedelta(minutes=1)
        return False

    def _fire(self, events: Any, bus: str, rule: Mapping[str, Any], now: float) -> None:
        _, region, account, _ = arn_parts(rule["Arn"])
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": account,
            "time": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [rule["Arn"]],
            "detail": {},
        }
        for target in _paginate(
            events.list_targets_by_rule, "Targets", Rule=rule["Name"], EventBusName=bus
        ):
            self.dispatcher.submit(rule["Arn"], target, event)


def _paginate(call: Callable[..., dict[str, Any]], key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        resp = call(**kwargs)
        items += resp.get(key, [])
        if not resp.get("NextToken"):
            return items
        kwargs["NextToken"] = resp["NextToken"]
