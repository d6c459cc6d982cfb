"""The reliability report marks every emulator-only figure, in its table and its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferry_bench.properties import EMULATOR_MARK, PropertyResult, print_report, write_json


def result() -> PropertyResult:
    r = PropertyResult(1, "bad input", "fast", figures={"5xx": 0, "over 6 MB → clean 413": "3/3"})
    r.emulator_only["over 6 MB → clean 413"] = "the local API builds this 413"
    return r


def test_the_table_flags_emulator_only_figures_and_says_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    print_report([result()])
    out = capsys.readouterr().out
    assert f"over 6 MB → clean 413: 3/3 {EMULATOR_MARK}" in out
    assert f"5xx: 0 {EMULATOR_MARK}" not in out
    assert "the local API builds this 413" in out


def test_the_json_carries_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json([result()], path)
    (prop,) = json.loads(path.read_text())["properties"]
    assert prop["emulator_only"] == {"over 6 MB → clean 413": "the local API builds this 413"}
