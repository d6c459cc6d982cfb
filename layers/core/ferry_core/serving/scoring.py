"""Real-time scoring: resolve the version, prove and load its artifact, validate, score.

Transport-free: the HTTP handler and the local platform call `ScoringService.predict` with
plain values and get plain values back; every failure is a domain error.

Canary: while the registry holds a canary for a model, a request that names neither a version
nor a stage goes to the canary version with the canary's probability, else to production. The
whole request is scored by one version and the response names it; the caller learns which
variant served it (also when the request then fails) through `ServedBy`, so the canary's error
rate and latency can be compared with production's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ferry_core.card import Card
from ferry_core.errors import ValidationFailed
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.refresh import PointerRefresher
from ferry_core.serving.inference import ModelPool, OnnxModel
from ferry_core.serving.validator import InstanceValidator
from ferry_core.settings import ScoringFields
from ferry_core.store import ModelStore


@dataclass(frozen=True)
class ScoreResult:
    model: str
    version: int
    predictions: list[dict[str, Any]]


@dataclass
class ServedBy:
    """Which variant served a request: "canary", "champion" (production while a canary runs),
    or None when no canary was involved (pinned version, named stage, no canary)."""

    variant: str | None = None
    version: int | None = None
    # The request loaded its model (a one-time cost the warm variant paid long ago): its
    # latency says nothing about how the version serves, so the comparison leaves it out.
    cold: bool = False


class ScoringService:
    """Scores instances against the production, staging or a pinned version of a model."""

    def __init__(
        self,
        registry: RegistryReader,
        store: ModelStore,
        threads: int = 1,
        capacity: int = 8,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.registry = registry
        self._draw = draw
        self._store = store
        self._threads = threads
        self._pool = ModelPool(self._load, capacity)
        self._validators: dict[tuple[str, int], InstanceValidator] = {}
        self.refresher: PointerRefresher | None = None

    @classmethod
    def from_settings(
        cls, settings: ScoringFields, dynamodb: Any, s3: Any, refresh_seconds: float = 0.0
    ) -> ScoringService:
        """The service a scoring function (real-time or batch) builds once per container;
        with `refresh_seconds`, a background thread keeps its stage pointers fresh."""
        registry = RegistryReader(
            dynamodb, settings.registry_table, settings.registry_cache_seconds
        )
        service = cls(registry, ModelStore(s3, settings.model_cache_dir), threads=settings.threads)
        if refresh_seconds > 0:
            service.refresher = PointerRefresher(registry, refresh_seconds).start()
        return service

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
        served: ServedBy | None = None,
    ) -> ScoreResult:
        """Score every instance or none: one bad instance fails the request with all problems."""
        card = self._resolve(model, version, stage, served)
        if served is not None:
            served.cold = not self._pool.loaded(card)
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

    def _resolve(
        self, model: str, version: int | None, stage: str | None, served: ServedBy | None
    ) -> Card:
        if version is None and stage is None:
            canary = self.registry.canary(model)
            if canary is not None:
                variant = "canary" if self._draw() * 100 < canary.percent else "champion"
                if served is not None:
                    served.variant = variant
                if variant == "canary":
                    if served is not None:
                        served.version = canary.version
                    return self.registry.card(model, canary.version)
        card = self.registry.resolve(model, version=version, stage=stage)
        if served is not None:
            served.version = card.version
        return card
