"""`ferry bench reliability` through the command line: one fast property, its table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.bench_cli import run_bench


def test_bench_reliability_runs_a_property_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    args = ["--fast", "--only", "registry_transitions", "--json", str(out)]
    done = run_bench("reliability", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    (prop,) = doc["properties"]
    assert doc["mode"] == "fast" and prop["passed"] is True and prop["figures"]
    assert prop["title"] in done.stdout
