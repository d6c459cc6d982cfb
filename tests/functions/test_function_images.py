"""Every function image, built without Docker from its own Dockerfile, answers a real event.

There is no Docker engine in CI, so the check reads each `functions/*/Dockerfile` (FROM, COPY,
RUN, ENV, CMD; anything else fails the check) and lays out the same tree: the lock installed
with wheels only for the base image's platform (Amazon Linux 2023: manylinux_2_34, Python 3.12)
and the architecture `function_architectures` in infra/config.py gives the function (x86_64 or
arm64), the core installed from a copy as `pip install` does, the handler files in the task
root, bytecode compiled. Then `python3.12 -I -S` with only that tree on `sys.path` imports the
module CMD names and answers one event against a moto server in its own process. A tree of
another architecture than this machine's cannot run here: it is installed and its native code
checked, and the answering test says it skipped the run. Every image's tree is also installed
for both architectures, with each one's installed size printed (`-s`). Trees are cached by
lock hash under `.cache/images/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from ferry_local.events import http_api_event, sqs_event
from ferry_local.moto_stack import FAKE_CREDENTIALS, REGION, StackResources, create_resources
from infra.config import ENVIRONMENTS

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "images"
# Wheel platform by Lambda architecture: AL2023's glibc 2.34.
PLATFORMS = {"x86_64": "x86_64-manylinux_2_34", "arm64": "aarch64-manylinux_2_34"}
# ELF e_machine of the native code each architecture loads.
ELF_MACHINES = {"x86_64": 62, "arm64": 183}
HOST = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower()
)
TASK_ROOT = "${LAMBDA_TASK_ROOT}"
UV = Path(sys.executable).with_name("uv")
MODEL = "credit-risk"
BATCH_REJECTED = 8  # of the 50 rows batch_case uploads
# Never in the scoring image: training stack, CDK, test tooling.
TRAINING_ONLY = ("sklearn", "skl2onnx", "onnx", "pandas", "pyarrow", "aws_cdk", "moto", "jsii")


@dataclass
class Image:
    """What a Dockerfile puts in its image, in the terms the check can reproduce."""

    name: str
    python: str
    locks: list[Path] = field(default_factory=list)
    projects: list[Path] = field(default_factory=list)
    task_files: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cmd: str = ""


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = re.sub(
        r"\\\n\s*",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    for line in logical.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            yield word.upper(), rest.strip()


def _pip_install(args: list[str], staged: dict[str, Path], image: Image) -> None:
    """A `pip install` line: `-r LOCK` adds a lock, a bare path a project (`--no-deps`)."""
    before = len(image.locks) + len(image.projects)
    it = iter(args)
    for arg in it:
        if arg == "-r":
            assert "--only-binary=:all:" in args, f"{image.name}: a lock installs wheels only"
            image.locks.append(staged[next(it)])
        elif not arg.startswith("-"):
            assert "--no-deps" in args, f"{image.name}: {arg} would pull unpinned dependencies"
            image.projects.append(staged[arg])
    assert len(image.locks) + len(image.projects) > before, f"{image.name}: pip install of nothing"


def parse_dockerfile(path: Path) -> Image:
    """The image a Dockerfile describes; an instruction the check cannot reproduce fails it."""
    image = Image(name=path.parent.name, python="")
    staged: dict[str, Path] = {}  # a path under /tmp in the build → its source in the repo
    for word, args in _instructions(path.read_text()):
        if word == "FROM":
            m = re.fullmatch(r"public\.ecr\.aws/lambda/python:(3\.\d+)@sha256:[0-9a-f]{64}", args)
            assert m, f"{path}: FROM must be the Lambda Python base pinned by digest: {args}"
            image.python = m.group(1)
        elif word == "COPY":
            *sources, dest = shlex.split(args)
            if dest.startswith("/tmp/"):
                assert len(sources) == 1, f"{path}: COPY to {dest}"
                staged[dest] = ROOT / sources[0]
            elif dest.endswith("/"):
                assert dest == TASK_ROOT + "/", f"{path}: COPY to {dest}"
                image.task_files.update({Path(s).name: ROOT / s for s in sources})
            else:
                assert dest.startswith(TASK_ROOT + "/") and len(sources) == 1, f"{path}: {args}"
                image.task_files[dest.removeprefix(TASK_ROOT + "/")] = ROOT / sources[0]
        elif word == "RUN":
            for command in args.split("&&"):
                argv = shlex.split(command)
                if argv[:2] == ["pip", "install"]:
                    _pip_install(argv[2:], staged, image)
                else:
                    assert argv[0] == "rm", f"{path}: RUN {command!r} is not reproduced"
        elif word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                image.env[key] = value
        elif word == "CMD":
            (image.cmd,) = json.loads(args)
        else:
            raise AssertionError(f"{path}: {word} is not reproduced by the image check")
    assert image.python and image.cmd and image.locks, f"{path}: FROM, CMD and a lock"
    return image


def _python(version: str) -> str:
    """The interpreter the tree runs on: the venv's own base, which must be the image's."""
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" == version, (
        f"the dev venv runs Python {sys.version.split()[0]}, the images {version}: "
        "run scripts/bootstrap"
    )
    return sys._base_executable


def _uv(*args: str | Path) -> None:
    out = subprocess.run([UV, *map(str, args)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]


def _compile(python: str, tree: Path) -> None:
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(tree)], check=True)


def _cached(name: str, parts: list[bytes], fill: Callable[[Path], None]) -> Path:
    """A tree under .cache/images/ keyed by its inputs; filled once, reused while they hold."""
    key = hashlib.sha256(b"\0".join([*parts, UV.read_bytes()]))
    tree = CACHE / f"{name}-{key.hexdigest()[:16]}"
    if not (tree / ".complete").is_file():
        for stale in CACHE.glob(f"{name}-*"):  # an older lock's tree: never used again
            shutil.rmtree(stale)
        fill(tree)
        (tree / ".complete").write_text(name)
    return tree


def installed_lock(lock: Path, python: str, version: str, arch: str) -> Path:
    """The lock's wheels for the image's platform and `arch`, bytecode compiled as pip does in
    the image (bytecode is the same on every architecture)."""

    def fill(tree: Path) -> None:
        _uv("pip", "install", "--quiet", "--target", tree, "--python-platform", PLATFORMS[arch],
            "--python-version", version, "--only-binary", ":all:", "-r", lock)  # fmt: skip
        _compile(python, tree)

    parts = [lock.read_bytes(), version.encode(), PLATFORMS[arch].encode()]
    return _cached(f"{lock.stem}-{arch}", parts, fill)


def installed_project(project: Path, python: str, version: str, arch: str) -> Path:
    """`pip install --no-deps` of a copied project folder (the core), cached by its files."""
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")  # local build leftovers
    files = sorted(
        f
        for f in project.rglob("*")
        if f.is_file() and not any(skip("", list(f.relative_to(project).parts)))
    )

    def fill(tree: Path) -> None:
        with tempfile.TemporaryDirectory() as build:
            copy = Path(build) / project.name  # built from a copy, as COPY + RUN do
            shutil.copytree(project, copy, ignore=skip)
            _uv("pip", "install", "--quiet", "--target", tree, "--no-deps", "--python-version",
                version, "--python-platform", PLATFORMS[arch], copy)  # fmt: skip
        _compile(python, tree)

    parts = [version.encode(), PLATFORMS[arch].encode()]
    for f in files:
        parts += [str(f.relative_to(project)).encode(), f.read_bytes()]
    return _cached(f"{project.name}-{arch}", parts, fill)


def build_tree(image: Image, work: Path, arch: str) -> list[Path]:
    """[task root, *site dirs]: the image's importable files for `arch`, laid out as the
    Dockerfile does."""
    python = _python(image.python)
    sites = [installed_lock(lock, python, image.python, arch) for lock in image.locks]
    sites += [installed_project(p, python, image.python, arch) for p in image.projects]
    task = work / "task"
    task.mkdir()
    for name, source in image.task_files.items():
        shutil.copy2(source, task / name)
    return [task, *sites]


# Runs inside the image tree: `-I -S` leaves only the standard library on sys.path.
CHILD = r"""
import importlib, importlib.util, json, sys, sysconfig
paths, target, event_file, out_file, absent = json.loads(sys.argv[1])
sys.path[:0] = paths[:1]
sys.path.extend(paths[1:])
for name in absent:
    assert importlib.util.find_spec(name) is None, name + " is in the image"
module, _, attr = target.rpartition(".")
handler = getattr(importlib.import_module(module), attr)

class Context:
    function_name = "ferry-image-check"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ferry-image-check"
    memory_limit_in_mb = 1024
    aws_request_id = "image-check"
    log_group_name = "/aws/lambda/ferry-image-check"
    log_stream_name = "image-check"
    def get_remaining_time_in_millis(self):
        return 900_000

with open(event_file) as f:
    result = handler(json.load(f), Context())
roots = (*paths, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
outside = sorted({f for m in list(sys.modules.values())
                  if (f := getattr(m, "__file__", None)) and not f.startswith(roots)})
with open(out_file, "w") as f:
    json.dump({"result": result, "outside": outside, "version": sys.version}, f, default=str)
"""


def answer(image: Image, paths: list[Path], env: dict[str, str], event: Any) -> Any:
    """The handler's answer to one event, from an interpreter that sees only the image tree."""
    work = paths[0].parent
    (work / "event.json").write_text(json.dumps(event))
    task = str(paths[0])
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "LAMBDA_TASK_ROOT": task,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Ferry",  # every function gets it from the stack
        **{k: v.replace(TASK_ROOT, task) for k, v in image.env.items()},
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        **env,
    }
    absent = TRAINING_ONLY if image.name == "scoring" else ()
    args = [
        [str(p) for p in paths],
        image.cmd,
        str(work / "event.json"),
        str(work / "out.json"),
        list(absent),
    ]
    out = subprocess.run(
        [_python(image.python), "-I", "-S", "-B", "-c", CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=work,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads((work / "out.json").read_text())
    assert got["version"].startswith(image.python + "."), got["version"]
    assert got["outside"] == [], f"imported from outside the image: {got['outside'][:5]}"
    return got["result"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(built: Any) -> Iterator[StackResources]:
    """A moto server in its own process with Ferry's resources and credit-risk v1 in production."""
    from ferry_core.card import Lineage
    from ferry_core.onboarding.builder import generate_credit_data
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "moto server"
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {
                **FAKE_CREDENTIALS,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            }.items():
                mp.setenv(key, value)
            res = create_resources()
            s3, ddb = (
                boto3.client("s3", region_name=REGION),
                boto3.client("dynamodb", region_name=REGION),
            )
            writer = RegistryWriter(ddb, res.registry_table)
            card = register_built(built, MODEL, s3, res.model_bucket, writer, Lineage())
            writer.set_stage(MODEL, "production", card.version, None, actor="image-check")
            frame = generate_credit_data(1500, seed=21)
            s3.put_object(
                Bucket=res.data_bucket,
                Key=f"training/{MODEL}/data.parquet",
                Body=frame.to_parquet(index=False),
            )
            yield res
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def scoring_case(res: StackResources, work: Path) -> tuple[dict[str, str], Any]:
    row = {
        "age": 41,
        "annual_income": 52000.0,
        "loan_amount": 12000.0,
        "loan_term_months": 36,
        "debt_to_income": 0.31,
        "credit_history_years": 9.5,
        "open_accounts": 4,
        "purpose": "car",
        "employment": "salaried",
        "prior_default": False,
    }
    body = json.dumps({"instances": [row]})
    path = f"/v1/models/{MODEL}/predict"
    event = http_api_event(
        "POST",
        path,
        body,
        route_key="POST /v1/models/{model}/predict",
        path_parameters={"model": MODEL},
    )
    return res.function_environment("scoring", work), event


def batch_case(res: StackResources, work: Path) -> tuple[dict[str, str], Any]:
    from ferry_core.batch.sample_files import applications, encode

    key = f"batch/incoming/{MODEL}/image-check.csv"
    rows = applications(50, "csv")  # a few malformed on purpose: rejected with their reasons
    assert sum(1 for r in rows if r.expect) == BATCH_REJECTED
    _s3().put_object(Bucket=res.data_bucket, Key=key, Body=encode(rows, "csv"))
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName=res.batch_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return res.function_environment("batch", work), sqs_event(messages["Messages"], arn["QueueArn"])


def drift_case(res: StackResources, work: Path) -> tuple[dict[str, str], Any]:
    return res.function_environment("drift", work), {"models": [MODEL]}


def governance_case(res: StackResources, work: Path) -> tuple[dict[str, str], Any]:
    env = res.function_environment("governance", work)
    event = http_api_event(
        "POST",
        "/v1/governance/rollback/production",
        json.dumps({"model": MODEL, "reason": "check"}),
        route_key="POST /v1/governance/rollback/{stage}",
        path_parameters={"stage": "production"},
    )
    caller = "arn:aws:sts::123456789012:assumed-role/Ferry-local-Admin/image-check"
    event["requestContext"]["authorizer"] = {"iam": {"userArn": caller}}
    return env, event


def training_case(res: StackResources, work: Path) -> tuple[dict[str, str], Any]:
    env = res.function_environment("training", work)
    return env, {"model": MODEL, "run_id": "image-train", "params": {"n_estimators": 10}}


def validation_case(res: StackResources, work: Path) -> tuple[dict[str, str], Any]:
    from ferry_core.retrain.training import TrainingRequest, TrainingSettings, run_request

    settings = TrainingSettings(
        MODEL_BUCKET=res.model_bucket,
        DATA_BUCKET=res.data_bucket,
        REGISTRY_TABLE=res.registry_table,
    )
    request = TrainingRequest(model=MODEL, run_id="image-gate", params={"n_estimators": 10})
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    run_request(_s3(), dynamodb, settings, request)  # a candidate to gate, from the dev venv
    # The template's variables; fewer latency runs than the default keep the check short.
    env = {**res.function_environment("validation", work), "GATE_LATENCY_RUNS": "40"}
    return env, {"model": MODEL, "run_id": "image-gate"}


CASES = {
    "scoring": scoring_case,
    "batch": batch_case,
    "drift": drift_case,
    "governance": governance_case,
    "training": training_case,
    "validation": validation_case,
}


def _size(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file())


def _native_machines(paths: list[Path]) -> set[int]:
    """The ELF e_machine of every shared library in the tree."""
    machines = set()
    for f in (f for p in paths for f in p.rglob("*.so*") if f.is_file()):
        with f.open("rb") as elf:
            head = elf.read(20)
        if head[:4] == b"\x7fELF":
            machines.add(int.from_bytes(head[18:20], "little"))
    return machines


# (function, architecture) as infra/config.py gives them, in dev and prod.
CONFIGURED = sorted(
    {
        (name, getattr(config.function_architectures, name))
        for config in ENVIRONMENTS.values()
        for name in CASES
    }
)


def test_every_function_has_a_dockerfile_and_a_case() -> None:
    assert {p.parent.name for p in ROOT.glob("functions/*/Dockerfile")} == set(CASES)


@pytest.mark.parametrize("arch", sorted(PLATFORMS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_image_tree_installs_for_each_architecture(name: str, arch: str, tmp_path: Path) -> None:
    """
    Given functions/{name}/Dockerfile
    When its tree is laid out for x86_64 and for arm64 (wheels only, manylinux_2_34, Python 3.12)
    Then both install, their native code is all of that architecture, and each prints its
         installed size (-s): the figures behind a choice in function_architectures
    """
    image = parse_dockerfile(ROOT / "functions" / name / "Dockerfile")
    paths = build_tree(image, tmp_path, arch)
    assert _native_machines(paths) == {ELF_MACHINES[arch]}
    runs = "runs here" if arch == HOST else f"installed only: this machine is {HOST}"
    print(f"\n{name:<11} {arch:<7} {_size(paths) / 2**20:7.1f} MiB installed  ({runs})")


@pytest.mark.parametrize(("name", "arch"), CONFIGURED)
def test_image_answers_a_real_event(
    name: str, arch: str, server: StackResources, tmp_path: Path
) -> None:
    """
    Given the tree functions/{name}/Dockerfile builds for the architecture infra/config.py
        gives the function: its lock as manylinux_2_34 wheels for the base image's Python, the
        core, the handler files
    When an isolated Python 3.12 that sees nothing else imports CMD's handler and invokes it
        with one event against AWS (a moto server)
    Then it answers as the function does in Lambda, with no module from outside the image
    """
    image = parse_dockerfile(ROOT / "functions" / name / "Dockerfile")
    started = time.monotonic()
    paths = build_tree(image, tmp_path, arch)
    built_in = time.monotonic() - started
    if arch != HOST:
        assert _native_machines(paths) == {ELF_MACHINES[arch]}
        pytest.skip(
            f"{name} is configured {arch}: its tree installs ({_size(paths) / 2**20:.1f} MiB, "
            f"native code checked), but this {HOST} machine cannot run it"
        )
    env, event = CASES[name](server, tmp_path)
    result = answer(image, paths, env, event)
    print(
        f"\n{name:<11} {arch:<7} {_size(paths) / 2**20:7.1f} MiB installed  "
        f"tree {built_in:5.1f} s  locks {', '.join(p.name for p in image.locks)}"
    )
    CHECKS[name](result, server)


def _object(bucket: str, key: str) -> bytes:
    return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()


def scoring_check(result: Any, res: StackResources) -> None:
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert (body["model"], body["version"], len(body["predictions"])) == (MODEL, 1, 1)
    assert 0 <= body["predictions"][0]["score"] <= 1


def batch_check(result: Any, res: StackResources) -> None:
    assert result == {"batchItemFailures": []}
    manifest = json.loads(_object(res.data_bucket, f"batch/manifests/{MODEL}/image-check.json"))
    assert manifest["status"] == "succeeded", manifest
    assert manifest["rows_in"] == 50 == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == BATCH_REJECTED


def drift_check(result: Any, res: StackResources) -> None:
    (report,) = result["reports"]
    assert (report["model"], report["version"]) == (MODEL, 1)
    # At most the batch image's captured rows so far: fewer than the stack's minimum, no verdict.
    minimum = int(res.function_environment("drift", "/tmp")["DRIFT_MIN_SAMPLES"])
    assert 0 <= report["rows"] < minimum
    assert report["verdict"] == "insufficient_data"
    assert json.loads(_object(res.data_bucket, report["report"]))


def governance_check(result: Any, res: StackResources) -> None:
    assert result["statusCode"] == 409, result
    assert json.loads(result["body"])["error"] == "promotion_refused", result


def training_check(result: Any, res: StackResources) -> None:
    assert result["candidate_uri"] == f"s3://{res.model_bucket}/candidates/{MODEL}/image-train/"
    assert result["rows"] == 1500 and result["parity_max_abs_diff"] < 1e-5
    assert 0.5 < result["metrics"]["auc"] <= 1


def validation_check(result: Any, res: StackResources) -> None:
    assert result["champion_version"] == 1 and isinstance(result["passed"], bool)
    checks = {c["name"]: c["passed"] for c in result["report"]["checks"]}
    assert checks["schema"] and checks["parity"], checks
    assert json.loads(_object(res.model_bucket, result["report_uri"].split("/", 3)[3]))


CHECKS = {
    "scoring": scoring_check,
    "batch": batch_check,
    "drift": drift_check,
    "governance": governance_check,
    "training": training_check,
    "validation": validation_check,
}


def _pins(lock: Path) -> set[str]:
    return {
        m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock.read_text(), re.M)
    }


def test_runtime_lock_excludes_training_and_cdk_packages() -> None:
    pins = _pins(ROOT / "requirements" / "runtime.txt")
    assert {"onnxruntime", "aws-lambda-powertools", "pydantic", "numpy", "boto3"} <= pins
    training = {"scikit-learn", "skl2onnx", "onnx", "pandas", "pyarrow", "aws-cdk-lib", "moto"}
    assert not pins & training


def test_every_pin_is_exact() -> None:
    for lock in (ROOT / "requirements").glob("*.txt"):
        for line in lock.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==[^=<>~*]+( ;.*)?$", line), (lock, line)
