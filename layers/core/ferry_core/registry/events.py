"""Governance events on EventBridge (`source: ferry.registry`), so other systems react to them.

Published after the registry and audit writes committed: the audit chain is the record, the
event is the notification. A failed publish is reported to the caller, never undoes the event.

Each audit event has a detail-type and a pydantic model of its detail (`EVENT_TYPES`). The
detail is the audit entry itself, hash included (a receiver can recompute the hash and cite the
entry), plus the environment it happened in. Every detail is validated by its model before it
is put on the bus, and the JSON Schemas the stack registers (`AWS::EventSchemas::Schema`, one
per detail-type) are generated from the same models (`ferry_core.registry.event_schemas`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ferry_core.audit.table import AuditEntry

SOURCE = "ferry.registry"
HEX64 = r"^[0-9a-f]{64}$"

Stage = Literal["production", "staging"]
Status = Literal["registered", "validated", "approved", "rejected", "archived"]
Number = int | float  # int first: a whole number stays whole, so the entry's hash still holds


class _Closed(BaseModel):
    """A part of a detail whose keys are all known: a new key must be added here first."""

    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A part that carries the caller's own keys (a verdict's figures, an approval's context)."""

    model_config = ConfigDict(extra="allow")


class RegistryEvent(_Closed):
    """What every detail holds: one audit entry (`ferry audit verify` recomputes `hash`)."""

    environment: str | None = Field(
        default=None, description="The stack's environment (local, dev, prod)."
    )
    model: str = Field(description="The model's name.")
    seq: int = Field(ge=1, description="The entry's position in the model's audit chain.")
    event: str
    actor: str = Field(description="Who did it: a verified principal, a workflow or a service.")
    at: str = Field(description="When, ISO 8601 UTC.")
    version: int | None
    before: Any
    after: Any
    reason: str
    details: Any
    prev_hash: str = Field(pattern=HEX64, description="The hash of the entry before this one.")
    hash: str = Field(pattern=HEX64, description="sha256 of the entry's canonical JSON.")


# -- the parts of the details -------------------------------------------------------------
class StagePointers(_Closed):
    """The version a stage points at (one key: the stage that moved)."""

    production: int | None = None
    staging: int | None = None


class VersionStatus(_Closed):
    """A version's status; `staging` when a rejected candidate also left staging."""

    status: Status
    staging: int | None = None


class StageMoveDetails(_Closed):
    stage: Stage
    revision: int = Field(ge=1, description="The stage pointer's new revision.")
    artifact_sha256: str = Field(pattern=HEX64)
    artifact_s3_version_id: str | None
    restores_revision: int | None = Field(
        default=None, ge=1, description="Rollbacks: the revision this one restores."
    )


class RegisterDetails(_Closed):
    artifact_uri: str
    artifact_sha256: str = Field(pattern=HEX64)
    artifact_s3_version_id: str | None
    validation_passed: bool
    git_commit: str | None
    training_data_uri: str | None


class RunRejected(_Closed):
    run: Literal["rejected"]


class CanaryBefore(_Closed):
    production: int
    canary: None


class CanaryAfter(_Closed):
    production: int
    canary: int
    percent: Number


class CanaryRunning(_Closed):
    canary: int
    percent: Number


class CanaryEnded(_Closed):
    canary: None
    outcome: Literal["promoted", "rolled_back"]


class CanaryStartDetails(_Closed):
    run_id: str


class CanaryStopDetails(_Open):
    """The outcome and the run; the verdict's figures (requests, error rates…) ride along."""

    outcome: Literal["promoted", "rolled_back"]
    run_id: str | None


class BatchInput(_Closed):
    bucket: str
    key: str
    version_id: str | None
    sha256: str


class BatchRunDetails(_Closed):
    run_id: str
    input: BatchInput
    rows_in: int = Field(ge=0)
    rows_scored: int = Field(ge=0)
    rows_rejected: int = Field(ge=0)
    manifest: str


class ValidationDetails(_Open):
    """A gate result recorded on a version: passed or not, against which champion."""

    passed: bool | None = None
    champion_version: int | None = None


# -- one model per event type -------------------------------------------------------------
class VersionRegistered(RegistryEvent):
    """A new version entered the registry (not live anywhere yet)."""

    event: Literal["register"]
    version: int
    before: None
    after: VersionStatus
    details: RegisterDetails


class VersionPromoted(RegistryEvent):
    """A stage now points at `version`; `before` says what it pointed at."""

    event: Literal["promote"]
    version: int
    before: StagePointers
    after: StagePointers
    details: StageMoveDetails


class VersionRolledBack(RegistryEvent):
    """A stage returned to an earlier version (`details.restores_revision`)."""

    event: Literal["rollback"]
    version: int
    before: StagePointers
    after: StagePointers
    details: StageMoveDetails


class VersionArchived(RegistryEvent):
    """A version was retired: it stays in the registry but can no longer go live."""

    event: Literal["archive"]
    version: int
    before: VersionStatus
    after: VersionStatus
    details: _Open


class VersionApproved(RegistryEvent):
    """Someone approved a version (a person, or the workflow's approval step)."""

    event: Literal["approve"]
    version: int
    before: VersionStatus
    after: VersionStatus
    details: _Open


class VersionRejected(RegistryEvent):
    """A version was rejected, or a retraining run ended without one (`after.run`)."""

    event: Literal["reject"]
    before: VersionStatus | None
    after: VersionStatus | RunRejected
    details: _Open


class CanaryStarted(RegistryEvent):
    """Part of the default traffic now goes to `version`; production is unchanged."""

    event: Literal["canary_start"]
    version: int
    before: CanaryBefore
    after: CanaryAfter
    details: CanaryStartDetails


class CanaryStopped(RegistryEvent):
    """A canary ended, promoted or rolled back."""

    event: Literal["canary_stop"]
    version: int
    before: CanaryRunning
    after: CanaryEnded
    details: CanaryStopDetails


class VersionValidated(RegistryEvent):
    """The validation function's gate result was recorded on a version."""

    event: Literal["validate"]
    version: int
    details: ValidationDetails


class BatchRunRecorded(RegistryEvent):
    """A batch scoring run was committed (its manifest is the record of its rows)."""

    event: Literal["batch_run"]
    version: int
    before: None
    after: None
    details: BatchRunDetails


@dataclass(frozen=True)
class EventType:
    """An audit event's EventBridge detail-type and the model of its detail."""

    event: str
    detail_type: str
    model: type[RegistryEvent]


EVENT_TYPES: dict[str, EventType] = {
    t.event: t
    for t in (
        EventType("register", "Model Version Registered", VersionRegistered),
        EventType("promote", "Model Version Promoted", VersionPromoted),
        EventType("rollback", "Model Version Rolled Back", VersionRolledBack),
        EventType("archive", "Model Version Archived", VersionArchived),
        EventType("approve", "Model Version Approved", VersionApproved),
        EventType("reject", "Model Version Rejected", VersionRejected),
        EventType("canary_start", "Model Canary Started", CanaryStarted),
        EventType("canary_stop", "Model Canary Stopped", CanaryStopped),
        EventType("validate", "Model Version Validated", VersionValidated),
        EventType("batch_run", "Batch Run Recorded", BatchRunRecorded),
    )
}
DETAIL_TYPES = {event: t.detail_type for event, t in EVENT_TYPES.items()}


def detail_of(entry: AuditEntry, env: str | None = None) -> dict[str, Any]:
    """The event detail, validated by its event's model: the audit entry and the environment.

    Raises `ValueError` for an event without a detail-type and pydantic's `ValidationError`
    (a `ValueError`) for an entry its model does not describe: publishing a detail that
    contradicts the registered schema would break the receivers that rely on it.
    """
    kind = EVENT_TYPES.get(entry.event)
    if kind is None:
        raise ValueError(f"audit event {entry.event!r} has no EventBridge detail-type")
    raw = entry.as_dict()
    if env:
        raw["environment"] = env
    detail = kind.model.model_validate(raw)
    return detail.model_dump(mode="json", exclude_unset=True)


class EventPublisher:
    """Puts one EventBridge event per governance event on a bus (the default bus unless told)."""

    def __init__(self, events_client: Any, bus: str = "default", env: str | None = None) -> None:
        self._events = events_client
        self._bus = bus
        self._env = env

    def publish(self, entry: AuditEntry) -> str:
        """Publish and return the event id; raises RuntimeError when EventBridge refused it
        and ValueError when the entry does not fit its detail-type's schema."""
        detail = detail_of(entry, self._env)
        resp = self._events.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": DETAIL_TYPES[entry.event],
                    "Detail": json.dumps(detail, sort_keys=True),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        (result,) = resp["Entries"]
        if resp.get("FailedEntryCount") or "EventId" not in result:
            code, message = result.get("ErrorCode"), result.get("ErrorMessage")
            raise RuntimeError(f"EventBridge refused the event: {code} {message}")
        return result["EventId"]


def publishing(
    append: Callable[..., AuditEntry],
    publisher: EventPublisher,
    on_failure: Callable[[str], None],
) -> Callable[..., AuditEntry]:
    """`AuditLog.append` that also publishes each entry it wrote (for writers of the audit
    trail other than governance: the batch function). The entry is the record: a failed
    publish goes to `on_failure`, never undoes or fails the append."""

    def append_and_publish(*args: Any, **kwargs: Any) -> AuditEntry:
        entry = append(*args, **kwargs)
        try:
            publisher.publish(entry)
        except Exception as exc:  # botocore, a refusal, a detail off its schema: say so
            on_failure(f"EventBridge publish of {entry.model} #{entry.seq} failed: {exc}")
        return entry

    return append_and_publish
