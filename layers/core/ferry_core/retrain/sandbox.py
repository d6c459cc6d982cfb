"""Run an owner's trainer file in an isolated process, and prove what it leaves behind.

The training function (the parent) holds AWS credentials and the stack's variables; the
owner's file is code nobody on the platform reviewed. So the parent downloads everything the
run needs into a scratch folder first (the trainer file, the training data, the job), then
starts `python -I -m ferry_core.retrain.sandbox_child SCRATCH`:
- `-I`: no PYTHON* variables, no user site-packages, the scratch folder not on `sys.path`;
- the environment holds only what the interpreter needs (PATH, the library path, locale) and
  HOME/TMPDIR pointing into the scratch folder: no AWS credentials, none of the function's
  variables, so the file cannot reach AWS as the function;
- the scratch folder is the working directory, and a timeout inside the function's own stops
  it (its whole process group);
- while it runs, the parent is not dumpable (`prctl(PR_SET_DUMPABLE, 0)`), so a process of
  the same non-root user (Lambda's runtime user) cannot read the parent's
  `/proc/PID/environ` or memory, where the function's credentials are.
The child (`sandbox_child.py`) fits through the same harness as the built-in trainers
(`training.train_candidate`: split, fit, ONNX, parity, metrics, baselines) and writes
`model.onnx`, `reference.parquet` and `built.json` into the scratch folder. The parent trusts
none of it blindly: `built.json` must validate, the graph must load through the serving code,
and parity is measured again here, on the reference rows, before the bundle is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_core.card import Artifact, Baseline, Card, InputSchema, Output
from ferry_core.errors import FerryError, validation_message
from ferry_core.retrain.candidate import MAX_BUNDLE_FILE_BYTES
from ferry_core.retrain.trainer_api import TrainingFailed
from ferry_core.trainer_files import MODULE_FILE, TrainerFiles

logger = logging.getLogger(__name__)

# What the child keeps of the parent's environment: what the interpreter itself needs.
KEPT_VARIABLES = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TZ")
JOB_FILE, BUILT_FILE, ERROR_FILE, LOG_FILE = "job.json", "built.json", "error.txt", "trainer.log"
ONNX_FILE, REFERENCE_FILE = "model.onnx", "reference.parquet"
OWNER_MODULE = "ferry_owner_trainer"  # the name the owner's file is imported under
LOG_TAIL = 1500


class IsolatedJob(BaseModel):
    """What the child is asked to do (`job.json`)."""

    model_config = ConfigDict(extra="forbid")

    data_file: str = Field(pattern=r"^data\.(csv|parquet)$")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 7
    valid_share: float = Field(default=0.25, gt=0, lt=1)


class IsolatedOutput(BaseModel):
    """What the child reports beside the files (`built.json`)."""

    model_config = ConfigDict(extra="forbid")

    input_schema: InputSchema
    threshold: float = Field(ge=0, le=1)
    metrics: dict[str, Any]
    parity: dict[str, Any]
    baseline: dict[str, Baseline]


@dataclass
class IsolatedBuild:
    """A candidate built in the child and verified here: what `write_bundle` writes."""

    onnx_bytes: bytes
    reference_bytes: bytes
    schema: InputSchema
    threshold: float
    metrics: dict[str, Any]
    parity: dict[str, Any]
    baseline: dict[str, Any]

    @property
    def output(self) -> Output:
        return Output(threshold=self.threshold)


def child_environment(scratch: Path) -> dict[str, str]:
    """The child's whole environment: no credentials, no function variables."""
    kept = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ}
    return {**kept, "HOME": str(scratch), "TMPDIR": str(scratch)}


PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4


def _prctl(option: int, value: int = 0) -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0))
    except (OSError, AttributeError):  # not Linux: no /proc to protect
        return -1


@contextlib.contextmanager
def undumpable() -> Iterator[None]:
    """This process not dumpable while the block runs (its /proc files unreadable to other
    processes of its user), as it was afterwards."""
    before = _prctl(PR_GET_DUMPABLE)
    if before > 0:
        _prctl(PR_SET_DUMPABLE, 0)
    try:
        yield
    finally:
        if before > 0:
            _prctl(PR_SET_DUMPABLE, before)


def run_isolated(
    files: TrainerFiles,
    data: bytes,
    data_suffix: str,
    scratch: Path,
    *,
    params: dict[str, Any],
    timeout_seconds: float,
    parity_tolerance: float = 1e-5,
) -> IsolatedBuild:
    """Fit the owner's trainer on `data` in a child process; the verified result."""
    job = IsolatedJob(data_file=f"data{data_suffix}", params=params)
    (scratch / MODULE_FILE).write_bytes(files.module)
    (scratch / job.data_file).write_bytes(data)
    (scratch / JOB_FILE).write_text(job.model_dump_json())
    command = [sys.executable, "-I", "-m", "ferry_core.retrain.sandbox_child", str(scratch)]
    with (scratch / LOG_FILE).open("wb") as log, undumpable():
        child = subprocess.Popen(
            command,
            cwd=scratch,
            env=child_environment(scratch),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout stops all of it
        )
        try:
            status = child.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise TrainingFailed(
                f"the trainer did not finish within {timeout_seconds:.0f} s and was stopped"
            ) from None
    output = _tail(scratch / LOG_FILE)
    if output:
        logger.info("trainer output:\n%s", output)
    if status != 0:
        error = scratch / ERROR_FILE
        if error.is_file():
            raise TrainingFailed(error.read_text(errors="replace")[:2000])
        raise TrainingFailed(f"the trainer's process ended with status {status}: {output[-500:]}")
    return verify(scratch, parity_tolerance)


def _tail(path: Path) -> str:
    data = path.read_bytes() if path.is_file() else b""
    return data[-LOG_TAIL:].decode("utf-8", errors="replace").strip()


def _read(scratch: Path, name: str) -> bytes:
    path = scratch / name
    if not path.is_file() or path.is_symlink():
        raise TrainingFailed(f"the trainer's process left no {name}")
    if path.stat().st_size > MAX_BUNDLE_FILE_BYTES:
        raise TrainingFailed(f"the trainer's {name} is larger than a candidate file may be")
    return path.read_bytes()


def verify(scratch: Path, parity_tolerance: float) -> IsolatedBuild:
    """The child's files, each proven usable: the report validates, the graph loads through
    the serving code, and parity is measured here rather than taken from the child."""
    import pyarrow.parquet as pq

    from ferry_core.onboarding.builder import parity_summary
    from ferry_core.retrain.gate.reference import GateInputError, read_reference
    from ferry_core.serving.inference import OnnxModel

    try:
        out = IsolatedOutput.model_validate_json(_read(scratch, BUILT_FILE))
    except ValidationError as exc:
        problem = validation_message(exc)
        raise TrainingFailed(f"the trainer's {BUILT_FILE} is invalid: {problem}") from exc
    onnx_bytes = _read(scratch, ONNX_FILE)
    reference_bytes = _read(scratch, REFERENCE_FILE)
    probe = Card(
        name="isolated-probe",
        version=1,
        input_schema=out.input_schema,
        artifact=Artifact(uri="s3://probe/model.onnx", sha256="0" * 64, size=len(onnx_bytes)),
    )
    try:
        model = OnnxModel(probe, onnx_bytes)
        reference = read_reference(pq.read_table(io.BytesIO(reference_bytes)), out.input_schema)
        scores = model.score(model.encode_rows(reference.rows))
    except (FerryError, GateInputError, OSError, ValueError) as exc:
        raise TrainingFailed(f"the trainer's candidate cannot be served: {exc}") from exc
    if reference.scores is None or not np.isfinite(reference.scores).all():
        raise TrainingFailed("the trainer's reference rows carry no usable source scores")
    parity = parity_summary(scores, reference.scores, parity_tolerance)
    return IsolatedBuild(
        onnx_bytes=onnx_bytes,
        reference_bytes=reference_bytes,
        schema=out.input_schema,
        threshold=out.threshold,
        metrics=out.metrics,
        parity=parity,
        baseline=dict(out.baseline),
    )
