"""DynamoDB tables: the model registry and the append-only audit log."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct


class RegistryTables(Construct):
    """The registry (`model`, `sk`) and the audit chain (`model`, `seq`), both with PITR.

    Registry items: `sk="V#000001"` a version card, `sk="STAGE#production"|"STAGE#staging"` a
    stage pointer, `sk="META"` the version counter. Audit items are ordered by `seq` per model.
    Retained tables also get deletion protection, so a stray console click cannot drop them.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.registry_table = self._table(
            "RegistryTable", sort_key=("sk", dynamodb.AttributeType.STRING), policy=removal_policy
        )
        self.audit_table = self._table(
            "AuditTable", sort_key=("seq", dynamodb.AttributeType.NUMBER), policy=removal_policy
        )

    def _table(
        self,
        construct_id: str,
        *,
        sort_key: tuple[str, dynamodb.AttributeType],
        policy: RemovalPolicy,
    ) -> dynamodb.Table:
        name, attribute_type = sort_key
        return dynamodb.Table(
            self,
            construct_id,
            partition_key=dynamodb.Attribute(name="model", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=name, type=attribute_type),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=policy == RemovalPolicy.RETAIN,
            removal_policy=policy,
        )
