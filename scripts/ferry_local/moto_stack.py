"""The stack's resources in moto's in-process mock (`mock_aws`), for tests, the demo and benchmarks.

Built from the synthesized `Ferry-local` template, as the local platform builds them
(`resources.create_resources`): the same bucket, table and queue names and properties as the
stack, and each function's environment as the template sets it (its Lambda resource's
`Environment.Variables`, resolved). Nothing here lists Ferry's resources or re-types settings.

The template is synthesized once per source fingerprint (cached on disk under `.ferry/cdk.out`)
and once per process here; creating the resources is per `mock_aws`, so per test. Only the
types a caller needs are created (`STORAGE_TYPES` by default: no functions, state machines or
alarms, which need the whole platform).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import boto3

from ferry_local import template
from ferry_local.identities import Identity, persona_name
from ferry_local.template import FAKE_CREDENTIALS, REPO_ROOT, SynthesizedStack

REGION = template.DEFAULT_REGION
# Buckets (with their notifications), tables and queues: what the core needs. KMS keys are left
# out (moto does not check a bucket's key, and creating them doubles the cost).
STORAGE_TYPES = frozenset({"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue"})


@functools.cache
def local_stack(repo_root: Path = REPO_ROOT) -> SynthesizedStack:
    """`Ferry-local`, synthesized (or read from the cache) once per process."""
    return template.synthesize_local(repo_root, repo_root / ".ferry" / "cdk.out")


def _resolver(stack: SynthesizedStack) -> template.Resolver:
    return template.Resolver(
        stack.template, stack_name=stack.name, region=REGION, account_id=template.DEFAULT_ACCOUNT
    )


@dataclass(frozen=True)
class StackResources:
    """The names of the stack's resources (its outputs) and its functions' environments."""

    model_bucket: str
    data_bucket: str
    registry_table: str
    audit_table: str
    anchor_bucket: str
    idempotency_table: str
    batch_queue: str
    batch_dlq: str
    environments: Mapping[str, Mapping[str, str]]  # "scoring", "batch", … → variables

    @classmethod
    def from_stack(cls, stack: SynthesizedStack) -> StackResources:
        resolver = _resolver(stack)
        outputs = {k: resolver.resolve(o["Value"]) for k, o in stack.template["Outputs"].items()}
        queue = str(outputs["BatchQueueUrl"]).rsplit("/", 1)[1]
        return cls(
            model_bucket=outputs["ModelBucketName"],
            data_bucket=outputs["DataBucketName"],
            registry_table=outputs["RegistryTableName"],
            audit_table=outputs["AuditTableName"],
            anchor_bucket=outputs["AuditAnchorBucketName"],
            idempotency_table=outputs["IdempotencyTableName"],
            batch_queue=queue,
            batch_dlq=_dead_letter_queue(resolver, queue),
            environments=_function_environments(resolver, outputs),
        )

    def function_environment(
        self, function: str, tmp_dir: str | os.PathLike[str]
    ) -> dict[str, str]:
        """`function`'s variables as the template sets them, its /tmp paths under `tmp_dir`
        (Lambda gives each function its own /tmp)."""
        return {k: _own_tmp(v, Path(tmp_dir)) for k, v in self.environments[function].items()}

    def environment(self, tmp_dir: str | os.PathLike[str]) -> dict[str, str]:
        """The scoring function's environment."""
        return self.function_environment("scoring", tmp_dir)

    def batch_environment(self, tmp_dir: str | os.PathLike[str]) -> dict[str, str]:
        """The batch function's environment."""
        return self.function_environment("batch", tmp_dir)


def _dead_letter_queue(resolver: template.Resolver, queue_name: str) -> str:
    for logical_id, resource in resolver.resources.items():
        if resource["Type"] == "AWS::SQS::Queue" and resolver.physical_id(logical_id) == queue_name:
            redrive = resolver.resolve(resource["Properties"]["RedrivePolicy"])
            return str(redrive["deadLetterTargetArn"]).rsplit(":", 1)[1]
    raise KeyError(f"no queue {queue_name} in the template")


def _function_environments(
    resolver: template.Resolver, outputs: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """Each `<Name>FunctionName` output's function → its resolved variables, keyed `name`."""
    by_physical = {
        resolver.physical_id(lid): resource
        for lid, resource in resolver.resources.items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    environments = {}
    for key, name in outputs.items():
        if key.endswith("FunctionName") and name in by_physical:
            props = by_physical[name].get("Properties", {})
            variables = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
            environments[key.removesuffix("FunctionName").lower()] = {
                k: str(v) for k, v in variables.items()
            }
    return environments


def _own_tmp(value: str, tmp_dir: Path) -> str:
    if value == "/tmp" or value.startswith("/tmp/"):
        return str(tmp_dir / value[len("/tmp") :].lstrip("/"))
    return value


@functools.cache
def stack_resources(repo_root: Path = REPO_ROOT) -> StackResources:
    return StackResources.from_stack(local_stack(repo_root))


def create_resources(
    types: Collection[str] = STORAGE_TYPES, region: str = REGION
) -> StackResources:
    """Create the template's resources of `types` in whatever endpoint boto3 points at."""
    from ferry_local.resources import create_resources as create

    stack = local_stack()
    endpoint = _creating_clients(region, os.environ.get("AWS_ENDPOINT_URL"))
    create(stack.template, _resolver(stack), endpoint, stack=stack, types=types)
    return stack_resources()


def create_identities(region: str = REGION) -> dict[str, Identity]:
    """The stack's persona roles, created in whatever endpoint boto3 points at, and a session
    of each, as the local platform makes them (for `local.json` documents written by tests)."""
    from ferry_local.identities import create_identities as assume_each
    from ferry_local.resources import create_resources as create

    stack = local_stack()
    endpoint = _creating_clients(region, os.environ.get("AWS_ENDPOINT_URL"))
    resolver = _resolver(stack)
    create(stack.template, resolver, endpoint, stack=stack, types={"AWS::IAM::Role"})
    role_arns = {
        key: resolver.resolve(output["Value"])
        for key, output in stack.template["Outputs"].items()
        if persona_name(key)
    }
    return assume_each(endpoint["sts"], role_arns)


@contextmanager
def local_aws(
    tmp_dir: str | os.PathLike[str] = "/tmp/ferry-local", types: Collection[str] = STORAGE_TYPES
) -> Iterator[StackResources]:
    """moto in this process, with the stack's resources created and this process given the
    scoring function's environment (so its handler runs here unchanged); restored after."""
    from moto import mock_aws

    res = stack_resources()
    exported = {**FAKE_CREDENTIALS, **res.environment(tmp_dir)}
    with patch.dict(os.environ, exported), mock_aws():
        create_resources(types)
        yield res


@functools.cache
def _creating_clients(region: str, endpoint_url: str | None) -> Any:
    """Clients of boto3's endpoint (the mock while one runs, else AWS_ENDPOINT_URL), made
    once per endpoint: creating them is half the cost of building the resources."""
    from ferry_local.resources import EndpointClients

    return EndpointClients(endpoint_url, region)


def clients(region: str = REGION) -> dict[str, Any]:
    return {
        "s3": boto3.client("s3", region_name=region),
        "dynamodb": boto3.client("dynamodb", region_name=region),
        "sqs": boto3.client("sqs", region_name=region),
    }
