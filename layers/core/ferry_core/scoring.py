"""Real-time scoring: resolve the version, prove and load its artifact, validate, score.

Transport-free: the HTTP handler and the local platform call `ScoringService.predict` with
plain values and get plain values back; every failure is a domain error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ferry_core.card import Card
from ferry_core.errors import ValidationFailed
from ferry_core.inference import ModelPool, OnnxModel
from ferry_core.registry import RegistryReader
from ferry_core.store import ModelStore
from ferry_core.validation import InstanceValidator


@dataclass(frozen=True)
class ScoreResult:
    model: str
    version: int
    predictions: list[dict[str, Any]]


class ScoringService:
    """Scores instances against the production, staging or a pinned version of a model."""

    def __init__(
        self, registry: RegistryReader, store: ModelStore, threads: int = 1, capacity: int = 8
    ) -> None:
        self.registry = registry
        self._store = store
        self._threads = threads
        self._pool = ModelPool(self._load, capacity)
        self._validators: dict[tuple[str, int], InstanceValidator] = {}

    def _load(self, card: Card) -> OnnxModel:
        return OnnxModel(card, self._store.fetch(card.artifact), threads=self._threads)

    def model(self, card: Card) -> OnnxModel:
        return self._pool.get(card)

    def validator(self, card: Card) -> InstanceValidator:
        key = (card.name, card.version)
        v = self._validators.get(key)
        if v is None:
            v = self._validators[key] = InstanceValidator(card.input_schema)
        return v

    def predict(
        self,
        model: str,
        instances: Sequence[Any],
        version: int | None = None,
        stage: str | None = None,
    ) -> ScoreResult:
        """Score every instance or none: one bad instance fails the request with all problems."""
        card = self.registry.resolve(model, version=version, stage=stage)
        onnx_model = self.model(card)  # integrity failure → ModelUnavailable before validation
        verdict = self.validator(card).check(instances)
        if not verdict.ok:
            n = len({i.instance for i in verdict.issues})
            raise ValidationFailed(
                f"{n} of {len(instances)} instance(s) failed validation against "
                f"{card.name} v{card.version}",
                details=[i.as_dict() for i in verdict.issues],
            )
        scores, labels = onnx_model.predict_rows(verdict.rows)
        predictions = [
            {"score": s, "label": lab, "warnings": w}
            for s, lab, w in zip(scores.tolist(), labels.tolist(), verdict.warnings, strict=True)
        ]
        return ScoreResult(card.name, card.version, predictions)
