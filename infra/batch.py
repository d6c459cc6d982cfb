"""Batch scoring: S3 upload → SQS (DLQ) → batch function, and a Distributed Map for big files.

Why S3 → SQS → Lambda rather than S3 → Lambda directly: the queue buffers a burst of uploads
(the function's concurrency is capped, the queue absorbs the rest instead of S3 retrying
and giving up), each message is retried with backoff through its visibility timeout, a message
that keeps failing lands in a dead-letter queue after `MAX_RECEIVES` tries (alarmed on, and
replayable with a redrive), and ReportBatchItemFailures returns only the failed messages. The
visibility timeout is six times the function timeout, as AWS recommends, so a message is never
redelivered while a run of it is still going. Domain failures (unknown model, corrupt file)
are not retried: they end in a failed manifest and the BatchFailures metric.

The notification is set on the bucket's CloudFormation resource (no CDK custom resource): it
needs only a queue policy, which the bucket waits for.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.environment import batch_variables
from infra.functions import FunctionSpec, container_function, function_log_group, lambda_role
from infra.governance import publish_registry_events
from infra.nag import acknowledge
from infra.retention import (
    BATCH_INCOMING_PREFIX,
    BATCH_MANIFESTS_PREFIX,
    BATCH_REJECTED_PREFIX,
    BATCH_SCORED_PREFIX,
    BATCH_STAGING_PREFIX,
    CAPTURE_ROWS_PREFIX,
)
from infra.state_machines import dead_letter_queue, traced_state_machine
from infra.storage import MODELS_PREFIX

OUTPUT_PREFIXES = (
    BATCH_SCORED_PREFIX,
    BATCH_REJECTED_PREFIX,
    BATCH_MANIFESTS_PREFIX,
    BATCH_STAGING_PREFIX,
)
# The idempotency table's TTL attribute: Powertools' records and the per-run audit markers
# carry it (IDEMPOTENCY_SECONDS from `batch_idempotency_retention_days`).
TTL_ATTRIBUTE = "expiration"
MAX_RECEIVES = 3
VISIBILITY_FACTOR = 6
# A part is idempotent (it rewrites its own staging keys, all or nothing), so a part that failed
# past its clients' retries (an S3 throttle, a connection cut mid-read) runs again instead of
# failing the whole file; one that keeps failing fails the Map Run (no tolerated failures) and
# the Catch writes the failed manifest.
PART_RETRIES = 2
# The fan-out steps and the handler each is (one image, one CMD per step).
STEPS = {
    "Split": "handler.split_handler",
    "Part": "handler.part_handler",
    "Merge": "handler.merge_handler",
    "Fail": "handler.fail_handler",
}
_NO_DLQ_REASON = (
    "Invoked by SQS (whose redrive policy dead-letters failed messages) or "
    "synchronously by Step Functions (which catches failures): nothing is async."
)


class BatchScoring(Construct):
    """Queue + DLQ, idempotency table, batch function, fan-out state machine and alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        data_bucket: s3.Bucket,
        data_key: kms.IKey,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        registry_table: dynamodb.ITable,
        audit_table: dynamodb.ITable,
        anchor_bucket: s3.IBucket,
        anchor_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._queues(removal_policy)
        self._notify(data_bucket)

        # One role per function (no role is shared: a step's credentials act as that step
        # only). The queue consumer's role may also start the state machine, whose steps must
        # not depend on that grant (it would be a dependency cycle).
        self.role = lambda_role(
            self,
            "Role",
            description="Ferry batch scoring: read uploads, write results, audit batch runs",
        )
        self.step_roles = {
            step: lambda_role(
                self,
                f"{step}Role",
                description=f"Ferry batch fan-out, {step.lower()} step: batch reads and writes",
            )
            for step in STEPS
        }
        self.log_group = function_log_group(
            self, "LogGroup", retention=log_retention, removal=removal_policy
        )

        def variables(state_machine_arn: str | None = None) -> dict[str, str]:
            return batch_variables(
                config,
                model_bucket=model_bucket.bucket_name,
                registry_table=registry_table.table_name,
                audit_table=audit_table.table_name,
                anchor_bucket=anchor_bucket.bucket_name,
                idempotency_table=self.idempotency_table.table_name,
                state_machine_arn=state_machine_arn,
            )

        self.steps = {
            step: self._function(
                f"{step}Function",
                cmd,
                f"Ferry batch fan-out: {step.lower()}",
                self.step_roles[step],
                variables(),
            )
            for step, cmd in STEPS.items()
        }
        self.state_machine = self._state_machine(
            data_bucket, config.batch_map_concurrency, log_retention, removal_policy
        )
        # The ItemReader reads parts.json from the SSE-KMS data bucket: S3 decrypts it with
        # the caller's (the state machine's) permission on the bucket's key.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="DecryptParts", actions=["kms:Decrypt"], resources=[data_key.key_arn]
            )
        )
        self.function = self._function(
            "Function",
            None,
            "Ferry batch scoring (S3 → SQS)",
            self.role,
            variables(self.state_machine.state_machine_arn),
        )
        # An explicit mapping (not add_event_source, whose construct id embeds the stack name):
        # one message per invocation, so a file gets the whole time limit; failed messages only
        # go back to the queue.
        self.mapping = lambda_.EventSourceMapping(
            self,
            "QueueMapping",
            target=self.function,
            event_source_arn=self.queue.queue_arn,
            batch_size=1,
            report_batch_item_failures=True,
            max_concurrency=config.batch_max_concurrency,
        )
        self.queue.grant_consume_messages(self.function)
        self.state_machine.grant_start_execution(self.function)
        self._grant(data_bucket, data_key, model_bucket, model_key, registry_table, audit_table)
        self._grant_anchors(anchor_bucket, anchor_key)
        self._alarms()
        self._acknowledge_findings(data_bucket, model_bucket, anchor_bucket)

    def _queues(self, removal_policy: RemovalPolicy) -> None:
        """The idempotency table, and the upload queue with its dead-letter queue."""
        self.idempotency_table = dynamodb.Table(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )
        self.dlq = dead_letter_queue(self, removal_policy=removal_policy)
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(
                self._config.batch_timeout_seconds * VISIBILITY_FACTOR
            ),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dlq),
            removal_policy=removal_policy,
        )

    def _function(
        self,
        construct_id: str,
        cmd: str | None,
        description: str,
        role: iam.IRole,
        environment: dict[str, str],
    ) -> lambda_.DockerImageFunction:
        """One batch image, one handler per function, all logging to the one log group."""
        spec = FunctionSpec(
            folder="batch",
            architecture=self._config.function_architectures.batch,
            lock="batch",
            cmd=cmd,
            description=description,
            memory_mb=self._config.batch_memory_mb,
            timeout=Duration.seconds(self._config.batch_timeout_seconds),
            environment=environment,
            no_dlq_reason=_NO_DLQ_REASON,
        )
        return container_function(self, construct_id, spec, role=role, log_group=self.log_group)

    def _notify(self, data_bucket: s3.Bucket) -> None:
        """ObjectCreated under batch/incoming/ → the queue, set on the CfnBucket directly."""
        stack = Stack.of(self)
        # One policy per queue (SQS keeps only one): the one enforce_ssl already created.
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3Notifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                # The bucket ARN would make a cycle (the bucket waits for this policy).
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        policy = self.queue.node.find_child("Policy")
        cfn_bucket = data_bucket.node.default_child
        cfn_bucket.add_property_override(
            "NotificationConfiguration.QueueConfigurations",
            [
                {
                    "Event": "s3:ObjectCreated:*",
                    "Queue": self.queue.queue_arn,
                    "Filter": {
                        "S3Key": {"Rules": [{"Name": "prefix", "Value": BATCH_INCOMING_PREFIX}]}
                    },
                }
            ],
        )
        cfn_bucket.node.add_dependency(policy)

    def _state_machine(
        self,
        data_bucket: s3.IBucket,
        map_concurrency: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> sfn.StateMachine:
        """Split → Distributed Map over parts (ItemReader: parts.json) → Merge; Fail on error."""

        def invoke(step: str, payload: dict | None = None) -> tasks.LambdaInvoke:
            return tasks.LambdaInvoke(
                self,
                step,
                lambda_function=self.steps[step],
                payload=sfn.TaskInput.from_object(payload) if payload else None,
                payload_response_only=True,
                retry_on_service_exceptions=True,
            )

        fail = invoke(
            "Fail",
            {
                "object": sfn.JsonPath.object_at("$.object"),
                "error": sfn.JsonPath.object_at("$.error"),
            },
        ).next(sfn.Fail(self, "Failed", error="BatchFailed", cause="see the failed manifest"))
        split = invoke("Split", {"object": sfn.JsonPath.object_at("$.object")})
        split.add_catch(fail, result_path="$.error")
        split_result = split  # its output replaces the state: {status, parts_key, object, ...}
        parts = sfn.DistributedMap(
            self,
            "Parts",
            item_reader=sfn.S3JsonItemReader(
                bucket=data_bucket, key=sfn.JsonPath.string_at("$.parts_key")
            ),
            item_selector={
                "object": sfn.JsonPath.object_at("$.object"),
                "model_version": sfn.JsonPath.number_at("$.model_version"),
                "part": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            max_concurrency=map_concurrency,
            result_path=sfn.JsonPath.DISCARD,
        )
        part = invoke("Part").add_retry(
            errors=[sfn.Errors.TASKS_FAILED],
            max_attempts=PART_RETRIES,
            interval=Duration.seconds(2),
            backoff_rate=2,
        )
        parts.item_processor(part)
        parts.add_catch(fail, result_path="$.error")
        merge = invoke("Merge", {"object": sfn.JsonPath.object_at("$.object")})
        merge.add_catch(fail, result_path="$.error")
        definition = split_result.next(
            sfn.Choice(self, "Ready?")
            .when(sfn.Condition.string_equals("$.status", "ready"), parts.next(merge))
            .otherwise(sfn.Succeed(self, "Nothing to merge"))
        )
        return traced_state_machine(
            self,
            "FanOut",
            definition,
            timeout=Duration.hours(6),
            log_retention=log_retention,
            removal_policy=removal_policy,
        )

    def _grant(
        self,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        registry_table: dynamodb.ITable,
        audit_table: dynamodb.ITable,
    ) -> None:
        """Exactly what a run does: read uploads, write batch/ outputs, read models, audit."""
        statements = [
            ("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
             [self.log_group.log_group_arn]),
            ("ReadUploads", ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging",
                             "s3:GetObjectVersionTagging"],
             [data_bucket.arn_for_objects("batch/*")]),
            ("WriteResults", ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
             [data_bucket.arn_for_objects(f"{p}*") for p in OUTPUT_PREFIXES]),
            ("ListStaging", ["s3:ListBucket"], [data_bucket.bucket_arn]),
            ("WriteCapture", ["s3:PutObject"],
             [data_bucket.arn_for_objects(f"{CAPTURE_ROWS_PREFIX}*")]),
            ("DataKey", ["kms:Decrypt", "kms:GenerateDataKey"], [data_key.key_arn]),
            ("ReadModelArtifacts", ["s3:GetObject", "s3:GetObjectVersion"],
             [model_bucket.arn_for_objects(f"{MODELS_PREFIX}*")]),
            ("DecryptModelArtifacts", ["kms:Decrypt"], [model_key.key_arn]),
            ("ReadRegistry", ["dynamodb:GetItem", "dynamodb:Query"], [registry_table.table_arn]),
            ("AppendAudit", ["dynamodb:Query", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"],
             [audit_table.table_arn]),
            ("Idempotency", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                             "dynamodb:DeleteItem"],
             [self.idempotency_table.table_arn]),
        ]  # fmt: skip
        for role in (self.role, *self.step_roles.values()):
            for sid, actions, resources in statements:
                role.add_to_policy(
                    iam.PolicyStatement(sid=sid, actions=actions, resources=resources)
                )
            role.add_to_policy(publish_registry_events(self))  # `Batch Run Recorded` events

    def _grant_anchors(self, anchor_bucket: s3.IBucket, anchor_key: kms.IKey) -> None:
        """A batch run is a governance event: its audit entry is anchored like the others."""
        for role in (self.role, *self.step_roles.values()):
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="WriteAnchors",
                    actions=["s3:PutObject"],
                    resources=[anchor_bucket.arn_for_objects("anchors/*")],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="EncryptAnchors",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[anchor_key.key_arn],
                )
            )

    def _alarms(self) -> None:
        """DLQ depth (a message failed every retry) and BatchFailures (a file was unscorable)."""
        self.dlq_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            metric=self.dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Batch messages failed every retry: see the DLQ, fix, redrive.",
        )
        self.failure_alarm = cloudwatch.Alarm(
            self,
            "FailureAlarm",
            metric=cloudwatch.MathExpression(
                expression="SUM(SEARCH('{Ferry,model,service} MetricName=\"BatchFailures\"', "
                "'Sum', 60))",
                period=Duration.minutes(1),
                label="BatchFailures",
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="A batch file got a failed manifest (unknown model, bad file).",
        )

    def _acknowledge_findings(
        self, data_bucket: s3.IBucket, model_bucket: s3.IBucket, anchor_bucket: s3.IBucket
    ) -> None:
        stack = Stack.of(self)
        policies = [
            role.node.find_child("DefaultPolicy").node.default_child
            for role in (self.role, *self.step_roles.values())
        ]
        data_id = stack.resolve(stack.get_logical_id(data_bucket.node.default_child))
        model_id = stack.resolve(stack.get_logical_id(model_bucket.node.default_child))
        anchor_id = stack.resolve(stack.get_logical_id(anchor_bucket.node.default_child))
        for policy in policies:
            self._acknowledge_policy(policy, data_id, model_id)
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::<{anchor_id}.Arn>/anchors/*]",
                "A batch run's audit entry anchors its chain head at anchors/{model}/{seq}.json "
                "(PutObject only, If-None-Match, under Object Lock): keys are known only then.",
            )
        self._acknowledge_state_machine(data_id)
        acknowledge(
            self.dlq.node.default_child,
            "Serverless-SQSRedrivePolicy",
            "This is the dead-letter queue itself: its messages wait for a fix and a redrive, "
            "they are not dead-lettered again.",
        )
        acknowledge(
            self.mapping.node.default_child,
            "Serverless-LambdaEventSourceMappingDestination",
            "An SQS source keeps failed messages on the queue, and its redrive policy moves them "
            "to the dead-letter queue after 3 receives (alarmed on): that is the destination.",
        )

    def _acknowledge_state_machine(self, data_id: str) -> None:
        stack = Stack.of(self)
        sm = self.state_machine
        role_policy = sm.role.node.find_child("DefaultPolicy").node.default_child
        for step in self.steps.values():
            fn_id = stack.resolve(stack.get_logical_id(step.node.default_child))
            acknowledge(
                role_policy,
                f"AwsSolutions-IAM5[Resource::<{fn_id}.Arn>:*]",
                "CDK's LambdaInvoke grant covers the function's versions and aliases (ARN:*); "
                "the state machine invokes only its own four step functions.",
            )
        acknowledge(
            role_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<{data_id}>/*]",
            "The Distributed Map's ItemReader reads batch/staging/{run}/parts.json, whose key "
            "is only known at run time; CDK's ItemReader grant is GetObject on the bucket.",
        )
        acknowledge(
            role_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only the X-Ray and CloudWatch Logs delivery actions Step Functions needs for "
            "tracing and logging, which do not support resource-level permissions.",
        )
        sm_id = stack.resolve(stack.get_logical_id(sm.node.default_child))
        map_policy = sm.node.find_child("DistributedMapPolicy").node.default_child
        # cdk-nag prints an unresolved account as the pseudo parameter, a configured one as is.
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        execution = (
            f"arn:aws:states:{stack.region}:{account}:execution:"
            f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{sm_id}"}}]}}]}}'
        )
        for suffix in (":*", "/*:*"):
            acknowledge(
                map_policy,
                f"AwsSolutions-IAM5[Resource::{execution}{suffix}]",
                "A Distributed Map runs child executions of this state machine and must "
                "describe and stop them; their names are generated at run time.",
            )

    def _acknowledge_policy(self, policy: Any, data_id: str, model_id: str) -> None:
        for prefix in ("batch/", *OUTPUT_PREFIXES, CAPTURE_ROWS_PREFIX):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::<{data_id}.Arn>/{prefix}*]",
                "Batch reads any upload and writes results (and its capture sample) for any "
                "model path under its own prefixes of the data bucket; keys are per upload.",
            )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::<{model_id}.Arn>/{MODELS_PREFIX}*]",
            "Batch loads any registered model version; keys are models/{model}/v{n}/..., so the "
            "grant is the models/ prefix (GetObject/GetObjectVersion only), not the bucket.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only xray:PutTraceSegments/PutTelemetryRecords (added by CDK for active tracing) "
            "use Resource *: X-Ray does not support resource-level permissions for them.",
        )
