"""Run `ferry bench …` in a fresh process, as the smoke runs do (a bench sets process-wide AWS
variables, so none runs inside the test process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`ferry bench <args>` from the repository root, wide enough for every table column."""
    return subprocess.run(
        [sys.executable, "-m", "ferry_cli.main", "bench", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
