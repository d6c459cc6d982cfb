"""Reliability property 6: the stack is locked down, and each check can fail.

Uses the session's synthesis (tests/infra/conftest.py): both templates, their construct paths
and cdk-nag's validation report, as `ferry bench reliability` reads them after its own synth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ferry_cli.reliability.core import Mode, PropertyResult
from ferry_cli.reliability.p6_stack import Assembly, load_assembly, run
from infra.api import ROUTES

if TYPE_CHECKING:
    from conftest import Synthesis


@pytest.fixture(scope="module")
def assembly(synthesis: Synthesis) -> Assembly:
    return load_assembly(synthesis.outdir, synthesis.validation_error)


def _run(assembly: Assembly) -> PropertyResult:
    result = PropertyResult(6, "The stack is locked down", "fast")
    run(Mode(long=False), result, assembly)
    return result


def _count(assembly: Assembly, *kinds: str) -> int:
    return sum(
        1
        for template in assembly.templates.values()
        for r in template["Resources"].values()
        if r["Type"] in kinds
    )


def test_both_templates_hold_every_lockdown_rule(assembly: Assembly) -> None:
    """
    Given the synthesized dev and prod templates and cdk-nag's report
    When property 6 checks them
    Then nothing is reported, and the figures count what is really in the templates
    """
    result = _run(assembly.copy())
    assert result.violations == []
    f = result.figures
    assert f["templates"] == 2
    assert f["routes"] == f["routes with an authorizer"] == 2 * len(ROUTES)
    assert f["functions"] == f["function roles"] == _count(assembly, "AWS::Lambda::Function")
    assert f["buckets (encrypted, TLS-only, private)"] == "{0}/{0}".format(
        _count(assembly, "AWS::S3::Bucket")
    )
    assert f["tables (PITR)"] == _count(assembly, "AWS::DynamoDB::Table")
    prod = {"prod": assembly.templates["prod"]}
    retained = sum(
        1 for t in prod.values() for r in t["Resources"].values()
        if r["Type"] in ("AWS::S3::Bucket", "AWS::DynamoDB::Table")
    )  # fmt: skip
    assert f["retained in prod (buckets + tables)"] == retained > 0
    assert f["scoring role statements"] > 0
    assert f["wildcard grants"] == f["... with a written reason"] > 0
    assert f["async-invoked functions"] >= 2 and f["queue/stream inputs"] >= 2
    assert f["nag packs"] == 2 and f["nag findings acknowledged"] > 0
    assert f["nag findings unacknowledged"] == 0


# -- each rule, broken on purpose ---------------------------------------------------------------


def _res(assembly: Assembly, env: str, kind: str, id_part: str = "") -> dict[str, Any]:
    (found,) = [
        r
        for lid, r in assembly.templates[env]["Resources"].items()
        if r["Type"] == kind and id_part in lid
    ][:1]
    return found


def _scoring_policy(assembly: Assembly, env: str) -> dict[str, Any]:
    return _res(assembly, env, "AWS::IAM::Policy", "ScoringRole")["Properties"]["PolicyDocument"]


def _registry_arn(assembly: Assembly, env: str) -> dict[str, Any]:
    (lid,) = [
        lid for lid, r in assembly.templates[env]["Resources"].items()
        if r["Type"] == "AWS::DynamoDB::Table" and "Registry" in lid
    ]  # fmt: skip
    return {"Fn::GetAtt": [lid, "Arn"]}


def unauthorized_route(a: Assembly) -> None:
    _res(a, "dev", "AWS::ApiGatewayV2::Route")["Properties"]["AuthorizationType"] = "NONE"


def shared_role(a: Assembly) -> None:
    scoring = _res(a, "prod", "AWS::Lambda::Function", "ScoringFunction")
    other = _res(a, "prod", "AWS::Lambda::Function", "DriftFunction")
    other["Properties"]["Role"] = scoring["Properties"]["Role"]


def scoring_writes_registry(a: Assembly) -> None:
    _scoring_policy(a, "dev")["Statement"].append(
        {"Effect": "Allow", "Action": "dynamodb:*Item", "Resource": _registry_arn(a, "dev")}
    )


def scoring_deletes_model_versions(a: Assembly) -> None:
    _scoring_policy(a, "prod")["Statement"].append(
        {"Effect": "Allow", "Action": ["s3:Delete*"], "Resource": "*"}
    )


def unexplained_wildcard(a: Assembly) -> None:
    _res(a, "dev", "AWS::IAM::Policy", "DriftRole")["Properties"]["PolicyDocument"][
        "Statement"
    ].append({"Effect": "Allow", "Action": "sqs:Get*", "Resource": "arn:aws:sqs:*:*:queue"})


def bucket_without_tls(a: Assembly) -> None:
    policy = _res(a, "prod", "AWS::S3::BucketPolicy", "ModelBucket")["Properties"]
    policy["PolicyDocument"]["Statement"] = [
        s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] != "Deny"
    ]


def public_bucket(a: Assembly) -> None:
    bucket = _res(a, "dev", "AWS::S3::Bucket", "DataBucket")["Properties"]
    bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] = False


def unencrypted_bucket(a: Assembly) -> None:
    del _res(a, "dev", "AWS::S3::Bucket", "DataBucket")["Properties"]["BucketEncryption"]


def prod_table_not_retained(a: Assembly) -> None:
    _res(a, "prod", "AWS::DynamoDB::Table", "Audit")["DeletionPolicy"] = "Delete"


def table_without_pitr(a: Assembly) -> None:
    table = _res(a, "dev", "AWS::DynamoDB::Table", "Registry")["Properties"]
    del table["PointInTimeRecoverySpecification"]


def async_function_without_destination(a: Assembly) -> None:
    resources = a.templates["dev"]["Resources"]
    for lid in [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]:
        del resources[lid]


def queue_without_redrive(a: Assembly) -> None:
    for r in a.templates["prod"]["Resources"].values():
        if r["Type"] == "AWS::SQS::Queue":
            r["Properties"].pop("RedrivePolicy", None)


def nag_finding(a: Assembly) -> None:
    a.report["pluginReports"][0]["violations"].append(
        {"ruleName": "AwsSolutions-S1", "violatingConstructs": [{"constructPath": "Ferry-dev/X"}]}
    )


@pytest.mark.parametrize(
    ("breaks", "reported"),
    [
        (unauthorized_route, "has no authorizer"),
        (shared_role, "is shared by 2 functions"),
        (scoring_writes_registry, "dynamodb:PutItem, dynamodb:UpdateItem on TablesRegistryTable"),
        (scoring_deletes_model_versions, "s3:DeleteObjectVersion"),
        (unexplained_wildcard, "Action::sqs:Get* without an acknowledged reason"),
        (bucket_without_tls, "has no TLS-only policy"),
        (public_bucket, "does not block all public access"),
        (unencrypted_bucket, "is not encrypted"),
        (prod_table_not_retained, "is not retained"),
        (table_without_pitr, "has no point-in-time recovery"),
        (async_function_without_destination, "with no DLQ or on-failure destination"),
        (queue_without_redrive, "has no redrive DLQ or on-failure destination"),
        (nag_finding, "cdk-nag AwsSolutions: AwsSolutions-S1"),
    ],
)
def test_each_rule_reports_a_template_that_breaks_it(
    assembly: Assembly, breaks: Callable[[Assembly], None], reported: str
) -> None:
    broken = assembly.copy()
    breaks(broken)
    violations = _run(broken).violations
    assert any(reported in v for v in violations), violations
