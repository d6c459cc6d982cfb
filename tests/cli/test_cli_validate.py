"""`ferry validate`'s wait: the result recorded on the version by the execution it started."""

from __future__ import annotations

from typing import Any

from ferry_cli.environments import Environment
from ferry_cli.validate_cmds import wait_for_result
from ferry_cli.views import card_table, gate_line
from ferry_core.card import Lineage
from ferry_core.registry.registration import register

MODEL = "credit-risk"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Ferry-local-ValidateVersion:e1"


def test_the_wait_returns_the_result_of_its_own_execution_only(aws, boto, built, governed) -> None:
    gov = governed()
    register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    environment = Environment(
        name="local", region="us-east-1", outputs={"RegistryTableName": aws.registry_table}
    )
    earlier: dict[str, Any] = {"passed": True, "champion_version": None, "summary": "old"}
    gov.record_validation(MODEL, 1, earlier, actor="carol", execution=EXECUTION + "-old")
    assert wait_for_result(environment, MODEL, 1, EXECUTION, timeout=1.5) is None
    result = {"passed": False, "champion_version": None, "summary": "failed segments"}
    gov.record_validation(MODEL, 1, result, actor="carol", execution=EXECUTION)
    found = wait_for_result(environment, MODEL, 1, EXECUTION, timeout=5)
    assert found is not None and (found["passed"], found["summary"]) == (False, "failed segments")
    assert "FAILED[/] against no production version (failed segments)" in gate_line(found)
    record = gov.reader.version_record(MODEL, 1)
    rows = card_table(gov.reader.card(MODEL, 1), record).columns[0]._cells
    assert "gate" in rows
