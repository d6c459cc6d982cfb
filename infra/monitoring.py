"""Monitoring: data capture grants, the drift function and its schedule, alarms, a dashboard.

A model's own alarms (p99 latency over `p99_latency_budget_ms`, 4xx and 5xx rates, drift over
`drift_psi_alarm`, batch failures) are not in this template: CloudWatch alarms watch concrete
metric dimensions, and a model may be registered without a redeploy. The governance function
puts them when a version is registered, named `Ferry-{env}-model-{model}-{kind}`, from the
specs in the core (ferry_core/monitoring/alarms.py) and the thresholds of infra/config.py
(its `MODEL_ALARMS` variable, set here with the grant to put exactly those alarms). Archiving a
model's last version leaves them in place. Fleet-wide alarms are here: the batch DLQ, every
file failure (SEARCH, from infra/batch.py), pipeline (state machine) failures and the drift
function's own failures. The dashboard uses SEARCH, so it shows every model.

Every alarm notifies ONE SNS topic (KMS-encrypted; e-mail subscription when `alarm_email` is
set). Any model's drift alarm entering ALARM is matched by `drift_rule` (EventBridge, a
wildcard on the alarm name), whose target is the retraining workflow, added with
`add_retrain_target` once its state machine exists. Without a target the rule matches and does
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.dashboard import FAST_PERIOD, monitoring_dashboard
from infra.environment import (
    DRIFT_SERVICE,
    NAMESPACE,
    drift_variables,
    model_alarm_variables,
)
from infra.functions import (
    FunctionSpec,
    container_function,
    function_log_group,
    lambda_role,
    write_own_logs,
)
from infra.governance import EVENT_SOURCE as REGISTRY_EVENT_SOURCE
from infra.nag import acknowledge
from infra.scoring import ScoringFunction
from infra.state_machines import dead_letter_queue

CAPTURE_ROWS_PREFIX = "capture/rows/"  # where the scorer writes its sample of requests
CAPTURE_REPORTS_PREFIX = "capture/reports/"  # where the drift function writes its reports
# The registry event of a new version (the core's ferry_core/registry/events.py DETAIL_TYPES).
REGISTERED_DETAIL_TYPE = "Model Version Registered"


def model_alarm_prefix(env: str) -> str:
    """The name prefix of every model's alarms (the governance function puts them; the core's
    ferry_core/monitoring/alarms.py names them the same way)."""
    return f"Ferry-{env}-model-"


def drift_alarm_pattern(env: str) -> events.EventPattern:
    """Any model's drift alarm (`Ferry-{env}-model-{model}-drift`) entering ALARM."""
    return events.EventPattern(
        source=["aws.cloudwatch"],
        detail_type=["CloudWatch Alarm State Change"],
        detail={
            "alarmName": events.Match.wildcard(f"{model_alarm_prefix(env)}*-drift"),
            "state": {"value": ["ALARM"]},
        },
    )


@jsii.implements(events.IRuleTarget)
class _LambdaTarget:
    """A Lambda rule target with retries and a dead-letter queue and no generated ids.

    The stock `targets.LambdaFunction` names its permission and queue-policy statement after
    the rule's path, stage included, which the dev/prod parity test rightly refuses.
    """

    def __init__(self, function: lambda_.IFunction, queue: sqs.IQueue) -> None:
        self._function, self._queue = function, queue

    def bind(self, rule: events.IRule, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(
            arn=self._function.function_arn,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self._queue.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=2, maximum_event_age_in_seconds=3600
            ),
        )


class Monitoring(Construct):
    """Capture grants on the scorer, the scheduled drift function, alarms → SNS, a dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        scoring: ScoringFunction,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        registry_table: dynamodb.ITable,
        governance: tuple[lambda_.Function, iam.IRole],
        fleet_alarms: Sequence[cloudwatch.IAlarm] = (),
        pipelines: Sequence[tuple[str, sfn.IStateMachine]] = (),
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._psi = (config.drift_psi_warn, config.drift_psi_alarm)
        self._latency_budget = config.p99_latency_budget_ms
        schedule_minutes = config.drift_schedule_minutes
        self._grant_capture(scoring, data_bucket, data_key)
        self.topic = self._topic(config.alarm_email, removal_policy)
        # Events EventBridge could not deliver and failed asynchronous drift runs land here.
        self.dead_letter_queue = dead_letter_queue(self, removal_policy=removal_policy)
        self.function = self._drift_function(
            config, data_bucket, data_key, registry_table, log_retention, removal_policy
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Ferry drift: compute PSI/KS of captured traffic for every live model",
            schedule=events.Schedule.rate(Duration.minutes(schedule_minutes)),
            targets=[_LambdaTarget(self.function, self.dead_letter_queue)],
        )
        # Added here, not by the stock target: its construct id would carry the stack name.
        self.function.add_permission(
            "ScheduleInvoke",
            principal=iam.ServicePrincipal("events.amazonaws.com"),
            source_arn=self.schedule.rule_arn,
        )
        self.alarms: list[cloudwatch.Alarm] = []
        self._function_alarms()
        for name, machine in pipelines:
            self.add_pipeline(name, machine)
        self.fleet_alarms = list(fleet_alarms)
        for alarm in self.fleet_alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.drift_rule = events.Rule(
            self,
            "DriftAlarmRule",
            description="A model's drift alarm entered ALARM: start the retraining workflow",
            event_pattern=drift_alarm_pattern(config.name),
        )
        self.registered_rule = self._model_alarms(config, *governance)
        # One statement with a fixed Sid (CDK's own names the rule's path, stage included).
        self.dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeDeliveries",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.dead_letter_queue.queue_arn],
                conditions={
                    "ArnEquals": {
                        "aws:SourceArn": [
                            self.schedule.rule_arn,
                            self.drift_rule.rule_arn,
                            self.registered_rule.rule_arn,
                        ]
                    }
                },
            )
        )
        self._retrain_targets = 0
        self.dashboard = monitoring_dashboard(
            self,
            psi=self._psi,
            latency_budget_ms=self._latency_budget,
            drift_period=Duration.minutes(schedule_minutes),
            alarms=[*self.alarms, *self.fleet_alarms],
            model_alarm_prefix=model_alarm_prefix(config.name),
        )
        self._acknowledge_findings(scoring, data_bucket)

    # ---------------------------------------------------------------- public hooks

    def add_retrain_target(self, target: events.IRuleTarget) -> None:
        """Start the retraining state machine when a drift alarm fires.

        Undeliverable events go to this construct's dead-letter queue (alarmed on); build the
        target without one, e.g. `targets.SfnStateMachine(machine)`.
        """
        self.drift_rule.add_target(target)
        self._dead_letter(self.drift_rule, self._retrain_targets)
        self._retrain_targets += 1

    def _dead_letter(self, rule: events.Rule, index: int = 0) -> None:
        """Point the rule's target at the dead-letter queue (policy: `EventBridgeDeliveries`)."""
        rule.node.default_child.add_property_override(
            f"Targets.{index}.DeadLetterConfig.Arn", self.dead_letter_queue.queue_arn
        )

    def add_pipeline(self, name: str, machine: sfn.IStateMachine) -> cloudwatch.Alarm:
        """Alarm (to the topic) on any failed, timed-out or aborted execution of `machine`."""
        metric = cloudwatch.MathExpression(
            expression="FILL(f, 0) + FILL(t, 0) + FILL(a, 0)",
            using_metrics={
                "f": machine.metric_failed(period=FAST_PERIOD, statistic="Sum"),
                "t": machine.metric_timed_out(period=FAST_PERIOD, statistic="Sum"),
                "a": machine.metric_aborted(period=FAST_PERIOD, statistic="Sum"),
            },
            period=FAST_PERIOD,
            label=f"{name} executions failed",
        )
        return self._alarm(
            f"{name}PipelineFailures",
            metric,
            threshold=0,
            description=f"The {name} state machine had a failed, timed-out or aborted execution.",
        )

    # ---------------------------------------------------------------- capture

    def _grant_capture(
        self, scoring: ScoringFunction, data_bucket: s3.IBucket, data_key: kms.IKey
    ) -> None:
        """The scorer may write capture rows and nothing else of the data bucket."""
        scoring.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteCapture",
                actions=["s3:PutObject"],
                resources=[data_bucket.arn_for_objects(f"{CAPTURE_ROWS_PREFIX}*")],
            )
        )
        scoring.role.add_to_policy(
            iam.PolicyStatement(
                sid="EncryptCapture", actions=["kms:GenerateDataKey"], resources=[data_key.key_arn]
            )
        )

    # ---------------------------------------------------------------- the topic

    def _topic(self, alarm_email: str | None, removal_policy: RemovalPolicy) -> sns.Topic:
        key = kms.Key(
            self,
            "TopicKey",
            description="Ferry alarm topic encryption",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        # CloudWatch publishes alarm notifications and must be able to use the topic's key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        topic = sns.Topic(
            self, "AlarmTopic", display_name="Ferry alarms", master_key=key, enforce_ssl=True
        )
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    # ---------------------------------------------------------------- the drift function

    def _drift_function(
        self,
        config: EnvironmentConfig,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        registry_table: dynamodb.ITable,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> lambda_.DockerImageFunction:
        self.log_group = function_log_group(
            self, "DriftLogGroup", retention=log_retention, removal=removal_policy
        )
        self.role = lambda_role(
            self,
            "DriftRole",
            description="Ferry drift: read capture rows and cards, write drift reports",
        )
        spec = FunctionSpec(
            folder="drift",
            architecture=config.function_architectures.drift,
            description="Ferry drift statistics (scheduled)",
            memory_mb=1024,
            timeout=Duration.minutes(5),
            # A rerun would only repeat the report; the next scheduled run supersedes it.
            retry_attempts=0,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
            environment=drift_variables(
                config,
                data_bucket=data_bucket.bucket_name,
                registry_table=registry_table.table_name,
            ),
            no_dlq_reason="Invoked by a schedule: a failed run is alarmed on (Errors, "
            "DriftFailures) and the next run supersedes it; there is no event worth keeping in "
            "a dead-letter queue.",
        )
        fn = container_function(
            self, "DriftFunction", spec, role=self.role, log_group=self.log_group
        )
        self.role.add_to_policy(write_own_logs(self.log_group))
        statements = [
            ("ReadCapture", ["s3:GetObject"],
             [data_bucket.arn_for_objects(f"{CAPTURE_ROWS_PREFIX}*")]),
            ("WriteReports", ["s3:PutObject"],
             [data_bucket.arn_for_objects(f"{CAPTURE_REPORTS_PREFIX}*")]),
            ("DataKey", ["kms:Decrypt", "kms:GenerateDataKey"], [data_key.key_arn]),
            ("ReadRegistry", ["dynamodb:GetItem", "dynamodb:Query"], [registry_table.table_arn]),
        ]  # fmt: skip
        for sid, actions, resources in statements:
            self.role.add_to_policy(
                iam.PolicyStatement(sid=sid, actions=actions, resources=resources)
            )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListCapture",
                actions=["s3:ListBucket"],
                resources=[data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{CAPTURE_ROWS_PREFIX}*"]}},
            )
        )
        return fn

    # ---------------------------------------------------------------- alarms

    def _model_alarms(
        self, config: EnvironmentConfig, function: lambda_.Function, role: iam.IRole
    ) -> events.Rule:
        """Let the governance function put every model's alarms, at registration and again on
        each `Model Version Registered` registry event (idempotent, so a put that failed, or a
        model registered by a path that bypassed the function, is repaired)."""
        for name, value in model_alarm_variables(config, topic_arn=self.topic.topic_arn).items():
            function.add_environment(name, value)
        stack = Stack.of(self)
        where = f"{stack.partition}:cloudwatch:{stack.region}:{stack.account}"
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutModelAlarms",
                actions=["cloudwatch:PutMetricAlarm"],
                resources=[f"arn:{where}:alarm:{model_alarm_prefix(config.name)}*"],
            )
        )
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        acknowledge(
            role.node.find_child("DefaultPolicy").node.default_child,
            f"AwsSolutions-IAM5[Resource::arn:aws:cloudwatch:{region}:{account}:alarm:"
            f"{model_alarm_prefix(config.name)}*]",
            "Governance puts the alarms of every model registered, named "
            "Ferry-{env}-model-{model}-{kind}; the grant is that name prefix and PutMetricAlarm.",
        )
        rule = events.Rule(
            self,
            "ModelRegisteredRule",
            description="A model version was registered: put that model's alarms",
            event_pattern=events.EventPattern(
                source=[REGISTRY_EVENT_SOURCE], detail_type=[REGISTERED_DETAIL_TYPE]
            ),
            targets=[_LambdaTarget(function, self.dead_letter_queue)],
        )
        # EventBridge invokes asynchronously: a put that failed every retry is kept for replay.
        function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.dead_letter_queue), retry_attempts=2
        )
        function.add_permission(
            "ModelRegisteredInvoke",
            principal=iam.ServicePrincipal("events.amazonaws.com"),
            source_arn=rule.rule_arn,
        )
        return rule

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        evaluation: tuple[int, int] = (1, 1),
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
    ) -> cloudwatch.Alarm:
        periods, datapoints = evaluation
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            datapoints_to_alarm=datapoints,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def _function_alarms(self) -> None:
        self._alarm(
            "DeadLetterQueueNotEmpty",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=FAST_PERIOD, statistic="Maximum"
            ),
            threshold=0,
            description="An EventBridge delivery (schedule, drift → retraining) or a drift run "
            "failed every retry: see the monitoring dead-letter queue.",
        )
        self._alarm(
            "DriftFunctionErrors",
            self.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=0,
            description="The drift function crashed: drift is not being watched.",
        )
        self._alarm(
            "DriftFailures",
            cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name="DriftFailures",
                dimensions_map={"service": DRIFT_SERVICE},
                statistic="Sum",
                period=Duration.minutes(5),
            ),
            threshold=0,
            description="The drift run failed for a model (see the drift function's logs).",
        )

    # ---------------------------------------------------------------- cdk-nag

    def _acknowledge_findings(self, scoring: ScoringFunction, data_bucket: s3.IBucket) -> None:
        stack = Stack.of(self)
        data_id = stack.resolve(stack.get_logical_id(data_bucket.node.default_child))
        scoring_policy = scoring.role.node.find_child("DefaultPolicy").node.default_child
        acknowledge(
            scoring_policy,
            f"AwsSolutions-IAM5[Resource::<{data_id}.Arn>/{CAPTURE_ROWS_PREFIX}*]",
            "Scoring writes sampled rows as new objects under capture/rows/{model}/{hour}/; "
            "keys are generated at run time. PutObject only, on that prefix only.",
        )
        policy = self.role.node.find_child("DefaultPolicy").node.default_child
        for prefix in (CAPTURE_ROWS_PREFIX, CAPTURE_REPORTS_PREFIX):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::<{data_id}.Arn>/{prefix}*]",
                "Drift reads capture rows of any model and hour and writes that model's report; "
                "keys are generated at run time, the grant is the one prefix.",
            )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only xray:PutTraceSegments/PutTelemetryRecords (added by CDK for active tracing) "
            "use Resource *: X-Ray does not support resource-level permissions for them.",
        )
        acknowledge(
            self.dead_letter_queue.node.default_child,
            "Serverless-SQSRedrivePolicy",
            "This is the dead-letter queue itself: its messages wait for a look and a replay.",
        )
        acknowledge(
            self.dead_letter_queue.node.default_child,
            "AwsSolutions-SQS3",
            "This is the dead-letter queue itself (of EventBridge targets and async drift runs).",
        )
        acknowledge(
            self.drift_rule.node.default_child,
            "Serverless-EventBusDLQ",
            "The rule's target (the retraining workflow) is added with "
            "`add_retrain_target`, which gives it this construct's dead-letter queue.",
        )
