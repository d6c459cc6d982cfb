"""Governance's validation events and policy checks, mixed into `Governance`.

- `start_validation`: start the `ValidateVersion` state machine for a registered version (no
  registry change, so no audit entry; the result's entry is `validate`);
- `record_validation`: the state machine's last step writes the gate result on the version's
  registry item and its `validate` audit entry in one transaction;
- `check_production_gate` / `check_four_eyes`: the policies of `ferry_core.registry.policies`
  over what the registry and the audit chain hold now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry_core.audit.chain import AuditLog
from ferry_core.card import Card
from ferry_core.errors import FerryError, PromotionRefused, TransactionRefused, VersionNotFound
from ferry_core.registry.outcome import Outcome
from ferry_core.registry.policies import (
    ValidationStarter,
    four_eyes_problem,
    gate_result,
    production_gate_problem,
)
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.writer import RegistryWriter

# What of a gate result the `validate` audit entry carries (the checks stay on the item).
_AUDITED = ("passed", "summary", "champion_version", "at", "breaking_change")


class ValidationEvents:
    """The validation half of `Governance` (which provides these attributes and `_commit`)."""

    reader: RegistryReader
    writer: RegistryWriter
    audit: AuditLog
    validations: ValidationStarter | None

    def _commit(
        self, outcome: Outcome, actor: str, reason: str, details: dict[str, Any], items: list[Any]
    ) -> Outcome:
        raise NotImplementedError

    def start_validation(self, model: str, version: int, *, actor: str) -> Outcome:
        """Start gating `version` against the current champion; the outcome names the
        execution, whose last step records the result (`record_validation`)."""
        self.reader.version_item(model, version)  # ModelNotFound / VersionNotFound first
        if self.validations is None:
            raise PromotionRefused("no validation state machine is configured here")
        arn = self.validations.start(model, version, actor)
        return Outcome(
            "validate", model, version, None, {"validation": "started"}, None, execution=arn
        )

    def _auto_validate(self, outcome: Outcome, card: Card, actor: str) -> None:
        """After a registration: gate the new version unless it was gated as a candidate
        (a retrained version carries its report). A failed start is a warning, not a failure."""
        if self.validations is None or gate_result(card, None) is not None:
            return
        try:
            outcome.execution = self.validations.start(card.name, card.version, actor)
        except Exception as exc:  # botocore or refusal: the registration stands, say so
            outcome.warnings.append(
                f"validation could not be started ({exc}): run "
                f"`ferry validate {card.name} {card.version}`"
            )

    def record_validation(
        self,
        model: str,
        version: int,
        result: Mapping[str, Any],
        *,
        actor: str,
        execution: str | None = None,
    ) -> Outcome:
        """Write a gate result on the version (its latest) and the `validate` audit entry."""
        if "passed" not in result:
            raise PromotionRefused("a validation result needs `passed`")
        record = self.reader.version_item(model, version)
        card = self.reader.card(model, version)
        previous = gate_result(card, record.validation)
        stored = {**result, "execution": execution} if execution else dict(result)
        after = {"passed": result.get("passed"), "against": result.get("champion_version")}
        outcome = Outcome("validate", model, version, None, after, None, execution=execution)
        if previous is not None:
            outcome.before = {
                "passed": previous.get("passed"),
                "against": previous.get("champion_version"),
            }
        details = {k: result[k] for k in _AUDITED if k in result}
        details["failed_checks"] = [
            c.get("name") for c in result.get("checks", []) if not c.get("passed")
        ]
        if execution:
            details["execution"] = execution
        reason = str(result.get("summary") or "")[:1024]
        items = [self.writer.validation_item(model, version, stored)]
        try:
            return self._commit(outcome, actor, reason, details, items)
        except TransactionRefused as exc:
            raise VersionNotFound(f"model {model!r} has no version {version}") from exc

    def check_production_gate(self, card: Card) -> int | None:
        """Refuse `card` for production without a passed gate result against the version
        live now; returns that version (None: no production yet), for the move's guard."""
        pointer = self.reader.fresh_pointer(card.name, "production")
        production = pointer.version if pointer else None
        if production == card.version:
            return production
        record = self.reader.version_item(card.name, card.version)
        problem = production_gate_problem(card, gate_result(card, record.validation), production)
        if problem:
            raise PromotionRefused(problem)
        return production

    def check_four_eyes(self, model: str, version: int, actor: str) -> None:
        """Refuse an approval by the version's registrant or the author of its training run."""
        card = self.reader.card(model, version)
        registrants = [
            e.actor
            for e in self.audit.entries(model)
            if e.event == "register" and e.version == version
        ]
        problem: FerryError | None = four_eyes_problem(card, actor, registrants)
        if problem is not None:
            raise problem
