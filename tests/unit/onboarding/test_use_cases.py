"""Registration from files as one use case: the request's rules and where lineage comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry_core.onboarding.intake import IntakeError
from ferry_core.onboarding.use_cases import (
    RegistrationRequest,
    find_lock_file,
    register_from_files,
)


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
    When it is registered
    Then IntakeError says why, and no client is touched (None would fail on first use)
    """
    with pytest.raises(IntakeError, match="exactly one of"):
        register_from_files(RegistrationRequest(name="m"), None, "bucket", None, "me")  # type: ignore[arg-type]


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
