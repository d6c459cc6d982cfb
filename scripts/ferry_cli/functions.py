"""Load the real Lambda handlers from `functions/` in this process, as the runtime would."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_handler(function: str) -> ModuleType:
    """Import `functions/{function}/handler.py` as `functions.{function}.handler`."""
    return importlib.import_module(f"functions.{function}.handler")
