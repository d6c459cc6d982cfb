"""The child process of an isolated trainer run (`python -I -m ferry_core.retrain.sandbox_child
SCRATCH`, started by `sandbox.run_isolated`): import the owner's file from the scratch folder,
fit, convert and measure through the same harness as the built-in trainers, and leave
`model.onnx`, `reference.parquet` and `built.json` there, or `error.txt` saying why not. It has
no credentials and reads nothing but the scratch folder.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from ferry_core.errors import FerryError
from ferry_core.retrain.candidate import reference_parquet
from ferry_core.retrain.sandbox import (
    BUILT_FILE,
    ERROR_FILE,
    JOB_FILE,
    ONNX_FILE,
    OWNER_MODULE,
    REFERENCE_FILE,
    IsolatedJob,
    IsolatedOutput,
)
from ferry_core.retrain.trainer_api import TRAINER_ATTRIBUTE, TrainingFailed, instantiate
from ferry_core.retrain.training import TrainingData, parse_frame, train_candidate
from ferry_core.trainer_files import MODULE_FILE


def _import_owner(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(OWNER_MODULE, path)
    if spec is None or spec.loader is None:
        raise TrainingFailed(f"cannot load the trainer file {path.name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[OWNER_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the owner's import-time failure, with its cause
        raise TrainingFailed(
            f"the trainer file failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, TRAINER_ATTRIBUTE):
        raise TrainingFailed(f"the trainer file defines no {TRAINER_ATTRIBUTE!r}")
    return getattr(module, TRAINER_ATTRIBUTE)


def build_in_child(scratch: Path) -> None:
    """Fit, convert and measure through the harness; write the three files."""
    job = IsolatedJob.model_validate_json((scratch / JOB_FILE).read_text())
    entry = f"{MODULE_FILE}:{TRAINER_ATTRIBUTE}"
    trainer = instantiate(_import_owner(scratch / MODULE_FILE), entry)
    frame = parse_frame((scratch / job.data_file).read_bytes(), job.data_file)
    built = train_candidate(
        trainer, TrainingData(frame, None, None, None), job.params, job.seed, job.valid_share
    )
    (scratch / ONNX_FILE).write_bytes(built.onnx_bytes)
    (scratch / REFERENCE_FILE).write_bytes(reference_parquet(built.reference))
    report = IsolatedOutput(
        input_schema=built.schema,
        threshold=built.threshold,
        metrics=built.metrics,
        parity=built.parity,
        baseline=built.baseline,
    )
    (scratch / BUILT_FILE).write_text(report.model_dump_json())


def main(scratch: str) -> int:
    """The child's entry point: 0 with the files written, 1 with `error.txt` saying why."""
    folder = Path(scratch)
    try:
        build_in_child(folder)
    except FerryError as exc:
        (folder / ERROR_FILE).write_text(exc.message)
        return 1
    except Exception as exc:  # anything else the owner's code raised: its type and message
        traceback.print_exc()  # into the trainer's log, which the parent logs
        (folder / ERROR_FILE).write_text(f"trainer failed: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
