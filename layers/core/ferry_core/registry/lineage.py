"""Lineage facts captured where a model is fitted: code, dependencies, interpreter, who, when."""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from ferry_core.card import Lineage
from ferry_core.clock import now_iso

TRACKED_LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide what a fitted model computes."""
    libs = {}
    for lib in TRACKED_LIBRARIES:
        try:
            libs[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return libs


def capture(
    repo: Path,
    entry_point: str,
    lock_file: Path | None = None,
    training_data_uri: str | None = None,
    training_data_sha256: str | None = None,
    training_data_version: str | None = None,
    actor: str | None = None,
) -> Lineage:
    """Lineage of a model trained from the code at `repo` (git commit and whether it was dirty)."""
    commit = _git(["rev-parse", "HEAD"], repo)
    status = _git(["status", "--porcelain", "--untracked-files=no"], repo)
    libs = library_versions()
    lock_hash = None
    if lock_file is not None and lock_file.is_file():
        lock_hash = hashlib.sha256(lock_file.read_bytes()).hexdigest()
    who = actor or getpass.getuser()
    now = now_iso()
    return Lineage(
        git_commit=commit or None,
        git_dirty=None if status is None else bool(status),
        training_data_uri=training_data_uri,
        training_data_version=training_data_version,
        training_data_sha256=training_data_sha256,
        entry_point=entry_point,
        dependency_lock_sha256=lock_hash,
        python_version=platform.python_version(),
        libraries=libs,
        trained_at=now,
        trained_by=who,
        registered_at=now,
        registered_by=who,
    )
