"""Governance: register, promote, roll back, archive, approve and reject model versions.

Every event is one DynamoDB transaction holding the registry change (stage pointer + stage
history, or a version's status) AND its audit entry, so neither lands without the other; then
the chain head is anchored in the Object Lock bucket and the event is published to
EventBridge. Those two happen after the commit, so their failure is reported as a warning,
never rolled back (the audit entry is the record; `ferry audit verify` flags a late anchor).

Promotion gates (each refusal says which and why, `PromotionRefused`):
- the card carries validation results and they passed. Registration records its own checks
  (ONNX-vs-sklearn parity, schema/graph agreement, metrics) as `card.validation`; a version
  registered without a parity reference has `validation = None` and cannot be promoted until
  the validation pipeline records results;
- for production, more: a PASSED result of the validation gate against the version in
  production now (`ferry_core.registry.policies`; `ferry validate` records one);
- the version is not archived or rejected;
- the artifact in S3 (the pinned S3 version) still hashes to the card's sha256;
- for stages in `approval_required_for`, someone approved the version (`approve`), and not
  its registrant or the author of its training run (four eyes, `GovernanceForbidden`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, Json

from ferry_core.audit.anchors import AnchorStore
from ferry_core.audit.chain import AuditLog
from ferry_core.card import Card
from ferry_core.errors import (
    AnchorFailed,
    ModelNotFound,
    ModelUnavailable,
    PromotionRefused,
    RegistryConflict,
    TransactionRefused,
)
from ferry_core.monitoring.alarms import ModelAlarmFields, ModelMonitors
from ferry_core.registry.events import EventPublisher
from ferry_core.registry.outcome import Outcome
from ferry_core.registry.policies import ValidationStarter
from ferry_core.registry.reader import RegistryReader, StageRevision
from ferry_core.registry.table import STAGES
from ferry_core.registry.validation_events import ValidationEvents
from ferry_core.registry.writer import RegistryWriter
from ferry_core.settings import EnvironmentFields, ModelStoreFields
from ferry_core.store import ModelStore

_UNSET: Any = object()


def validation_problem(card: Card) -> str | None:
    """Why a card's validation results do not allow promotion, or None when they do."""
    v = card.validation
    if not v:
        return (
            f"{card.name} v{card.version} has no validation results: register it with "
            "`ferry register` from a fitted pipeline (which records parity, schema and metric "
            "checks) or with a parity reference, or run the validation pipeline"
        )
    if v.get("passed") is not True:
        failed = [c.get("name", "?") for c in v.get("checks", []) if not c.get("passed")]
        return (
            f"{card.name} v{card.version} failed validation ({', '.join(failed) or 'passed=false'})"
        )
    return None


class Governance(ValidationEvents):
    """Governed registry writes; the only code that moves stage pointers."""

    def __init__(
        self,
        dynamodb_client: Any,
        registry_table: str,
        audit: AuditLog,
        store: ModelStore | None,
        publisher: EventPublisher | None = None,
        approval_required_for: tuple[str, ...] = (),
        monitors: ModelMonitors | None = None,
        validations: ValidationStarter | None = None,
    ) -> None:
        self.reader = RegistryReader(dynamodb_client, registry_table, pointer_ttl_seconds=0)
        self.writer = RegistryWriter(dynamodb_client, registry_table)
        self.audit = audit
        self._store = store
        self._publisher = publisher
        self._approval_for = approval_required_for
        self._monitors = monitors
        self.validations = validations

    # -- shared --------------------------------------------------------------------------
    def _commit(
        self, outcome: Outcome, actor: str, reason: str, details: dict[str, Any], items: list[Any]
    ) -> Outcome:
        """Append the audit entry atomically with `items`, then anchor and publish."""
        try:
            outcome.entry = self.audit.append(
                outcome.model,
                outcome.event,
                actor,
                version=outcome.version,
                before=outcome.before,
                after=outcome.after,
                reason=reason,
                details=details,
                transact=items,
            )
        except AnchorFailed as exc:
            outcome.entry = exc.entry
            outcome.warnings.append(exc.message)
        if self._publisher is not None and outcome.entry is not None:
            try:
                outcome.event_id = self._publisher.publish(outcome.entry)
            except Exception as exc:  # botocore or refusal: the event stands, say so
                outcome.warnings.append(f"EventBridge publish failed: {exc}")
        return outcome

    def check_promotable(self, card: Card, stage: str, need_approval: bool = True) -> None:
        """Raise `PromotionRefused` unless `card` may go live in `stage`."""
        record = self.reader.version_item(card.name, card.version)
        status = record.status
        if status in ("archived", "rejected"):
            raise PromotionRefused(f"{card.name} v{card.version} is {status}; it cannot go live")
        problem = validation_problem(card)
        if problem:
            raise PromotionRefused(problem)
        if need_approval and stage in self._approval_for and not record.approved_by:
            raise PromotionRefused(
                f"{card.name} v{card.version} needs an approval before it can go to {stage}: "
                f"`ferry approve {card.name} {card.version}`"
            )
        if self._store is None:
            raise PromotionRefused("no model store configured: cannot check artifact integrity")
        try:
            self._store.fetch(card.artifact)
        except ModelUnavailable as exc:
            raise PromotionRefused(
                f"{card.name} v{card.version} refused: artifact integrity check failed: "
                f"{exc.message}"
            ) from exc

    def _move(
        self,
        event: str,
        card: Card,
        stage: str,
        actor: str,
        reason: str,
        expected_version: Any,
        restores: int | None = None,
    ) -> Outcome:
        if stage not in STAGES:
            raise PromotionRefused(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
        pointer, item_revision = self.reader.fresh_stage(card.name, stage)
        current = pointer.version if pointer else None
        if expected_version is not _UNSET and expected_version != current:
            raise RegistryConflict(
                f"{card.name} {stage} is v{current}, not v{expected_version} as expected"
            )
        outcome = Outcome(
            event,
            card.name,
            card.version,
            {stage: current},
            {stage: card.version},
            None,
            stage=stage,
        )
        if current == card.version:
            outcome.revision = pointer.revision if pointer else None
            outcome.warnings.append(f"{card.name} v{card.version} is already {stage}; no change")
            return outcome
        items, new = self.writer.stage_items(
            card.name,
            stage,
            card.version,
            item_revision,
            actor,
            reason,
            event=event,
            restores=restores,
        )
        outcome.revision = new.revision
        details = {
            "stage": stage,
            "revision": new.revision,
            "artifact_sha256": card.artifact.sha256,
            "artifact_s3_version_id": card.artifact.s3_version_id,
        }
        if restores is not None:
            details["restores_revision"] = restores
        try:
            return self._commit(outcome, actor, reason, details, items)
        except TransactionRefused as exc:
            codes = [r.get("Code") for r in exc.reasons]
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                raise PromotionRefused(
                    f"{card.name} v{card.version} was archived or rejected meanwhile"
                ) from exc
            raise RegistryConflict(
                f"{card.name} {stage} moved while this {event} ran (it was v{current}); "
                "nothing was changed: check `ferry models` and retry"
            ) from exc

    # -- events --------------------------------------------------------------------------
    def register(self, card: Card, actor: str, reason: str = "") -> Outcome:
        """Record a new version and its `register` audit entry in one transaction, then start
        its validation against the current champion (unless it was gated as a candidate).

        The card's lineage names its registrant (`registered_by`, the verified actor) for the
        four-eyes rule; a card that does not is recorded with `actor`.
        """
        if card.lineage.registered_by is None:
            lineage = card.lineage.model_copy(update={"registered_by": actor})
            card = card.model_copy(update={"lineage": lineage})
        outcome = Outcome("register", card.name, card.version, None, {"status": card.status}, None)
        details = {
            "artifact_uri": card.artifact.uri,
            "artifact_sha256": card.artifact.sha256,
            "artifact_s3_version_id": card.artifact.s3_version_id,
            "validation_passed": bool(card.validation and card.validation.get("passed")),
            "git_commit": card.lineage.git_commit,
            "training_data_uri": card.lineage.training_data_uri,
        }
        try:
            self._commit(outcome, actor, reason, details, self.writer.version_items(card))
        except TransactionRefused as exc:
            raise RegistryConflict(f"{card.name} v{card.version} is already registered") from exc
        if self._monitors is not None:  # after the commit: a failure is a warning, as anchoring
            try:
                self._monitors.ensure(card.name)
            except Exception as exc:  # botocore or refusal: the registration stands, say so
                outcome.warnings.append(f"{card.name}'s alarms were not put: {exc}")
        self._auto_validate(outcome, card, actor)
        return outcome

    def promote(
        self,
        model: str,
        version: int,
        stage: str = "production",
        *,
        actor: str,
        reason: str = "",
        expected_version: Any = _UNSET,
    ) -> Outcome:
        """Point `stage` at `version` after the promotion gates; optimistic on the pointer.

        `expected_version` (None = no pointer yet) makes the move conditional on what the
        caller saw; without it the pointer revision read here guards the move.
        """
        card = self.reader.card(model, version)
        self.check_promotable(card, stage)
        if stage == "production":
            live = self.check_production_gate(card)
            if expected_version is _UNSET:  # the champion the gate result was checked against
                expected_version = live
        return self._move("promote", card, stage, actor, reason, expected_version)

    def rollback_target(self, model: str, stage: str = "production") -> StageRevision | None:
        """The revision a rollback returns to: the one before the current, skipping
        revisions that a previous rollback already undid and versions no longer servable."""
        history = self.reader.history(model, stage)
        if not history:
            return None
        by_rev = {h.revision: h for h in history}
        current = history[-1]
        statuses = {r.version: r.status for r in self.reader.version_items(model)}

        def previous(rev: StageRevision) -> int:
            return (rev.restores if rev.restores is not None else rev.revision) - 1

        candidate = previous(current)
        while candidate >= 1:
            rev = by_rev.get(candidate)
            if rev is None:
                return None
            if rev.version != current.version and statuses.get(rev.version) not in (
                "archived",
                "rejected",
            ):
                return rev
            candidate = previous(rev)
        return None

    def rollback(
        self, model: str, *, actor: str, reason: str = "", stage: str = "production"
    ) -> Outcome:
        """Return `stage` to the version live before the current one (from the stage history)."""
        if not self.reader.model_exists(model):
            raise ModelNotFound(f"no model named {model!r}")
        target = self.rollback_target(model, stage)
        if target is None:
            raise PromotionRefused(
                f"{model} has no earlier {stage} version to roll back to (see `ferry show {model}`)"
            )
        card = self.reader.card(model, target.version)
        self.check_promotable(card, stage, need_approval=False)
        head = self.reader.history(model, stage)[-1]
        live = None if head.event == "unstage" else head.version  # a rejected candidate left
        return self._move("rollback", card, stage, actor, reason, live, restores=target.revision)

    def _status_event(
        self,
        event: Literal["archive", "approve", "reject"],
        model: str,
        version: int,
        actor: str,
        reason: str,
        details: Mapping[str, Any] | None,
    ) -> Outcome:
        old = self.reader.version_item(model, version).status
        if old in ("archived", "rejected"):
            raise PromotionRefused(f"{model} v{version} is already {old}")
        new = {"archive": "archived", "approve": "approved", "reject": "rejected"}[event]
        approved_by = actor if event == "approve" else None
        items: list[Any] = [self.writer.status_item(model, version, new, actor, approved_by)]
        unstaged = False
        if event != "approve":  # a live version must be replaced first
            for stage in STAGES:
                pointer = self.reader.fresh_pointer(model, stage)
                if pointer and pointer.version == version:
                    if event == "reject" and stage == "staging":
                        # A rejected candidate leaves staging in the same transaction.
                        items += self.writer.unstage_items(
                            model, stage, version, pointer.revision, actor, reason
                        )
                        unstaged = True
                        continue
                    raise PromotionRefused(
                        f"{model} v{version} is live in {stage}; promote or roll back another "
                        f"version before you {event} it"
                    )
                items.append(self.writer.not_live_item(model, stage, version))
            canary = self.reader.fresh_canary(model)
            if canary and canary.version == version:
                raise PromotionRefused(
                    f"{model} v{version} is in a canary; end the canary before you {event} it"
                )
        outcome = Outcome(event, model, version, {"status": old}, {"status": new}, None)
        if unstaged:
            outcome.after = {"status": new, "staging": None}
            outcome.before = {"status": old, "staging": version}
        try:
            return self._commit(outcome, actor, reason, dict(details or {}), items)
        except TransactionRefused as exc:
            raise RegistryConflict(
                f"{model} v{version} changed while this {event} ran; nothing was changed"
            ) from exc

    def start_canary(
        self, model: str, version: int, percent: float, *, actor: str, run_id: str, reason: str = ""
    ) -> Outcome:
        """Send `percent` of default traffic to `version` (it must pass every production gate,
        approval included); production stays where it is until `promote`."""
        if not 0 < percent <= 50:
            raise PromotionRefused(f"a canary takes 0-50 % of traffic, not {percent}")
        card = self.reader.card(model, version)
        self.check_promotable(card, "production")
        self.check_production_gate(card)
        live = self.reader.fresh_pointer(model, "production")
        if live is None:
            raise PromotionRefused(f"{model} has no production version to run a canary against")
        if live.version == version:
            raise PromotionRefused(f"{model} v{version} is already production")
        outcome = Outcome(
            "canary_start",
            model,
            version,
            {"production": live.version, "canary": None},
            {"production": live.version, "canary": version, "percent": percent},
            None,
        )
        items = [self.writer.canary_put_item(model, version, percent, actor, run_id)]
        try:
            return self._commit(outcome, actor, reason, {"run_id": run_id}, items)
        except TransactionRefused as exc:
            raise RegistryConflict(f"{model} already has a canary in progress") from exc

    def stop_canary(
        self,
        model: str,
        version: int,
        *,
        outcome: Literal["promoted", "rolled_back"],
        actor: str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """End `version`'s canary, saying why (the verdict's figures go in `details`)."""
        canary = self.reader.fresh_canary(model)
        if canary is None or canary.version != version:
            raise PromotionRefused(f"{model} v{version} has no canary in progress")
        result = Outcome(
            "canary_stop",
            model,
            version,
            {"canary": version, "percent": canary.percent},
            {"canary": None, "outcome": outcome},
            None,
        )
        items = [self.writer.canary_delete_item(model, version)]
        info = {"outcome": outcome, "run_id": canary.run_id, **dict(details or {})}
        try:
            return self._commit(result, actor, reason, info, items)
        except TransactionRefused as exc:
            raise RegistryConflict(f"{model}'s canary changed while it was being stopped") from exc

    def record_run_rejection(
        self,
        model: str,
        version: int | None,
        *,
        actor: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Audit a retraining run that ended before (or without) a version to reject: the
        entry is the record of why nothing was promoted. No registry item changes."""
        outcome = Outcome("reject", model, version, None, {"run": "rejected"}, None)
        return self._commit(outcome, actor, reason, dict(details or {}), [])

    def archive(self, model: str, version: int, *, actor: str, reason: str = "") -> Outcome:
        """Retire a version: it stays in the registry and the store, but can no longer go live."""
        return self._status_event("archive", model, version, actor, reason, None)

    def approve(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Record an approval (a human, or a Step Functions approval step via `details`);
        never by the version's registrant or the author of its training run."""
        self.check_four_eyes(model, version, actor)
        return self._status_event("approve", model, version, actor, reason, details)

    def reject(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Record a rejection: the version can never be promoted afterwards."""
        return self._status_event("reject", model, version, actor, reason, details)


class GovernanceSettings(EnvironmentFields, ModelStoreFields, ModelAlarmFields):
    """What the stack passes the governance function (infra/governance.py sets these)."""

    audit_table: str = Field(alias="AUDIT_TABLE")
    anchor_bucket: str = Field(alias="AUDIT_ANCHOR_BUCKET")
    event_bus: str = Field(default="default", alias="EVENT_BUS_NAME")
    approval_required: bool = Field(default=False, alias="APPROVAL_REQUIRED")
    # The state machine that gates a registered version (infra/validate_version.py).
    validation_state_machine: str | None = Field(default=None, alias="VALIDATION_STATE_MACHINE_ARN")
    # The retraining state machine the retrain route starts (None: no retraining here).
    retrain_state_machine: str | None = Field(default=None, alias="RETRAIN_STATE_MACHINE_ARN")
    # The retrain-and-promote workflow (ferry_core/retrain/workflow.py).
    approval_timeout_seconds: int = Field(
        default=3 * 86_400, ge=1, alias="APPROVAL_TIMEOUT_SECONDS"
    )
    canary_percent: float = Field(default=0.0, ge=0, le=50, alias="CANARY_PERCENT")
    canary_seconds: int = Field(default=600, ge=1, alias="CANARY_SECONDS")
    # The canary verdict's thresholds (ferry_core.serving.canary.CanaryPolicy fields), as JSON.
    canary_policy: Json[dict[str, Any]] = Field(default_factory=dict, alias="CANARY_POLICY")


def connect(
    *,
    dynamodb: Any,
    s3: Any,
    events: Any | None,
    registry_table: str,
    audit_table: str,
    anchor_bucket: str | None,
    cache_dir: str,
    env: str | None = None,
    event_bus: str = "default",
    approval_required: bool = False,
    monitors: ModelMonitors | None = None,
    sfn: Any | None = None,
    validation_state_machine: str | None = None,
) -> Governance:
    """A `Governance` wired to one environment's tables and buckets (clients passed in);
    with `sfn` and the `ValidateVersion` machine's ARN it can start validations."""
    anchor = AnchorStore(s3, anchor_bucket) if anchor_bucket else None
    starter = None
    if sfn is not None and validation_state_machine:
        starter = ValidationStarter(sfn, validation_state_machine)
    return Governance(
        dynamodb,
        registry_table,
        AuditLog(dynamodb, audit_table, anchor),
        ModelStore(s3, cache_dir),
        EventPublisher(events, event_bus, env) if events is not None else None,
        approval_required_for=("production",) if approval_required else (),
        monitors=monitors,
        validations=starter,
    )
