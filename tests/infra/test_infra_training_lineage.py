"""Lineage the stack gives the training function: the source commit of the synthesis
(infra/source.py) and the right to resolve its own image's digest (infra/retraining.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.source import COMMIT_CONTEXT, DIRTY_CONTEXT, source_context

REPO_ROOT = Path(__file__).resolve().parents[2]


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _training(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, r)
        for k, r in _resources(template, "AWS::Lambda::Function").items()
        if k.startswith("RetrainTraining") and "Environment" in r["Properties"]
    ]
    return found


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_dev_and_prod_training_functions_get_the_same_source_commit(synthesis: Any) -> None:
    """
    Given the app synthesized from this checkout (app.build_app)
    When I read the training function's environment in the dev and the prod template
    Then both carry FERRY_SOURCE_COMMIT = the checkout's HEAD and the same dirty flag
    """
    head = _git("rev-parse", "HEAD", cwd=REPO_ROOT)
    seen = []
    for env in ("dev", "prod"):
        _, fn = _training(synthesis.templates[env])
        variables = fn["Properties"]["Environment"]["Variables"]
        seen.append((variables["FERRY_SOURCE_COMMIT"], variables["FERRY_SOURCE_DIRTY"]))
    assert seen[0] == seen[1]
    assert seen[0][0] == head and seen[0][1] in ("true", "false")


def test_the_training_function_may_resolve_only_its_own_image(template_json: dict) -> None:
    """
    Given the synthesized template
    When I look for the training role's grants of any lambda: action
    Then there is exactly one, lambda:GetFunction on the training function's own ARN, in a
        policy of its own for that role only (the role's default policy would make a
        dependency cycle)
    """
    fn_id, fn = _training(template_json)
    role = {"Ref": fn["Properties"]["Role"]["Fn::GetAtt"][0]}
    grants = [
        (policy_id, policy, statement)
        for policy_id, policy in _resources(template_json, "AWS::IAM::Policy").items()
        if role in policy["Properties"]["Roles"]
        for statement in _statements(policy)
        if any(a.startswith("lambda:") for a in _actions(statement))
    ]
    assert len(grants) == 1, grants
    policy_id, policy, statement = grants[0]
    assert _actions(statement) == ["lambda:GetFunction"]
    assert statement["Resource"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    assert policy["Properties"]["Roles"] == [role]
    assert "DefaultPolicy" not in policy_id
    assert policy_id not in json.dumps(fn.get("DependsOn", []))


def test_the_training_role_reads_the_registry_and_registered_trainers_only(
    template_json: dict,
) -> None:
    """
    Given the synthesized template
    When I read what the training role may do in the model bucket and the registry
    Then it reads registry items and models/*/trainer/* objects, and writes only candidates/
    """
    _, fn = _training(template_json)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in _resources(template_json, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in _statements(p)
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    assert set(_actions(by_sid["ReadRegistry"])) == {"dynamodb:GetItem", "dynamodb:Query"}
    assert _actions(by_sid["ReadTrainers"]) == ["s3:GetObject"]
    assert by_sid["ReadTrainers"]["Resource"]["Fn::Join"][1][-1] == "/models/*/trainer/*"
    for s in statements:
        for action in _actions(s):
            if action == "s3:PutObject":
                assert "candidates/" in json.dumps(s["Resource"])


def test_source_context_names_a_clean_or_dirty_commit(tmp_path: Path) -> None:
    """
    Given a git checkout, first clean, then with a tracked file changed
    When infra reads its source context
    Then it names HEAD, with the dirty flag false and then true
    """
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "a.txt").write_text("one")
    _git("add", "a.txt", cwd=tmp_path)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=tmp_path)
    head = _git("rev-parse", "HEAD", cwd=tmp_path)
    assert source_context(tmp_path) == {COMMIT_CONTEXT: head, DIRTY_CONTEXT: "false"}
    (tmp_path / "a.txt").write_text("two")
    assert source_context(tmp_path) == {COMMIT_CONTEXT: head, DIRTY_CONTEXT: "true"}


def test_without_a_checkout_codebuild_names_the_commit_or_nothing_is_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given a folder that is no git checkout
    When infra reads its source context with and without CodeBuild's resolved source version
    Then it names CodeBuild's commit, and otherwise nothing at all
    """
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("CODEBUILD_RESOLVED_SOURCE_VERSION", raising=False)
    assert source_context(tmp_path) == {}
    monkeypatch.setenv("CODEBUILD_RESOLVED_SOURCE_VERSION", "0123abc")
    assert source_context(tmp_path) == {COMMIT_CONTEXT: "0123abc", DIRTY_CONTEXT: "false"}
