"""Identity-based policy evaluation as AWS does it, for the local platform's IAM checks.

moto 5.2.5's evaluator (`moto.iam.access_control.IAMPolicyStatement`) gets three things wrong
that the stack's policies depend on: an Allow statement whose Condition does not match counts
as an explicit Deny (so `s3:ListBucket` with an `s3:prefix` condition denies every listing),
`NotResource` is ignored, and actions match case-sensitively. This module evaluates a
principal's policies the way AWS's policy evaluation logic does for one account:

- an explicit Deny in any statement wins; otherwise an Allow that matches action, resource and
  every condition allows; otherwise the request is implicitly denied;
- Action/NotAction match case-insensitively with `*` and `?`; Resource/NotResource match
  case-sensitively with the same wildcards;
- conditions: the operators below (with `...IfExists`, `ForAnyValue:` and `ForAllValues:`);
  a key absent from the request makes the condition false (true for `...IfExists`, and the
  `Null` operator tests absence itself). An operator this module does not know raises
  `UnsupportedCondition`: loud, never a silent allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ContextValue = str | list[str]


class UnsupportedCondition(Exception):
    """A policy uses a condition operator the local evaluator does not implement."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit_deny: bool = False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _wildcard(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """IAM's `*`/`?` wildcards (no character classes, unlike fnmatch's defaults)."""
    regex = "".join(
        ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in str(pattern)
    )
    flags = re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL
    return re.fullmatch(regex, value, flags) is not None


def action_matches(patterns: Any, action: str) -> bool:
    return any(_wildcard(p, action, ignore_case=True) for p in _as_list(patterns))


def resource_matches(patterns: Any, resource: str) -> bool:
    return any(_wildcard(p, resource, ignore_case=False) for p in _as_list(patterns))


# ---------------------------------------------------------------- conditions


def _string_equals(policy: str, value: str) -> bool:
    return policy == value


def _string_like(policy: str, value: str) -> bool:
    return _wildcard(policy, value, ignore_case=False)


def _ignore_case(policy: str, value: str) -> bool:
    return policy.lower() == value.lower()


def _bool(policy: str, value: str) -> bool:
    return str(policy).lower() == str(value).lower()


def _numeric(compare: Any) -> Any:
    def test(policy: str, value: str) -> bool:
        try:
            return bool(compare(float(value), float(policy)))
        except ValueError:
            return False

    return test


def _arn_like(policy: str, value: str) -> bool:
    """ArnLike: each of the six colon-separated parts matched with wildcards on its own."""
    policy_parts, value_parts = str(policy).split(":", 5), str(value).split(":", 5)
    if len(policy_parts) != 6 or len(value_parts) != 6:
        return False
    return all(
        _wildcard(p, v, ignore_case=False) for p, v in zip(policy_parts, value_parts, strict=True)
    )


# operator → (value test, negated)
_OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_ignore_case, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
    "Bool": (_bool, False),
    "NumericEquals": (_numeric(lambda a, b: a == b), False),
    "NumericNotEquals": (_numeric(lambda a, b: a == b), True),
    "NumericLessThan": (_numeric(lambda a, b: a < b), False),
    "NumericLessThanEquals": (_numeric(lambda a, b: a <= b), False),
    "NumericGreaterThan": (_numeric(lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (_numeric(lambda a, b: a >= b), False),
}


def condition_keys(document: Mapping[str, Any]) -> set[str]:
    """Every condition key a policy document names (lower-cased, as IAM compares them)."""
    return {
        key.lower()
        for statement in _statements(document)
        for block in (statement.get("Condition") or {}).values()
        for key in block
    }


def _condition_matches(operator: str, key: str, wanted: Any, context: Mapping[str, Any]) -> bool:
    present = key.lower() in context
    values = _as_list(context.get(key.lower()))
    if operator == "Null":
        return all(_bool(w, str(not present)) for w in _as_list(wanted))
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    if name not in _OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedCondition(f"condition operator {operator!r} is not evaluated locally")
    if not present:
        return if_exists or qualifier == "ForAllValues"
    test, negated = _OPERATORS[name]
    wanted = [str(w) for w in _as_list(wanted)]

    def one(value: str) -> bool:
        hit = any(test(w, str(value)) for w in wanted)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def _conditions_match(conditions: Mapping[str, Any] | None, context: Mapping[str, Any]) -> bool:
    return all(
        _condition_matches(operator, key, wanted, context)
        for operator, block in (conditions or {}).items()
        for key, wanted in block.items()
    )


# ---------------------------------------------------------------- evaluation


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return _as_list(document.get("Statement"))


def _applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any]
) -> bool:
    if "NotAction" in statement:
        if action_matches(statement["NotAction"], action):
            return False
    elif not action_matches(statement.get("Action"), action):
        return False
    if "NotResource" in statement:
        if resource_matches(statement["NotResource"], resource):
            return False
    elif not resource_matches(statement.get("Resource"), resource):
        return False
    return _conditions_match(statement.get("Condition"), context)


def evaluate(
    documents: Iterable[Mapping[str, Any] | str],
    action: str,
    resource: str,
    context: Mapping[str, Any] | None = None,
) -> Decision:
    """Is `action` on `resource` allowed by these identity policies (with request `context`)?"""
    lowered = {k.lower(): v for k, v in (context or {}).items()}
    allowed = False
    for document in documents:
        doc = json.loads(document) if isinstance(document, str) else document
        for statement in _statements(doc):
            if not _applies(statement, action, resource, lowered):
                continue
            if statement.get("Effect") == "Deny":
                return Decision(allowed=False, explicit_deny=True)
            allowed = allowed or statement.get("Effect") == "Allow"
    return Decision(allowed=allowed)


def denial_message(principal_arn: str, action: str, resource: str, decision: Decision) -> str:
    """AWS's AccessDenied text: who, which action, on which resource, and why."""
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.explicit_deny
        else f"because no identity-based policy allows the {action} action"
    )
    return (
        f"User: {principal_arn} is not authorized to perform: {action} "
        f"on resource: {resource} {why}"
    )


def unsupported_operators(document: Mapping[str, Any]) -> set[str]:
    """Condition operators a policy document uses that `evaluate` does not implement."""
    found = set()
    for statement in _statements(document):
        for operator in statement.get("Condition") or {}:
            qualifier, _, name = operator.rpartition(":")
            name = name.removesuffix("IfExists")
            known = name == "Null" or name in _OPERATORS
            if not known or qualifier not in ("", "ForAnyValue", "ForAllValues"):
                found.add(operator)
    return found


def unsupported_keys(documents: Sequence[Mapping[str, Any]], supported: set[str]) -> set[str]:
    """Condition keys these documents use that the local platform does not supply."""
    return {key for doc in documents for key in condition_keys(doc)} - supported
