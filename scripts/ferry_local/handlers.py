"""Load a real Lambda handler from `functions/` into this process (tests, demo, benchmarks).

The local platform runs each function in a process of its own instead (`lambda_runtime`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_handler(function: str) -> ModuleType:
    """Import `functions/{function}/handler.py` as `functions.{function}.handler`."""
    return importlib.import_module(f"functions.{function}.handler")
