"""`ferry bench reliability` through the command line: one fast property, its table and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_reliability_runs_a_property_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    args = ["--fast", "--only", "registry_transitions", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "ferry_cli.main", "bench", "reliability", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    (prop,) = doc["properties"]
    assert doc["mode"] == "fast" and prop["passed"] is True and prop["figures"]
    assert prop["title"] in done.stdout
