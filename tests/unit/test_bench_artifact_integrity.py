"""Reliability property 5: artifacts are what the registry says, and the check can fail.

The harness is the real scoring handler and governance under moto; the regressions below are
simulated by replacing one real function (the store's fetch, the ONNX guard) for one test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ferry_bench.artifact_integrity import (
    Corruptions,
    Malicious,
    check,
    corruption_trials,
    harness,
    judge,
    malicious_loads,
)
from ferry_bench.malicious_onnx import Inotify, OpenAudit, corpus
from ferry_bench.properties import Mode, PropertyResult


def test_fast_mode_refuses_every_corruption_and_every_malicious_file(tmp_path: Path) -> None:
    """
    Given credit-risk v1 in production and v2 registered, under moto
    When v2's file is corrupted 100 times (pinned S3 version, cached file) and 136 malicious
        ONNX files (17 placements x 8 ways out) are served from bytes and from the model folder
    Then every corrupted load and promotion is refused while v1 keeps serving the same scores,
        a corrupted cache heals, the restored v2 loads, the guard refuses all 272 malicious
        loads, and neither the kernel nor Python saw a file outside the folder opened
    """
    result = check(Mode(long=False))
    assert result.violations == []
    f = result.figures
    assert f["corruptions tried"] == f["corruptions refused (503)"] == 100  # the count
    assert f["refused by card sha256"] + f["refused by S3 checksum"] == 100
    assert f["refused by card sha256"] > 0 and f["refused by S3 checksum"] > 0
    assert f["corrupted promotions refused"] == 100
    assert f["previous version served"] == "110/110"
    assert f["cache-only corruptions healed"] == "10/10"
    assert f["restored v2 serves"] is True
    files = len(corpus(tmp_path))  # every placement × every way out of the folder
    assert f["malicious files"] == files >= 136
    assert f["malicious loads refused"] == f"{2 * files}/{2 * files}"  # from bytes, from a file
    assert f["refused by Ferry's guard"] == 2 * files
    assert f["outside reads (kernel)"] == f["outside reads (Python)"] == 0
    assert f["detector controls seen"] == "2/2"


def test_a_store_that_skips_the_sha256_check_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regression: the store returns S3's bytes without proving them."""
    from ferry_core.store import ModelStore

    monkeypatch.setattr(ModelStore, "fetch", lambda self, artifact: self._download(artifact))
    with harness() as h:
        corruptions = corruption_trials(h, trials=9, cache_only=0)
    assert corruptions.refused_by["card sha256"] == 0
    result = PropertyResult(5, "t", "fast")
    judge(corruptions, Malicious(loads=1, refused=1, refused_by_guard=1, controls=1,
                                 controls_seen=1), result)  # fmt: skip
    text = "\n".join(result.violations)
    assert "could be promoted" in text
    assert "were not refused" in text or "refused for another reason" in text


def test_a_guard_that_lets_external_data_through_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without Ferry's guard, onnxruntime is the only defence: the property wants the guard."""
    import ferry_core.serving.inference

    monkeypatch.setattr(ferry_core.serving.inference, "ensure_self_contained", lambda data: None)
    with harness() as h:
        malicious = malicious_loads(h, tmp_path)
    assert malicious.refused_by_guard == 0 and malicious.loads == 2 * malicious.files > 0
    result = PropertyResult(5, "t", "fast")
    judge(Corruptions(restored_serves=True), malicious, result)
    assert any("not refused by the guard" in v for v in result.violations)


def test_the_kernel_witness_sees_a_read_by_another_process(tmp_path: Path) -> None:
    """inotify sees reads Python's audit hook cannot (C code, other processes)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    secret.write_bytes(b"x" * 64)
    kernel = Inotify()
    audit = OpenAudit(outside)
    try:
        kernel.watch(outside)
        audit.recording = True
        subprocess.run(["cat", str(secret)], check=True, capture_output=True)
        audit.recording = False
        assert any(p.endswith("secret.bin") for p in kernel.events())
        assert audit.paths == []
        audit.recording = True
        secret.read_bytes()
        audit.recording = False
        assert audit.paths and set(audit.paths) == {str(secret.resolve())}
    finally:
        audit.close()
        kernel.close()


def test_judge_reports_each_broken_figure() -> None:
    c = Corruptions(tried=10, refused=9, promotions_refused=8, production_served=9,
                    production_checks=10, cache_only_tried=2, cache_only_healed=1)  # fmt: skip
    m = Malicious(files=2, loads=4, refused=4, refused_by_guard=4, outside_opens_kernel=1,
                  controls=2, controls_seen=1)  # fmt: skip
    result = PropertyResult(5, "t", "fast")
    judge(c, m, result)
    text = "\n".join(result.violations)
    for expected in (
        "1 of 10 corrupted loads were not refused",
        "2 corrupted versions could be promoted",
        "production did not serve v1's scores 1 time(s)",
        "1 corrupted cache files not healed",
        "v2 did not load once its bytes were restored",
        "files outside the model folder were opened: kernel 1",
        "a detector control failed",
    ):
        assert expected in text
