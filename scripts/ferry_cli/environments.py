"""Where `--env local|dev|prod` points: one resolution, then the same code path for all.

- `local` reads `.ferry/local.json` (written by `ferry local up`, DESIGN.md §4) and points
  every boto3 client at its `aws_endpoint_url` with the credentials of one of its local
  identities (`ferry --as NAME`, else `FERRY_IDENTITY`, else `admin`); `FERRY_LOCAL_CONFIG`
  overrides the path.
- `dev` / `prod` read the outputs of the stack `Ferry-dev` / `Ferry-prod` with CloudFormation
  `describe_stacks`, in the region of `infra/config.py`, with the caller's own credentials.
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from ferry_local.handlers import REPO_ROOT
from ferry_local.identities import Identity, load_identities

ENV_NAMES = ("local", "dev", "prod")
LOCAL_CONFIG = Path(".ferry") / "local.json"
DEFAULT_IDENTITY = "admin"
# A release pipeline's step gets the deployed stack's outputs as variables of this prefix.
OUTPUT_ENV_PREFIX = "FERRY_OUTPUT_"
# The local identity this command acts as (`ferry --as NAME`); None: FERRY_IDENTITY or admin.
ACTING_AS: ContextVar[str | None] = ContextVar("ferry_acting_as", default=None)


class EnvironmentUnavailable(Exception):
    """The environment cannot be resolved (platform not running, stack not deployed, ...)."""


@dataclass(frozen=True)
class Environment:
    """One resolved environment: its stack outputs and how to reach its AWS endpoints."""

    name: str
    region: str
    outputs: dict[str, str]
    stack: str = ""  # the CloudFormation stack's name (Ferry-local, Ferry-dev, Ferry-prod)
    endpoint_url: str | None = None
    api_url: str | None = None
    identity: Identity | None = None  # local: whose credentials; deployed: the caller's own
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise EnvironmentUnavailable(
                f"environment {self.name!r} has no output {key!r} (is the stack up to date?)"
            )
        return value

    def client(self, service: str) -> Any:
        """A boto3 client for this environment (cached; boto3 clients are thread-safe)."""
        if service not in self._clients:
            kwargs: dict[str, Any] = {"region_name": self.region}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            if self.identity is not None:
                kwargs.update(self.identity.boto3_kwargs())
            self._clients[service] = boto3.client(service, **kwargs)
        return self._clients[service]


def local_config_path() -> Path:
    override = os.environ.get("FERRY_LOCAL_CONFIG")
    return Path(override) if override else REPO_ROOT / LOCAL_CONFIG


def resolve_local(path: Path | None = None) -> Environment:
    path = path or local_config_path()
    if not path.is_file():
        raise EnvironmentUnavailable(
            f"the local platform is not running ({path} not found): start it with `ferry local up`"
        )
    try:
        doc = json.loads(path.read_text())
        environment = Environment(
            name="local",
            region=doc["region"],
            outputs={k: str(v) for k, v in doc["outputs"].items()},
            stack=str(doc["stack"]),
            endpoint_url=doc["aws_endpoint_url"],
            api_url=doc.get("api_url"),
            identity=_local_identity(load_identities(doc), path),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EnvironmentUnavailable(f"{path} is not a valid local platform file: {exc}") from exc
    return environment


def acting_as() -> str:
    """The local identity this command acts as."""
    return ACTING_AS.get() or os.environ.get("FERRY_IDENTITY") or DEFAULT_IDENTITY


def _local_identity(identities: dict[str, Identity], path: Path) -> Identity:
    name = acting_as()
    if name not in identities:
        known = ", ".join(sorted(identities)) or "none"
        raise EnvironmentUnavailable(
            f"no local identity {name!r} in {path} (identities: {known}); restart the platform "
            "with `ferry local up` if it was started by an older version"
        )
    return identities[name]


def outputs_from_environment() -> dict[str, str]:
    """The stack outputs a release pipeline step hands over as `FERRY_OUTPUT_<OutputKey>`
    variables (`infra/pipeline.py`), so the step needs no CloudFormation permission."""
    return {
        key.removeprefix(OUTPUT_ENV_PREFIX): value
        for key, value in os.environ.items()
        if key.startswith(OUTPUT_ENV_PREFIX)
    }


def resolve_stack(name: str, cloudformation: Any | None = None) -> Environment:
    """Outputs of `Ferry-{name}`: as a pipeline step's environment gives them, else from
    CloudFormation (the client may be injected in tests)."""
    from infra.config import ENVIRONMENTS

    config = ENVIRONMENTS[name]
    stack = f"Ferry-{name}"
    outputs = outputs_from_environment()
    if not outputs:
        outputs = _stack_outputs(stack, config.region, cloudformation)
    return Environment(
        name=name,
        region=config.region,
        outputs=outputs,
        stack=stack,
        api_url=outputs.get("ApiUrl"),
    )


def _stack_outputs(stack: str, region: str, cloudformation: Any | None) -> dict[str, str]:
    cfn = cloudformation or boto3.client("cloudformation", region_name=region)
    try:
        (desc,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:  # botocore: ValidationError (no stack), no credentials, network
        raise EnvironmentUnavailable(f"cannot read stack {stack} in {region}: {exc}") from exc
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}


def resolve(name: str) -> Environment:
    """The environment named on the command line."""
    if name not in ENV_NAMES:
        raise EnvironmentUnavailable(f"unknown environment {name!r}; one of {', '.join(ENV_NAMES)}")
    if name == "local":
        return resolve_local()
    return resolve_stack(name)
