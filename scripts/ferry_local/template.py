"""The local stack: `Ferry-local`, synthesized from the same `FerryStack`, and its intrinsics.

`synthesize_local()` runs `cdk synth` of `FerryStack` with the dev settings renamed `local` (no
cdk-nag: it judges deployments, not this) in a child process, so the jsii Node runtime does not
stay in the platform's memory. The cloud assembly is cached under `.ferry/cdk.out`, keyed by a
hash of everything that shapes the template; a synth takes ~10 s, a cache hit nothing.

`Resolver` evaluates CloudFormation intrinsics against deterministic physical names: every
resource's name, `Ref` and ARN are known before anything is created, so a function's environment
can name a state machine that is created after it, as CloudFormation would resolve it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.toolchain import use_project_node

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_ENV = "local"
LOCAL_STACK = "Ferry-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
# Placeholder credentials for moto's in-process mock (`mock_aws`), which checks none; they keep
# boto3 from looking for real ones. The platform's server refuses them: there a caller signs
# with a session of its role (a local identity, a function's execution role).
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": DEFAULT_REGION,
}
# What shapes the synthesized template (DESIGN.md §2: the stack is infra + app + cdk.json; the
# functions folders are its image assets).
FINGERPRINT_SOURCES = ("app.py", "cdk.json", "infra", "functions")


class TemplateError(Exception):
    """The template uses something the local platform cannot evaluate."""


def local_config() -> Any:
    """The dev settings under the name `local`: the stack becomes `Ferry-local`."""
    from infra.config import ENVIRONMENTS

    return ENVIRONMENTS["dev"].model_copy(update={"name": LOCAL_ENV})


def source_fingerprint(repo_root: Path = REPO_ROOT) -> str:
    """sha256 over the files that shape the template, and the CDK library version."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in FINGERPRINT_SOURCES:
        path = repo_root / name
        files.extend(sorted(path.rglob("*")) if path.is_dir() else [path])
    for path in files:
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        digest.update(path.relative_to(repo_root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(_cdk_version().encode())
    return digest.hexdigest()


def _cdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aws-cdk-lib")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SynthesizedStack:
    """One stack of a cloud assembly: its template and its asset manifest."""

    name: str
    outdir: Path
    template: dict[str, Any]
    assets: dict[str, Any]

    @classmethod
    def from_cdk_out(cls, outdir: str | os.PathLike[str], stack_name: str) -> SynthesizedStack:
        out = Path(outdir)
        template = json.loads((out / f"{stack_name}.template.json").read_text())
        assets_file = out / f"{stack_name}.assets.json"
        assets = json.loads(assets_file.read_text()) if assets_file.exists() else {}
        return cls(stack_name, out, template, assets)

    def function_source(
        self, properties: dict[str, Any], repo_root: Path = REPO_ROOT
    ) -> tuple[Path, str] | None:
        """(folder, handler) of a function's code, or None when it is not Python we can run.

        Image functions: the asset's Dockerfile folder and its CMD. Zip functions: the staged
        asset folder and `Handler`. A staged copy identical to the repository's file is mapped
        back to the repository, so tracebacks point at the sources a developer edits.
        """
        code = properties.get("Code", {})
        image_uri = code.get("ImageUri")
        if image_uri is not None:
            tag = _last_token(image_uri).rpartition(":")[2]
            image = self.assets.get("dockerImages", {}).get(tag)
            if image is None:
                return None
            dockerfile = Path(image["source"].get("dockerFile", "Dockerfile"))
            staged = self.outdir / image["source"]["directory"]
            command = properties.get("ImageConfig", {}).get("Command")
            handler = command[0] if command else _dockerfile_cmd(staged / dockerfile)
            return self._prefer_repo(staged, dockerfile.parent, handler, repo_root), handler
        runtime = str(properties.get("Runtime", ""))
        if not runtime.startswith("python"):
            return None
        handler = properties.get("Handler", "index.handler")
        s3_key = code.get("S3Key")
        if isinstance(s3_key, str):
            asset = self.assets.get("files", {}).get(s3_key.rsplit(".", 1)[0])
            if asset is None:
                return None
            return self.outdir / asset["source"]["path"], handler
        return None  # inline code is materialized by resources.py

    @staticmethod
    def _prefer_repo(staged: Path, relative: Path, handler: str, repo_root: Path) -> Path:
        module = handler.rpartition(".")[0].replace(".", "/") + ".py"
        ours, theirs = repo_root / relative / module, staged / relative / module
        if ours.is_file() and theirs.is_file() and ours.read_bytes() == theirs.read_bytes():
            return repo_root / relative
        return staged / relative


def _last_token(value: Any) -> str:
    """The literal tail of an ImageUri (`Fn::Sub` or `Fn::Join` of a repository and a tag)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    if isinstance(value, dict) and "Fn::Join" in value:
        parts = value["Fn::Join"][1]
        return parts[-1] if isinstance(parts[-1], str) else ""
    return ""


def _dockerfile_cmd(dockerfile: Path) -> str:
    """The handler named by the Dockerfile's last `CMD ["module.function"]`."""
    text = dockerfile.read_text() if dockerfile.is_file() else ""
    commands = re.findall(r'^\s*CMD\s+\[\s*"([^"]+)"', text, flags=re.MULTILINE)
    return commands[-1] if commands else "handler.lambda_handler"


def synthesize_local(
    repo_root: Path = REPO_ROOT, cache_dir: Path | None = None, *, force: bool = False
) -> SynthesizedStack:
    """`Ferry-local`'s cloud assembly, synthesized only when its sources changed."""
    cache = cache_dir or repo_root / ".ferry" / "cdk.out"
    fingerprint = source_fingerprint(repo_root)
    stamp = cache / "ferry-fingerprint"
    if force or not stamp.exists() or stamp.read_text() != fingerprint:
        _synth(repo_root, cache)
        stamp.write_text(fingerprint)
    return SynthesizedStack.from_cdk_out(cache, LOCAL_STACK)


def load_template(
    repo_root: Path = REPO_ROOT, cache_dir: Path | None = None, *, force: bool = False
) -> dict[str, Any]:
    """The `Ferry-local` template (synthesized if needed)."""
    return synthesize_local(repo_root, cache_dir, force=force).template


def _synth(repo_root: Path, cache: Path) -> None:
    """Synthesize in a child process into a fresh folder, then swap it in (atomic for readers)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cdk.out.", dir=cache.parent))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")])),
    }
    use_project_node(env)
    command = [sys.executable, "-m", "ferry_local.template", str(work)]
    done = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise TemplateError(f"cdk synth of {LOCAL_STACK} failed:\n{done.stderr[-4000:]}")
    old = cache.with_name(cache.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if cache.exists():
        cache.rename(old)
    work.rename(cache)
    shutil.rmtree(old, ignore_errors=True)


def _synth_in_this_process(outdir: str) -> None:
    import aws_cdk as cdk

    from app import feature_flags
    from infra.stack import FerryStack

    app = cdk.App(outdir=outdir, context=feature_flags())
    FerryStack(app, config=local_config())
    app.synth()


# ---------------------------------------------------------------------------- intrinsics

_ARN_TEMPLATES: dict[str, str] = {
    "AWS::S3::Bucket": "arn:{partition}:s3:::{id}",
    "AWS::DynamoDB::Table": "arn:{partition}:dynamodb:{region}:{account}:table/{id}",
    "AWS::SQS::Queue": "arn:{partition}:sqs:{region}:{account}:{id}",
    "AWS::SNS::Topic": "arn:{partition}:sns:{region}:{account}:{id}",
    "AWS::Lambda::Function": "arn:{partition}:lambda:{region}:{account}:function:{id}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{id}",
    "AWS::Logs::LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{id}:*",
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{id}",
    "AWS::StepFunctions::StateMachine": (
        "arn:{partition}:states:{region}:{account}:stateMachine:{id}"
    ),
    "AWS::StepFunctions::Activity": "arn:{partition}:states:{region}:{account}:activity:{id}",
    "AWS::Events::Rule": "arn:{partition}:events:{region}:{account}:rule/{id}",
    "AWS::Events::EventBus": "arn:{partition}:events:{region}:{account}:event-bus/{id}",
    "AWS::CloudWatch::Alarm": "arn:{partition}:cloudwatch:{region}:{account}:alarm:{id}",
    "AWS::CloudWatch::CompositeAlarm": "arn:{partition}:cloudwatch:{region}:{account}:alarm:{id}",
}

# The property that names a resource, when the template sets it.
_NAME_PROPERTY: dict[str, str] = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Events::Rule": "Name",
    "AWS::Events::EventBus": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::CompositeAlarm": "AlarmName",
}

_NAME_LIMIT: dict[str, int] = {
    "AWS::S3::Bucket": 63,
    "AWS::SQS::Queue": 80,
    "AWS::Lambda::Function": 64,
    "AWS::IAM::Role": 64,
    "AWS::StepFunctions::StateMachine": 80,
    "AWS::Events::Rule": 64,
}

# Types whose `Ref` is their ARN rather than their name.
_REF_IS_ARN = frozenset(
    {
        "AWS::SNS::Topic",
        "AWS::StepFunctions::StateMachine",
        "AWS::StepFunctions::Activity",
        "AWS::Lambda::Alias",
        "AWS::Lambda::Version",
        "AWS::SNS::Subscription",
    }
)

_NO_VALUE = object()


class Resolver:
    """CloudFormation intrinsics over deterministic physical names (`set` records real ones)."""

    def __init__(
        self,
        template: dict[str, Any],
        *,
        stack_name: str = LOCAL_STACK,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.template = template
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.pseudo: dict[str, str] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/"
                + hashlib.sha256(stack_name.encode()).hexdigest()[:32]
            ),
        }
        self._refs: dict[str, Any] = {}
        self._arns: dict[str, str] = {}
        self._attrs: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}

    # -- names ------------------------------------------------------------------------------

    def resource_type(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"no resource {logical_id!r} in the template")
        return self.resources[logical_id]["Type"]

    def physical_id(self, logical_id: str) -> str:
        """The resource's name (bucket, table, queue, function, …) or generated id."""
        if logical_id in self._names:
            return self._names[logical_id]
        rtype = self.resource_type(logical_id)
        props = self.resources[logical_id].get("Properties", {})
        prop = _NAME_PROPERTY.get(rtype)
        if prop and props.get(prop) is not None:
            name = str(self.resolve(props[prop]))
        elif rtype == "AWS::KMS::Key":
            name = str(_uuid_for(f"{self.stack_name}/{logical_id}"))
        elif rtype == "AWS::ApiGatewayV2::Api":
            name = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:10]
        elif rtype == "AWS::ApiGatewayV2::Stage":
            name = str(props.get("StageName", "$default"))
        elif rtype == "AWS::Lambda::Alias":
            name = str(props.get("Name", logical_id))
        else:
            name = self._generated_name(logical_id, rtype, props)
        self._names[logical_id] = name
        return name

    def _generated_name(self, logical_id: str, rtype: str, props: dict[str, Any]) -> str:
        """`{stack}-{logical id}`, within the service's length and character rules."""
        name = f"{self.stack_name}-{logical_id}"
        suffix = ".fifo" if rtype == "AWS::SQS::Queue" and _truthy(props.get("FifoQueue")) else ""
        if rtype == "AWS::S3::Bucket":
            name = re.sub(r"[^a-z0-9-]", "-", name.lower())
        limit = _NAME_LIMIT.get(rtype, 255) - len(suffix)
        if len(name) > limit:
            tail = hashlib.sha256(name.encode()).hexdigest()[:8]
            name = name[: limit - 9].rstrip("-") + "-" + tail
        return name + suffix

    def arn(self, logical_id: str) -> str:
        if logical_id in self._arns:
            return self._arns[logical_id]
        rtype = self.resource_type(logical_id)
        props = self.resources[logical_id].get("Properties", {})
        if rtype in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
            function = self._function_arn(self.resolve(props["FunctionName"]))
            qualifier = (
                self.physical_id(logical_id)
                if rtype == "AWS::Lambda::Alias"
                else self.attribute(logical_id, "Version")
            )
            return f"{function}:{qualifier}"
        pattern = _ARN_TEMPLATES.get(rtype)
        if pattern is None:
            raise TemplateError(f"{logical_id}: no ARN for resource type {rtype}")
        return pattern.format(
            partition="aws",
            region=self.region,
            account=self.account_id,
            id=self.physical_id(logical_id),
        )

    def _function_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name_or_arn}"

    def ref(self, logical_id: str) -> Any:
        if logical_id in self._refs:
            return self._refs[logical_id]
        if logical_id in self.pseudo:
            return self.pseudo[logical_id]
        if logical_id == "AWS::NoValue":
            return _NO_VALUE
        parameters = self.template.get("Parameters", {})
        if logical_id in parameters:
            if "Default" not in parameters[logical_id]:
                raise TemplateError(f"parameter {logical_id} has no default")
            return parameters[logical_id]["Default"]
        rtype = self.resource_type(logical_id)
        if rtype in _REF_IS_ARN:
            return self.arn(logical_id)
        if rtype == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/" + self.physical_id(
                logical_id
            )
        return self.physical_id(logical_id)

    def attribute(self, logical_id: str, name: str) -> Any:
        if name in self._attrs.get(logical_id, {}):
            return self._attrs[logical_id][name]
        rtype = self.resource_type(logical_id)
        physical = self.physical_id(logical_id)
        derived: dict[str, Any] = {
            "Name": physical,
            "QueueName": physical,
            "TopicName": physical,
            "TopicArn": lambda: self.arn(logical_id),
            "QueueUrl": lambda: self.ref(logical_id),
            "KeyId": physical,
            "ApiId": physical,
            "DomainName": f"{physical}.s3.amazonaws.com",
            "RegionalDomainName": f"{physical}.s3.{self.region}.amazonaws.com",
            "RoleId": "AROA" + hashlib.sha256(physical.encode()).hexdigest()[:17].upper(),
            "StreamArn": lambda: f"{self.arn(logical_id)}/stream/local",
            "Version": "1",
            "ApiEndpoint": f"https://{physical}.execute-api.{self.region}.amazonaws.com",
        }
        if name == "Arn":
            return self.arn(logical_id)
        if name in derived:
            value = derived[name]
            return value() if callable(value) else value
        raise TemplateError(f"{logical_id} ({rtype}): attribute {name} is not known locally")

    def set(
        self,
        logical_id: str,
        *,
        physical_id: str | None = None,
        ref: Any = None,
        arn: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """Record what a created resource really is (a queue URL, a KMS key id, …)."""
        if physical_id is not None:
            self._names[logical_id] = physical_id
        if ref is not None:
            self._refs[logical_id] = ref
        if arn is not None:
            self._arns[logical_id] = arn
        if attributes:
            self._attrs.setdefault(logical_id, {}).update(attributes)

    # -- intrinsics -------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated (AWS::NoValue entries removed)."""
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic {key} is not supported locally")
        resolved = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _get_att(self, arg: Any) -> Any:
        logical_id, name = arg.split(".", 1) if isinstance(arg, str) else arg
        return self.attribute(logical_id, self._resolve(name))

    def _join(self, arg: list[Any]) -> str:
        delimiter, items = arg
        values = self._resolve(items)
        return str(delimiter).join(str(v) for v in values)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        variables = {k: self._resolve(v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.resources:
                return str(self._get_att(expr))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _select(self, arg: list[Any]) -> Any:
        index, items = self._resolve(arg[0]), self._resolve(arg[1])
        return items[int(index)]

    def _split(self, arg: list[Any]) -> list[str]:
        delimiter, text = arg
        return str(self._resolve(text)).split(delimiter)

    def _if(self, arg: list[Any]) -> Any:
        condition, when_true, when_false = arg
        return self._resolve(when_true if self.condition(condition) else when_false)

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"no condition {name!r} in the template")
        return bool(self._resolve(conditions[name]))

    def _equals(self, arg: list[Any]) -> bool:
        left, right = (self._resolve(v) for v in arg)
        return left == right

    def _find_in_map(self, arg: list[Any]) -> Any:
        name, first, second = (self._resolve(v) for v in arg)
        return self.template["Mappings"][name][first][second]

    def dependencies(self, logical_id: str) -> set[str]:
        """Resources this one refers to (Ref, GetAtt, Sub) or explicitly depends on."""
        resource = self.resources[logical_id]
        found = set(_references(resource.get("Properties", {}), set(self.resources)))
        depends = resource.get("DependsOn", [])
        found.update([depends] if isinstance(depends, str) else depends)
        found.discard(logical_id)
        return found & set(self.resources)


_INTRINSICS: dict[str, Any] = {
    "Ref": lambda r, a: r.ref(a),
    "Fn::GetAtt": Resolver._get_att,
    "Fn::Join": Resolver._join,
    "Fn::Sub": Resolver._sub,
    "Fn::Select": Resolver._select,
    "Fn::Split": Resolver._split,
    "Fn::If": Resolver._if,
    "Fn::Equals": Resolver._equals,
    "Fn::Not": lambda r, a: not r._resolve(a[0]),
    "Fn::And": lambda r, a: all(r._resolve(v) for v in a),
    "Fn::Or": lambda r, a: any(r._resolve(v) for v in a),
    "Condition": lambda r, a: r.condition(a),
    "Fn::FindInMap": Resolver._find_in_map,
    "Fn::GetAZs": lambda r, a: [f"{r.region}{z}" for z in "abc"],
    "Fn::Base64": lambda r, a: __import__("base64").b64encode(str(r._resolve(a)).encode()).decode(),
}


def _references(value: Any, logical_ids: set[str]) -> Iterable[str]:
    if isinstance(value, list):
        for v in value:
            yield from _references(v, logical_ids)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                yield arg
            elif key == "Fn::GetAtt":
                yield arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                for expr in re.findall(r"\$\{([^}!][^}]*)\}", text):
                    if expr.split(".", 1)[0] in logical_ids:
                        yield expr.split(".", 1)[0]
                if not isinstance(arg, str):
                    yield from _references(arg[1], logical_ids)
            else:
                yield from _references(arg, logical_ids)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _uuid_for(text: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


if __name__ == "__main__":  # the child process of _synth
    _synth_in_this_process(sys.argv[1])
