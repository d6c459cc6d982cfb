"""The layering that keeps each part changeable alone, checked on every run.

import-linter (`lint-imports`, configured in pyproject.toml and run by scripts/test) checks the
installed packages: the core imports nothing above it, infra imports no runtime code, the CLI
reaches handlers only through the emulator. Handlers are not a package (each folder is a Lambda
task root), so their imports are read here from the source: a handler may import the core,
the standard library and its image's third-party packages, never infra or the tooling.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HANDLER_FILES = sorted((ROOT / "functions").glob("*/*.py"))
FORBIDDEN_IN_HANDLERS = {"infra", "app", "ferry_cli", "ferry_local", "ferry_bench", "aws_cdk"}


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every absolute import in `path`."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_function_folder_has_a_handler() -> None:
    # Given the functions/ tree, then each image folder holds Python the check below reads
    assert HANDLER_FILES
    assert {p.parent.name for p in HANDLER_FILES} == {
        p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith(".")
    }


@pytest.mark.parametrize("path", HANDLER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_handlers_import_neither_infra_nor_tooling(path: Path) -> None:
    # Given a handler's source, when its imports are read, then none reaches above the core
    assert not imported_roots(path) & FORBIDDEN_IN_HANDLERS


def test_the_reader_sees_a_forbidden_import(tmp_path: Path) -> None:
    # Given a handler-like file importing the CLI, then the check above would refuse it
    bad = tmp_path / "handler.py"
    bad.write_text("import json\nfrom ferry_cli.main import app\nfrom . import sibling\n")
    assert imported_roots(bad) & FORBIDDEN_IN_HANDLERS == {"ferry_cli"}
