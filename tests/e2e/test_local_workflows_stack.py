"""The workflow and alarm machinery on a stack the test synthesizes with CDK, before Ferry's own
stack has a state machine or an alarm: Lambda task → Choice → Succeed/Fail, a Catch path, and
EMF metrics from a function invocation → alarm → EventBridge rule → a state machine execution.

Built by the platform's own code paths: `resources.create_resources` (which calls
`workflows.create_workflows`), the in-process Lambda runtime, and `alarms.LocalMonitoring`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ferry_local import moto_hooks
from ferry_local.alarms import LocalMonitoring, wait_for_alarm_state
from ferry_local.emf import MetricSink
from ferry_local.lambda_runtime import FunctionRuntime
from ferry_local.resources import create_resources
from ferry_local.template import Resolver, SynthesizedStack
from ferry_local.workflows import (
    create_workflows,
    wait_for_executions,
)

FUNCTION_DIR = Path(__file__).parent / "fixtures" / "workflow_fn"
STACK = "FerryWorkflowTest"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "e2e-cdk"
REGION = "us-east-1"


def synthesize(outdir: Path) -> SynthesizedStack:
    """A Lambda, a state machine using it (task, choice, catch), a drift alarm, and a rule
    that starts the state machine when the alarm goes to ALARM."""
    import aws_cdk as cdk
    from aws_cdk import aws_cloudwatch as cw
    from aws_cdk import aws_events as events
    from aws_cdk import aws_events_targets as targets
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks

    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, STACK, env=cdk.Environment(account="123456789012", region=REGION))
    fn = lambda_.Function(
        stack,
        "Step",
        runtime=lambda_.Runtime.PYTHON_3_11,
        handler="handler.lambda_handler",
        code=lambda_.Code.from_asset(str(FUNCTION_DIR)),
        environment={"STAGE": "test"},
    )
    invoke = tasks.LambdaInvoke(stack, "Count", lambda_function=fn, payload_response_only=True)
    invoke.add_catch(sfn.Pass(stack, "Caught"), errors=["States.ALL"], result_path="$.error")
    decide = (
        sfn.Choice(stack, "Big enough?")
        .when(sfn.Condition.number_greater_than("$.n", 1), sfn.Succeed(stack, "Big"))
        .otherwise(sfn.Fail(stack, "Small", error="TooSmall", cause="n is at most 1"))
    )
    machine = sfn.StateMachine(
        stack, "Flow", definition_body=sfn.DefinitionBody.from_chainable(invoke.next(decide))
    )
    alarm = cw.Metric(
        namespace="FerryTest",
        metric_name="Drift",
        dimensions_map={"model": "m"},
        statistic="Maximum",
        period=cdk.Duration.minutes(5),
    ).create_alarm(
        stack,
        "DriftAlarm",
        threshold=0.2,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
    events.Rule(
        stack,
        "OnDrift",
        event_pattern=events.EventPattern(
            source=["aws.cloudwatch"],
            detail_type=["CloudWatch Alarm State Change"],
            detail={"alarmName": [alarm.alarm_name], "state": {"value": ["ALARM"]}},
        ),
        targets=[
            targets.SfnStateMachine(
                machine,
                input=events.RuleTargetInput.from_object(
                    {"n": 5, "alarm": events.EventField.from_path("$.detail.alarmName")}
                ),
            )
        ],
    )
    app.synth()
    return SynthesizedStack.from_cdk_out(outdir, STACK)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedStack:
    """Synthesized once per change of this stack's code (a synth costs ~10-30 s of jsii)."""
    from importlib.metadata import version

    key = hashlib.sha256(
        inspect.getsource(synthesize).encode()
        + (FUNCTION_DIR / "handler.py").read_bytes()
        + version("aws-cdk-lib").encode()
    ).hexdigest()[:16]
    cached = CACHE / key
    if not (cached / f"{STACK}.template.json").is_file():
        work = tmp_path_factory.mktemp("cdk.out")
        synthesize(work)
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(work, cached)
    return SynthesizedStack.from_cdk_out(cached, STACK)


class Built:
    def __init__(self, stack: SynthesizedStack, clients: dict[str, Any], sink: MetricSink):
        self.stack = stack
        self.clients = clients
        self.sink = sink
        self.resolver = Resolver(stack.template, stack_name=STACK)

    def logical(self, rtype: str) -> str:
        (lid,) = [k for k, v in self.stack.template["Resources"].items() if v["Type"] == rtype]
        return lid

    @property
    def machine_arn(self) -> str:
        return self.resolver.arn(self.logical("AWS::StepFunctions::StateMachine"))

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        sfn = self.clients["stepfunctions"]
        arn = sfn.start_execution(stateMachineArn=self.machine_arn, input=json.dumps(payload))[
            "executionArn"
        ]
        return wait_for(sfn, arn)

    def executions(self) -> list[dict[str, Any]]:
        sfn = self.clients["stepfunctions"]
        listed = sfn.list_executions(stateMachineArn=self.machine_arn)["executions"]
        return [wait_for(sfn, e["executionArn"]) for e in listed]


def wait_for(sfn: Any, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.05)


@pytest.fixture
def built(synthesized: SynthesizedStack, tmp_path: Path) -> Iterator[Built]:
    services = ("s3", "sqs", "sns", "iam", "lambda", "logs", "stepfunctions", "events")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        clients = {s: boto3.client(s, region_name=REGION) for s in (*services, "cloudwatch")}
        sink = MetricSink()
        runtime = FunctionRuntime(tmp_path, on_logs=sink, log_dir=tmp_path / "logs")
        moto_hooks.install(runtime=runtime)
        built = Built(synthesized, clients, sink)
        try:
            create_resources(
                synthesized.template,
                built.resolver,
                clients,
                runtime=runtime,
                stack=synthesized,
                repo_root=tmp_path,
            )
            yield built
        finally:
            moto_hooks.uninstall(runtime=runtime)
            runtime.close()


def test_the_state_machine_is_the_synthesized_definition(built: Built) -> None:
    described = built.clients["stepfunctions"].describe_state_machine(
        stateMachineArn=built.machine_arn
    )
    definition = json.loads(described["definition"])
    assert definition["StartAt"] == "Count"
    assert set(definition["States"]) == {"Count", "Big enough?", "Big", "Small", "Caught"}
    # payload_response_only: the task's Resource is the function's ARN, resolved from Fn::GetAtt
    function = built.resolver.physical_id(built.logical("AWS::Lambda::Function"))
    assert definition["States"]["Count"]["Resource"].endswith(":function:" + function)


def test_lambda_task_then_choice_succeeds_for_a_big_n(built: Built) -> None:
    done = built.run({"n": 5})
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"n": 6, "stage": "test"}  # the function's own env


def test_choice_fails_the_execution_for_a_small_n(built: Built) -> None:
    done = built.run({"n": 0})
    assert done["status"] == "FAILED"
    assert done["error"] == "TooSmall" and done["cause"] == "n is at most 1"


def test_a_failing_task_is_caught(built: Built) -> None:
    done = built.run({"fail": "no data"})
    assert done["status"] == "SUCCEEDED"
    error = json.loads(done["output"])["error"]
    assert error["Error"] == "DriftCheckFailed"
    assert "no data" in json.loads(error["Cause"])["errorMessage"]


def test_executions_without_a_name_get_distinct_ones(built: Built) -> None:
    sfn = built.clients["stepfunctions"]
    arns = {
        sfn.start_execution(stateMachineArn=built.machine_arn, input='{"n": 3}')["executionArn"]
        for _ in range(2)
    }
    assert len(arns) == 2


def test_the_alarm_and_rule_carry_the_templates_properties(built: Built) -> None:
    cw, events = built.clients["cloudwatch"], built.clients["events"]
    (alarm,) = cw.describe_alarms()["MetricAlarms"]
    assert alarm["AlarmName"] == built.resolver.physical_id(built.logical("AWS::CloudWatch::Alarm"))
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "FerryTest",
        "Drift",
        "Maximum",
    )
    assert alarm["Threshold"] == 0.2 and alarm["TreatMissingData"] == "notBreaching"
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    rule_name = built.resolver.physical_id(built.logical("AWS::Events::Rule"))
    rule = events.describe_rule(Name=rule_name)
    assert json.loads(rule["EventPattern"])["detail"]["alarmName"] == [alarm["AlarmName"]]
    (target,) = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert target["Arn"] == built.machine_arn


def test_drift_metric_from_a_function_raises_the_alarm_which_starts_the_state_machine(
    built: Built,
) -> None:
    lam = built.clients["lambda"]
    function = built.resolver.physical_id(built.logical("AWS::Lambda::Function"))
    monitoring = LocalMonitoring(built.clients, built.sink, interval=60)
    try:
        # Given a drift below the threshold, the alarm is OK and nothing starts.
        lam.invoke(FunctionName=function, Payload=json.dumps({"drift": 0.05}))
        changes = monitoring.evaluator.evaluate_once()
        assert [(c.previous, c.new) for c in changes] == [("INSUFFICIENT_DATA", "OK")]
        monitoring.dispatcher.drain()
        assert built.executions() == []

        # When the function reports drift over it, the alarm fires,
        lam.invoke(FunctionName=function, Payload=json.dumps({"drift": 0.3}))
        changes = monitoring.evaluator.evaluate_once()
        assert [(c.previous, c.new, c.value) for c in changes] == [("OK", "ALARM", 0.3)]
        monitoring.dispatcher.drain()

        # then the rule's target, the state machine, runs with the rule's input.
        (execution,) = wait_for_executions(built.clients["stepfunctions"], built.machine_arn)
        assert execution["status"] == "SUCCEEDED"
        alarm_name = changes[0].alarm_name
        assert json.loads(execution["input"]) == {"n": 5, "alarm": alarm_name}
        assert json.loads(execution["output"])["n"] == 6
    finally:
        monitoring.stop()


def test_the_running_monitor_does_it_on_its_own(built: Built) -> None:
    """As in `ferry local up`: the evaluator thread, not the test, notices the drift."""
    function = built.resolver.physical_id(built.logical("AWS::Lambda::Function"))
    alarm = built.resolver.physical_id(built.logical("AWS::CloudWatch::Alarm"))
    with LocalMonitoring(built.clients, built.sink, interval=0.2):
        built.clients["lambda"].invoke(FunctionName=function, Payload='{"drift": 0.9}')
        fired = wait_for_alarm_state(built.clients["cloudwatch"], alarm, "ALARM", timeout=20)
        assert "0.9" in fired["StateReason"]
        (execution,) = wait_for_executions(
            built.clients["stepfunctions"], built.machine_arn, timeout=20
        )
    assert execution["status"] == "SUCCEEDED"


def test_create_workflows_explains_a_broken_definition(built: Built) -> None:
    template = {
        "Resources": {
            "Bad": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": "{not json", "RoleArn": "arn:aws:iam::1:role/r"},
            }
        }
    }
    with pytest.raises(RuntimeError, match="AWS::StepFunctions::StateMachine Bad"):
        create_workflows(template, Resolver(template, stack_name=STACK), built.clients)
