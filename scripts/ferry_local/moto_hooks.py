"""Every patch of a moto internal, in one module, installed and removed as a unit.

The local platform needs moto 5.2.5 (`MOTO_VERSION`) to behave as AWS does where it does not:

- Lambda: `LambdaFunction._invoke_lambda` runs code only in Docker. Routed to the local
  runtime (`lambda_runtime.FunctionRuntime.invoke`): every invocation path of moto goes
  through it (Invoke, S3 notifications, SQS event source mappings, EventBridge targets, Step
  Functions tasks). With no runtime routed, moto's own method runs. And
  `LambdaFunction.update_configuration` only edits moto's record: new environment variables
  reach the runtime (`update_environment`), whose next invocation starts a new process with
  them, as Lambda starts new execution environments after a configuration change.
- EventBridge: `Rule.send_to_targets` delivers to neither Step Functions nor Lambda, ignores a
  target's input and delivers to disabled rules. Routed to `eventbridge.Dispatcher.submit` for
  states/lambda/sqs/sns targets of enabled rules; moto keeps the other targets.
- CloudWatch: `Statistics.get_statistics_for_type` computes no percentiles (a `p99` query
  answers HTTP 500); pNN[.N] is computed with the alarm evaluator's definition.
- Step Functions: `StepFunctionsParserBackend.start_execution` names an unnamed execution
  `None` (the second one fails with ExecutionAlreadyExists): it gets a UUID, as in AWS. And
  moto's `execute_state_machine` setting is on, so executions run their states. A Distributed
  Map run whose items failed succeeds in moto (`DistributedIterationComponent._map_run` counts
  the failures and goes on, whatever ToleratedFailureCount/Percentage say): it fails with
  `States.ExceedToleratedFailureThreshold` once the failed or timed-out items exceed the
  threshold (default 0: any failed item), as AWS documents, so the Map's Catch sees it. A
  service task's parameters reach boto3 as the state machine wrote them, while AWS maps them
  to the API's member names (`StateMachineArn` → `stateMachineArn` for Step Functions, whose
  API is camelCase) and returns the result with capitalized names (`ExecutionArn`):
  `StateTaskService._normalise_parameters`/`_normalise_response` do both, from the service
  model, for APIs whose member names are camelCase (the others are left as they are).
- IAM: every request after resource creation is authorized as AWS does it: the resource ARN
  of each action, conditions, KMS for SSE-KMS objects, expired sessions, Step Functions tasks
  as their execution role (`moto_iam.py`, whose patches are part of `PATCHES`).
- DynamoDB: moto's item operations are not atomic across threads (a cancelled
  `transact_write_items` restores a snapshot, erasing what other threads committed meanwhile).
  One lock over them gives concurrent callers DynamoDB's per-request atomicity.

`install()` checks moto's version first and refuses any other; `uninstall()` puts back every
original. Installs nest (a count): the last `uninstall()` restores.
`tests/e2e/test_local_moto_hooks.py` proves install → uninstall restores every attribute.
"""

from __future__ import annotations

import copy
import importlib
import json
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version
from typing import Any, Protocol, runtime_checkable

from ferry_local import moto_iam

MOTO_VERSION = "5.2.5"


class MotoVersionError(RuntimeError):
    """The installed moto is not the version these hooks were written for."""


class LambdaInvoker(Protocol):
    def invoke(self, function_name: str, event: Any) -> tuple[bytes, bool, str]: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A runtime that takes a function's new environment (`FunctionRuntime` does)."""

    def update_environment(self, function_name: str, environment: dict[str, str]) -> None: ...


class RuleTargetDelivery(Protocol):
    def submit(self, rule_arn: str, target: Mapping[str, Any], event: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Patch:
    """One attribute of a moto object, replaced by `wrap(original)` while installed."""

    module: str
    owner: str
    attribute: str
    wrap: Callable[[Any], Any]

    @property
    def name(self) -> str:
        return ".".join(part for part in (self.module, self.owner, self.attribute) if part)

    def owner_object(self) -> Any:
        """The class (or, with `owner` empty, the module) whose attribute is replaced."""
        module = importlib.import_module(self.module)
        return getattr(module, self.owner) if self.owner else module


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.depth = 0
        self.originals: dict[str, Any] = {}
        self.saved_sfn_setting: Any = None
        self.runtime: LambdaInvoker | None = None
        self.dispatcher: RuleTargetDelivery | None = None


_state = _State()


def check_moto_version(found: str | None = None) -> None:
    """Raise `MotoVersionError` unless moto is `MOTO_VERSION` (each hook reaches inside it)."""
    found = found or version("moto")
    if found != MOTO_VERSION:
        names = ", ".join(p.name for p in PATCHES)
        raise MotoVersionError(
            f"moto is {found}; the local platform's hooks were written for moto {MOTO_VERSION}. "
            f"Install moto=={MOTO_VERSION} (requirements/dev.txt), or re-check {names} against "
            "the new moto and update MOTO_VERSION in ferry_local/moto_hooks.py."
        )


def install(
    *, runtime: LambdaInvoker | None = None, dispatcher: RuleTargetDelivery | None = None
) -> None:
    """Apply every patch (the first install), and route Lambda and rules to what is given."""
    with _state.lock:
        if _state.depth == 0:
            check_moto_version()
            for patch in PATCHES:
                owner = patch.owner_object()
                original = owner.__dict__[patch.attribute]
                _state.originals[patch.name] = original
                setattr(owner, patch.attribute, patch.wrap(original))
            sfn = _moto_config().setdefault("stepfunctions", {})
            _state.saved_sfn_setting = sfn.get("execute_state_machine", False)
            sfn["execute_state_machine"] = True
        _state.depth += 1
        if runtime is not None:
            _state.runtime = runtime
        if dispatcher is not None:
            _state.dispatcher = dispatcher


def uninstall(
    *, runtime: LambdaInvoker | None = None, dispatcher: RuleTargetDelivery | None = None
) -> None:
    """Undo one `install()`: stop routing to what it gave; the last one restores moto."""
    with _state.lock:
        if _state.depth == 0:
            return
        if runtime is not None and _state.runtime is runtime:
            _state.runtime = None
        if dispatcher is not None and _state.dispatcher is dispatcher:
            _state.dispatcher = None
        _state.depth -= 1
        if _state.depth:
            return
        for patch in PATCHES:
            setattr(patch.owner_object(), patch.attribute, _state.originals.pop(patch.name))
        _moto_config()["stepfunctions"]["execute_state_machine"] = _state.saved_sfn_setting
        moto_iam.restore_settings()
        _state.runtime = _state.dispatcher = None


@contextmanager
def installed(
    *, runtime: LambdaInvoker | None = None, dispatcher: RuleTargetDelivery | None = None
) -> Iterator[None]:
    install(runtime=runtime, dispatcher=dispatcher)
    try:
        yield
    finally:
        uninstall(runtime=runtime, dispatcher=dispatcher)


def is_installed() -> bool:
    return _state.depth > 0


def _moto_config() -> dict[str, Any]:
    from moto.core.config import default_user_config

    return default_user_config  # type: ignore[return-value]


# ---------------------------------------------------------------- Lambda


def _invoke_lambda(original: Callable[..., Any]) -> Callable[..., Any]:
    def invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        """`LambdaFunction._invoke_lambda`: same arguments, same (payload, errored, logs)."""
        runtime = _state.runtime
        if runtime is None:
            return original(self, event)  # type: ignore[no-any-return]
        if isinstance(event, str | bytes):
            event = json.loads(event or "{}")
        payload, errored, logs = runtime.invoke(self.function_name, {} if event is None else event)
        try:  # moto's CloudWatch Logs, as its Docker path does (best effort)
            self.logs_backend.ensure_log_group(self.logs_group_name)
            self.save_logs(logs)
        except Exception:
            traceback.print_exc()
        return payload.decode(), errored, logs

    return invoke_lambda


def _update_configuration(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_configuration(self: Any, config_updates: dict[str, Any]) -> Any:
        """`LambdaFunction.update_configuration`, and new variables reach the runtime."""
        answer = original(self, config_updates)
        runtime = _state.runtime
        if "Environment" in config_updates and isinstance(runtime, Reconfigurable):
            runtime.update_environment(self.function_name, dict(self.environment_vars or {}))
        return answer

    return update_configuration


# ---------------------------------------------------------------- EventBridge


def _send_to_targets(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_to_targets(
        rule: Any, original_event: dict[str, Any], transform_input: bool = True
    ) -> None:
        """`Rule.send_to_targets`: the dispatcher for states/lambda/sqs/sns, moto for the rest
        (log groups, archives, buses, API destinations)."""
        from ferry_local.eventbridge import DELIVERED_SERVICES, arn_parts

        dispatcher = _state.dispatcher
        if dispatcher is None:
            return original(rule, original_event, transform_input)  # type: ignore[no-any-return]
        if rule.state != "ENABLED" or not rule.event_pattern.get_pattern():
            return None  # a schedule-only rule gets no bus events (moto's empty pattern matches)
        if not rule.event_pattern.matches_event(original_event):
            return None
        event = json.loads(json.dumps(original_event, default=str))
        if isinstance(event.get("time"), int | float):
            stamp = datetime.fromtimestamp(event["time"], UTC)
            event["time"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        event.pop("ingestion-time", None)
        ours = [t for t in rule.targets if arn_parts(t["Arn"])[0] in DELIVERED_SERVICES]
        for target in ours:
            dispatcher.submit(rule.arn, target, event)
        theirs = [t for t in rule.targets if t not in ours]
        if theirs:
            view = copy.copy(rule)
            view.targets = theirs
            original(view, original_event, transform_input)
        return None

    return send_to_targets


# ---------------------------------------------------------------- CloudWatch


def _statistics_with_percentiles(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_statistics_for_type(self: Any, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            from ferry_local.statistics import statistic

            return statistic([float(v) for v in self.metric_single_values_list], stat)
        return original(self, stat)

    return get_statistics_for_type


# ---------------------------------------------------------------- Step Functions


def _named_executions(original: Callable[..., Any]) -> Callable[..., Any]:
    def start_execution(
        self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    return start_execution


def _tolerated_failures(original: Callable[..., Any]) -> Callable[..., Any]:
    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        """`DistributedIterationComponent._map_run`, failing past the tolerated threshold."""
        original(self, env, eval_input)
        record = eval_input.map_run_record  # its thresholds, as UpdateMapRun may have set them
        items = record.item_counter
        failed, total = items.failed.get() + items.timed_out.get(), items.total.get()
        count, percentage = record.tolerated_failure_count, record.tolerated_failure_percentage
        if failed and exceeds_tolerance(failed, total, count, percentage):
            raise _threshold_exceeded(env, failed, total)

    return map_run


def exceeds_tolerance(failed: int, total: int, count: int, percentage: float) -> bool:
    """AWS's rule: the run fails past either threshold given; with none (both 0), any failure.

    moto keeps 0 for a threshold that is not declared, so a declared 0 beside a declared
    non-zero threshold counts as not declared (the one case this reads differently from AWS).
    """
    limits = []
    if count:
        limits.append(failed > count)
    if percentage:
        limits.append(100.0 * failed / max(total, 1) > percentage)
    return any(limits) if limits else failed > 0


def _threshold_exceeded(env: Any, failed: int, total: int) -> Exception:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    name = StatesErrorNameType.StatesExceedToleratedFailureThreshold
    details = ExecutionFailedEventDetails(
        error=name.to_name(),
        cause=f"The Map Run's failed items ({failed} of {total}) exceed its tolerated failures",
    )
    return FailureEventException(
        FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=name),
            event_type=HistoryEventType.ExecutionFailed,
            event_details=EventDetails(executionFailedEventDetails=details),
        )
    )


# ---------------------------------------------------------------- Step Functions service tasks

_SERVICE_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service"


@cache
def _service_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _operation_shapes(task: Any, service: str | None, action: str | None) -> tuple[Any, Any]:
    """(input shape, output shape) of a service task's API operation, from botocore's model."""
    from botocore import xform_name

    service = service or task._get_boto_service_name()
    action = action or task._get_boto_service_action()
    model = _service_model(service)
    for name in model.operation_names:
        if xform_name(name) == action:
            operation = model.operation_model(name)
            return operation.input_shape, operation.output_shape
    return None, None


def _camel_case(shape: Any) -> bool:
    """Whether an operation's top-level members start lower-case (Step Functions does)."""
    return shape is not None and any(m[:1].islower() for m in shape.members)


def _renamed(value: Any, shape: Any, name_of: Callable[[str, Any], str | None]) -> Any:
    """`value` with every structure member renamed by `name_of(key, shape)`, recursively."""
    if shape is None:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            member = name_of(key, shape)
            out[member or key] = _renamed(item, shape.members.get(member or key), name_of)
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [_renamed(item, shape.member, name_of) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _renamed(v, shape.value, name_of) for k, v in value.items()}
    return value


def _member_named(key: str, shape: Any) -> str | None:
    """The API's member name for a key written in the state machine's capitalization."""
    return next((m for m in shape.members if m.lower() == key.lower()), None)


def _capitalized(key: str, shape: Any) -> str | None:
    return key[:1].upper() + key[1:] if key in shape.members else None


def _api_parameters(original: Callable[..., Any]) -> Callable[..., Any]:
    def normalise(
        self: Any, parameters: dict, boto_service_name: Any = None, service_action_name: Any = None
    ) -> None:
        original(self, parameters, boto_service_name, service_action_name)
        shape, _ = _operation_shapes(self, boto_service_name, service_action_name)
        if not _camel_case(shape):
            return
        renamed = _renamed(parameters, shape, _member_named)
        parameters.clear()
        parameters.update(renamed)

    return normalise


def _sfn_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def normalise(
        self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None
    ) -> None:
        original(self, response, boto_service_name, service_action_name)
        if not isinstance(response, dict):
            return
        from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

        _, shape = _operation_shapes(self, boto_service_name, service_action_name)
        if not _camel_case(shape):
            return
        renamed = _renamed(response, shape, _capitalized)
        response.clear()
        response.update(json.loads(to_json_str(renamed)))  # a state's output is JSON: dates too

    return normalise


# ---------------------------------------------------------------- DynamoDB

_DYNAMODB_LOCK = threading.RLock()
_DYNAMODB_ITEM_OPERATIONS = (
    "transact_write_items",
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
)


def _serialized(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with _DYNAMODB_LOCK:
            return original(*args, **kwargs)

    return call


PATCHES: tuple[Patch, ...] = (
    Patch("moto.awslambda.models", "LambdaFunction", "_invoke_lambda", _invoke_lambda),
    Patch(
        "moto.awslambda.models",
        "LambdaFunction",
        "update_configuration",
        _update_configuration,
    ),
    Patch("moto.events.models", "Rule", "send_to_targets", _send_to_targets),
    Patch(
        "moto.cloudwatch.models",
        "Statistics",
        "get_statistics_for_type",
        _statistics_with_percentiles,
    ),
    Patch(
        "moto.stepfunctions.parser.models",
        "StepFunctionsParserBackend",
        "start_execution",
        _named_executions,
    ),
    Patch(
        "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration."
        "distributed_iteration_component",
        "DistributedIterationComponent",
        "_map_run",
        _tolerated_failures,
    ),
    *(
        Patch(f"{_SERVICE_TASKS}.state_task_service", "StateTaskService", name, hook)
        for name, hook in (
            ("_normalise_parameters", _api_parameters),
            ("_normalise_response", _sfn_response),
        )
    ),
    *(
        Patch("moto.dynamodb.models", "DynamoDBBackend", name, _serialized)
        for name in _DYNAMODB_ITEM_OPERATIONS
    ),
    *moto_iam.iam_patches(Patch),
)
