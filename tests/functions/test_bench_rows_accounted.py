"""Property 2: no row lost, none counted twice, through the queue and the handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferry_bench.defect_files import make_file
from ferry_bench.properties import Mode, PropertyResult
from ferry_bench.rows_accounted import RowsPlan, check, run_rows
from ferry_core.batch import formats


def test_every_row_lands_once_whatever_the_replays_and_poison() -> None:
    """
    Given files in three formats with every kind of malformed row, failing files, S3 events
        replayed 1-5 times, shuffled, mixed with poison, delivered in batches, the big files
        fanned out by the synthesized state machine (moto's interpreter), and replayed again
        after the idempotency records expired
    When the fast mode of property 2 runs
    Then no violation: every row once on its side, manifests and outputs agree, one run and one
        audit entry per file, poison dead-lettered or counted, no good message failed
    """
    result = check(Mode(long=False))
    assert result.violations == []
    f = result.figures
    assert f["rows in"] > 1000 and f["rows in"] == f["scored"] + f["rejected"]
    assert f["rejected"] > 50 and f["defect kinds"] >= 30
    assert (f["lost"], f["double-counted"], f["misrouted"], f["phantom rows"]) == (0, 0, 0, 0)
    assert f["deliveries"] > f["events in"] and f["duplicates suppressed"] > 0
    assert f["fan-out executions"] > 0 and f["late replays (after idempotency expiry)"] > 0
    # every part is one Map Run item, each run once (no fault, so no Retry)
    assert f["fan-out Map Run items (parts)"] == f["part invocations"] > f["fan-out executions"]
    assert f["files failing whole (with reason)"] == 8
    assert f["poison failed → DLQ"] == 1 and f["poison consumed (counted in BatchFailures)"] > 0
    assert f["good messages failed"] == 0 and f["audit verify"] == "ok"


def test_the_generated_files_hold_what_their_specs_say() -> None:
    """The ground truth is the bytes: one line per data row, the last one cut when truncated."""
    csv = make_file("csv", 120, 3, "t", "truncated")
    assert csv.body.count(b"\n") == csv.rows  # the header's newline + every row but the cut one
    assert not csv.body.endswith(b"\n")
    crlf = make_file("csv", 120, 3, "t", "crlf")
    assert crlf.body.count(b"\r\n") == crlf.rows + 1
    jsonl = make_file("jsonl", 120, 3, "t")
    assert jsonl.body.count(b"\n") == jsonl.rows and b"\xff" in jsonl.body
    assert sum(1 for s in jsonl.expect.values() if s == "rejected") >= 15


def _small(tmp_path: Path) -> PropertyResult:
    result = PropertyResult(2, "rows", "test")
    run_rows(RowsPlan(files_per_format=1, rows=(150, 260), late_share=0.0), result, tmp_path)
    return result


def _dropping(real: Any) -> Any:
    state = {"done": False}

    def write(self: Any, entries: list[dict[str, Any]]) -> None:
        if entries and not state["done"]:
            state["done"] = True
            entries = entries[1:]  # a sink that loses one rejected row
        real(self, entries)

    return write


def _doubling(real: Any) -> Any:
    state = {"done": False}

    def write(self: Any, entries: list[dict[str, Any]]) -> None:
        if entries and not state["done"]:
            state["done"] = True
            entries = entries + entries[:1]  # a sink that writes one rejected row twice
        real(self, entries)

    return write


@pytest.mark.parametrize(("sabotage", "word"), [(_dropping, "lost"), (_doubling, "twice")])
def test_a_sink_that_loses_or_repeats_a_row_is_caught(
    sabotage: Any, word: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken reject sink (one row dropped, or one written twice) breaks the property."""
    monkeypatch.setattr(formats.RejectWriter, "write", sabotage(formats.RejectWriter.write))
    result = _small(tmp_path)
    assert any(word in v for v in result.violations), result.violations
    assert result.figures["lost" if word == "lost" else "double-counted"] == 1
