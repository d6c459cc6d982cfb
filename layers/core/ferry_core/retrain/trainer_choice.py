"""Which trainer a retraining run uses, decided from the registry before anything is fitted.

- A run that names an entry point (`ferry retrain --entry-point module:attribute`) uses that
  trainer of the training image: an operator's explicit choice of reviewed, built-in code.
- Otherwise the trainer registered with the model's production version (else its latest
  version): the owner's file and lock, fetched from `models/{model}/v{n}/trainer/`, proven
  against the card's sha256 and the lock against the image (`trainer_files`).
- A model whose version has no trainer is retrained by the built-in default only if it IS the
  default's kind (the same input features and types): the model-risk expectation is that a
  model is refitted by the code that produced it, and the demo's credit-risk trainer did not
  produce a model with other features. Any other model is refused with what to do instead,
  rather than silently becoming a credit-risk model.
- A model with no registered version yet trains with the default, as a first version always
  has (the validation gate and registration judge it like any other candidate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry_core.card import Card, InputSchema
from ferry_core.errors import ModelNotFound
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.registration import model_prefix
from ferry_core.retrain.candidate import DEFAULT_ENTRY_POINT
from ferry_core.retrain.trainer_api import TrainingFailed
from ferry_core.trainer_files import TrainerFiles, TrainerMismatch, card_trainer, check_pins


@dataclass(frozen=True)
class TrainerChoice:
    """The trainer of one run: an image entry point, or an owner's verified files."""

    entry_point: str
    files: TrainerFiles | None = None  # the owner's file and lock (run isolated)
    source_version: int | None = None  # the registered version they come from
    uri: str | None = None  # where the file was read

    @property
    def isolated(self) -> bool:
        return self.files is not None


def source_card(reader: RegistryReader, model: str) -> Card | None:
    """The production version's card, else the latest registered version's, else None."""
    try:
        pointer = reader.fresh_pointer(model, "production")
        if pointer is not None:
            return reader.card(model, pointer.version)
        cards = reader.versions(model)
    except ModelNotFound:
        return None
    return max(cards, key=lambda c: c.version) if cards else None


def same_kind(a: InputSchema, b: InputSchema) -> bool:
    """Same input features with the same types, in any order."""
    return sorted((f.name, f.type) for f in a.features) == sorted(
        (f.name, f.type) for f in b.features
    )


def choose_trainer(
    s3: Any,
    reader: RegistryReader,
    bucket: str,
    model: str,
    entry_point: str | None,
    default_schema: InputSchema,
) -> TrainerChoice:
    """The trainer for a run of `model` (see the module docstring for the rules)."""
    if entry_point:
        return TrainerChoice(entry_point)
    card = source_card(reader, model)
    if card is None:
        return TrainerChoice(DEFAULT_ENTRY_POINT)
    ref = card_trainer(card)
    if ref is None:
        if same_kind(card.input_schema, default_schema):
            return TrainerChoice(DEFAULT_ENTRY_POINT)
        raise TrainingFailed(
            f"{model} v{card.version} was registered without a trainer and is not the built-in "
            f"trainer's kind of model (its input features differ), so there is no code to "
            f"retrain it with: register a version with --trainer FILE.py --trainer-lock LOCK, "
            f"or name a trainer of the training image with --entry-point"
        )
    prefix = model_prefix(model, card.version)
    try:
        files = TrainerFiles.get(s3, bucket, prefix, ref)
        check_pins(files.lock)
    except TrainerMismatch as exc:
        raise TrainingFailed(exc.message) from exc
    return TrainerChoice(
        ref.entry_point,
        files,
        card.version,
        f"s3://{bucket}/{prefix}/trainer/{ref.entry_point.partition(':')[0]}",
    )
