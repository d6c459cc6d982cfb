"""Registration from files as one use case: the request's rules and where lineage comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry_core.onboarding.intake import IntakeError
from ferry_core.onboarding.use_cases import RegistrationRequest, find_lock_file
from ferry_core.retrain.candidate import RUN_ID
from ferry_core.retrain.manual import manual_run_id, upload_candidate


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "give exactly one of --pipeline or --onnx"),
        ({"pipeline": "m.joblib", "onnx": "m.onnx"}, "give exactly one of --pipeline or --onnx"),
        ({"pipeline": "m.joblib", "train": "t.csv"}, "--pipeline needs --train and --valid data"),
        ({"onnx": "m.onnx"}, "--onnx needs --schema"),
        ({"pipeline": "m.joblib", "train": "t.csv", "valid": "v.csv"}, None),
        ({"onnx": "m.onnx", "schema": "s.json"}, None),
    ],
)
def test_a_request_names_what_it_lacks(fields: dict[str, str], problem: str | None) -> None:
    """
    Given a registration request with some of its files
    When it is checked
    Then it names the first missing or conflicting input, or nothing when it can be served
    """
    assert RegistrationRequest(name="m", **fields).problem() == problem


def test_an_unservable_request_is_refused_before_any_call() -> None:
    """
    Given a request with neither a pipeline nor an ONNX file
    When its candidate is uploaded
    Then IntakeError says why, and no client is touched (None would fail on first use)
    """
    with pytest.raises(IntakeError, match="exactly one of"):
        upload_candidate(RegistrationRequest(name="m"), None, "bucket", "me")


def test_a_manual_run_id_is_a_run_id_and_unique() -> None:
    """A bundle built on the user's machine lands under `candidates/{model}/manual-…/`."""
    first, second = manual_run_id(), manual_run_id()
    assert first.startswith("manual-") and RUN_ID.match(first) and first != second


def test_the_lock_file_is_the_given_one_else_the_first_found(tmp_path: Path) -> None:
    """
    Given a checkout with requirements.txt and uv.lock
    When the lock file is looked for
    Then uv.lock wins over requirements.txt, a given file wins over both, none is None
    """
    assert find_lock_file(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("x==1\n")
    assert find_lock_file(tmp_path) == tmp_path / "requirements.txt"
    (tmp_path / "uv.lock").write_text("")
    assert find_lock_file(tmp_path) == tmp_path / "uv.lock"
    given = tmp_path / "other.lock"
    assert find_lock_file(tmp_path, given) == given
