"""Reliability property 6: the stack is locked down, and each of its rules can fail.

Uses the session's synthesis (tests/infra/conftest.py): both templates, as `ferry bench
reliability` reads them after its own synth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ferry_bench.properties import Mode, PropertyResult
from ferry_bench.stack_lockdown import Assembly, load_assembly, run

if TYPE_CHECKING:
    from conftest import Synthesis


@pytest.fixture(scope="module")
def assembly(synthesis: Synthesis) -> Assembly:
    return load_assembly(synthesis.outdir)


def _run(assembly: Assembly) -> PropertyResult:
    result = PropertyResult(6, "The stack is locked down", "fast")
    run(Mode(long=False), result, assembly)
    return result


def _count(assembly: Assembly, *kinds: str) -> int:
    return sum(
        1
        for template in assembly.templates.values()
        for r in template["Resources"].values()
        if r["Type"] in kinds
    )


def test_both_templates_hold_every_lockdown_rule(assembly: Assembly) -> None:
    """
    Given the synthesized dev and prod templates
    When property 6 checks them
    Then nothing is reported, and the figures count what is really in the templates
    """
    result = _run(assembly.copy())
    assert result.violations == []
    f = result.figures
    assert f["templates"] == 2
    assert f["functions"] == f["function roles"] == _count(assembly, "AWS::Lambda::Function")
    assert f["async-invoked functions"] == f["... with a failure destination"] >= 2
    assert f["queue/stream inputs"] == f["... with a DLQ or on-failure destination"] >= 2


# -- each rule, broken on purpose ---------------------------------------------------------------


def _res(assembly: Assembly, env: str, kind: str, id_part: str = "") -> dict[str, Any]:
    (found,) = [
        r
        for lid, r in assembly.templates[env]["Resources"].items()
        if r["Type"] == kind and id_part in lid
    ][:1]
    return found


def shared_role(a: Assembly) -> None:
    scoring = _res(a, "prod", "AWS::Lambda::Function", "ScoringFunction")
    other = _res(a, "prod", "AWS::Lambda::Function", "DriftFunction")
    other["Properties"]["Role"] = scoring["Properties"]["Role"]


def async_function_without_destination(a: Assembly) -> None:
    resources = a.templates["dev"]["Resources"]
    for lid in [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]:
        del resources[lid]


def queue_without_redrive(a: Assembly) -> None:
    for r in a.templates["prod"]["Resources"].values():
        if r["Type"] == "AWS::SQS::Queue":
            r["Properties"].pop("RedrivePolicy", None)


@pytest.mark.parametrize(
    ("breaks", "reported"),
    [
        (shared_role, "is shared by 2 functions"),
        (async_function_without_destination, "with no DLQ or on-failure destination"),
        (queue_without_redrive, "has no redrive DLQ or on-failure destination"),
    ],
)
def test_each_rule_reports_a_template_that_breaks_it(
    assembly: Assembly, breaks: Callable[[Assembly], None], reported: str
) -> None:
    broken = assembly.copy()
    breaks(broken)
    violations = _run(broken).violations
    assert any(reported in v for v in violations), violations
