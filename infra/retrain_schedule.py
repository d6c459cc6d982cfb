"""Scheduled retraining of every live model, whichever models are registered when it fires.

The schedule rule starts a small state machine that lists the registry's models (the
`__index__` partition: one item per model, no Scan), keeps those with a production version
(the models whose traffic drift watches too) and starts the retrain-and-promote workflow for
each, without waiting for it. A model registered after the deploy is included from its first
promotion on; nothing here names a model.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.nag import acknowledge

# The registry table's layout (the core's ferry_core/registry/table.py; restated, as infra
# imports no runtime code): the model index partition and the production pointer's sort key.
INDEX_PARTITION = "__index__"
PRODUCTION_KEY = "STAGE#production"


class RetrainSchedule(Construct):
    """A schedule rule → a state machine that starts a retraining run per live model."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedule: str,
        registry_table: dynamodb.ITable,
        retrain_machine: sfn.IStateMachine,
        dead_letter_queue: sqs.IQueue,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        list_models = tasks.CallAwsService(
            self,
            "ListModels",
            service="dynamodb",
            action="query",
            parameters={
                "TableName": registry_table.table_name,
                "KeyConditionExpression": "#model = :index",
                "ExpressionAttributeNames": {"#model": "model"},
                "ExpressionAttributeValues": {":index": {"S": INDEX_PARTITION}},
            },
            iam_resources=[registry_table.table_arn],
            iam_action="dynamodb:Query",
            result_selector={"models.$": "$.Items[*].sk.S"},
        )
        production = tasks.DynamoGetItem(
            self,
            "ProductionPointer",
            table=registry_table,
            key={
                "model": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$.model")),
                "sk": tasks.DynamoAttributeValue.from_string(PRODUCTION_KEY),
            },
            result_path="$.pointer",
        )
        start = tasks.StepFunctionsStartExecution(
            self,
            "StartRetraining",
            state_machine=retrain_machine,
            input=sfn.TaskInput.from_object(
                {
                    "model": sfn.JsonPath.string_at("$.model"),
                    "trigger": "schedule",
                    "requested_by": "schedule",
                    "reason": f"schedule {schedule}",
                }
            ),
            result_selector={"execution.$": "$.ExecutionArn"},
        )
        each = sfn.Map(
            self,
            "EachModel",
            items_path="$.models",
            item_selector={"model": sfn.JsonPath.string_at("$$.Map.Item.Value")},
            max_concurrency=5,
        ).item_processor(
            production.next(
                sfn.Choice(self, "Live?")
                .when(sfn.Condition.is_present("$.pointer.Item.version"), start)
                .otherwise(sfn.Succeed(self, "NotLive"))
            )
        )
        log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(list_models.next(each)),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL),
            timeout=Duration.minutes(15),
            comment="Ferry scheduled retraining: start a retrain run for every live model",
        )
        self.rule = events.Rule(
            self,
            "Rule",
            description="Scheduled retraining of every live model",
            schedule=events.Schedule.expression(schedule),
        )
        self.rule.add_target(targets.SfnStateMachine(self.state_machine, retry_attempts=2))
        # Undeliverable starts go to the monitoring dead-letter queue (alarmed on); one
        # statement with a fixed Sid (the stock one names the rule's path, stage included).
        self.rule.node.default_child.add_property_override(
            "Targets.0.DeadLetterConfig.Arn", dead_letter_queue.queue_arn
        )
        dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="RetrainScheduleDeliveries",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.rule.rule_arn}},
            )
        )
        self._acknowledge_findings()

    def _acknowledge_findings(self) -> None:
        acknowledge(
            self.rule.node.default_child,
            "Serverless-EventBusDLQ",
            "The target gets the monitoring dead-letter queue by a property override "
            "(Targets.0.DeadLetterConfig), which cdk-nag does not see.",
        )
        policy = self.state_machine.role.node.find_child("DefaultPolicy").node.default_child
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Log delivery (logs:*LogDelivery, DescribeResourcePolicies) and X-Ray put calls, "
            "added by CDK for logging and tracing, have no resource-level permissions.",
        )
