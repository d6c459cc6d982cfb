"""An owner's trainer: its file and lock, their hashes, where they are stored, and the checks a
retraining run makes before running them (the interface: `ferry_core/retrain/trainer_api.py`).

The two files travel together, each under a fixed name so no owner-chosen path reaches S3:
in a candidate bundle at `candidates/{model}/{run_id}/trainer/`, then beside the registered
version at `models/{model}/v{n}/trainer/`, and the card's lineage records both sha256. A run
fetches them from the version it retrains from and proves, before anything runs:
- both files hash to what the card records (nothing was swapped after registration);
- every pin of the lock is what the training image has installed. Nothing is installed at run
  time (a Lambda image is read-only and reaching a package index is neither reproducible nor
  reviewable), so a trainer written against other versions fails with the one package named.
This module imports neither pandas nor scikit-learn, nor the retraining package: registration
uses it too.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field

from ferry_core.card import Card, Lineage
from ferry_core.errors import FerryError
from ferry_core.store import sha256_hex

TRAINER_DIR = "trainer"
# The module-level name a trainer file defines (ferry_core/retrain/trainer_api.py).
TRAINER_ATTRIBUTE = "Trainer"
MODULE_FILE = "trainer.py"
LOCK_FILE = "requirements.lock"
MAX_MODULE_BYTES = 1024 * 1024
MAX_LOCK_BYTES = 256 * 1024
SHA256 = r"^[0-9a-f]{64}$"
# `name==version`, optionally with extras and an environment marker; `--hash` lines are allowed.
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*(?P<version>[^\s;\\]+)"
    r"\s*(;(?P<marker>[^\\]*))?\\?$"
)


class TrainerRefused(FerryError):
    """A trainer file or lock that cannot be registered (unpinned lock, too large, not Python)."""

    code = "bad_request"


class TrainerMismatch(FerryError):
    """A registered trainer that a run must not use: changed since registration, missing, or
    written against other package versions than the training image has."""

    code = "training_failed"


class TrainerRef(BaseModel):
    """A trainer in a candidate spec: what its two files hash to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module_sha256: str = Field(pattern=SHA256)
    lock_sha256: str = Field(pattern=SHA256)
    entry_point: str = f"{MODULE_FILE}:{TRAINER_ATTRIBUTE}"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str


@dataclass(frozen=True)
class TrainerFiles:
    """A trainer's file and lock, as bytes."""

    module: bytes
    lock: bytes

    @classmethod
    def from_paths(cls, module: Path, lock: Path) -> TrainerFiles:
        """Read and check the owner's files (`ferry register --trainer --trainer-lock`)."""
        if module.suffix != ".py":
            raise TrainerRefused(f"--trainer {module} is not a Python file (.py)")
        files = cls(module.read_bytes(), lock.read_bytes())
        files.check()
        return files

    def check(self) -> None:
        """Refuse what a run could never use: oversized files, a module that does not
        compile, a lock with a line that is not an exact pin."""
        if len(self.module) > MAX_MODULE_BYTES or len(self.lock) > MAX_LOCK_BYTES:
            raise TrainerRefused(
                f"a trainer is one file of at most {MAX_MODULE_BYTES} bytes and a lock of at "
                f"most {MAX_LOCK_BYTES} bytes"
            )
        try:
            compile(self.module, MODULE_FILE, "exec")
        except (SyntaxError, ValueError) as exc:
            raise TrainerRefused(f"the trainer file does not compile: {exc}") from exc
        parse_lock(self.lock.decode("utf-8", errors="replace"))

    @property
    def ref(self) -> TrainerRef:
        return TrainerRef(module_sha256=sha256_hex(self.module), lock_sha256=sha256_hex(self.lock))

    def put(self, s3: Any, bucket: str, prefix: str, put: Callable[..., Any] | None = None) -> str:
        """Write both files under `{prefix}/trainer/`; returns the module's S3 URI.

        `put(s3, bucket, key, body, content_type)` writes one object (registration passes its
        never-overwrite writer); by default a plain PutObject (a candidate bundle)."""
        for name, body, kind in (
            (MODULE_FILE, self.module, "text/x-python"),
            (LOCK_FILE, self.lock, "text/plain"),
        ):
            key = f"{prefix}/{TRAINER_DIR}/{name}"
            if put is None:
                s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)
            else:
                put(s3, bucket, key, body, kind)
        return f"s3://{bucket}/{prefix}/{TRAINER_DIR}/{MODULE_FILE}"

    @classmethod
    def get(cls, s3: Any, bucket: str, prefix: str, ref: TrainerRef) -> TrainerFiles:
        """Read both files from `{prefix}/trainer/`, each proven to hash to `ref`'s sha256."""
        got = {}
        for name, want, limit in (
            (MODULE_FILE, ref.module_sha256, MAX_MODULE_BYTES),
            (LOCK_FILE, ref.lock_sha256, MAX_LOCK_BYTES),
        ):
            key = f"{prefix}/{TRAINER_DIR}/{name}"
            try:  # never more than a trainer file may hold, whatever the object is
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(limit + 1)
            except s3.exceptions.NoSuchKey as exc:
                raise TrainerMismatch(f"s3://{bucket}/{key} does not exist") from exc
            if len(body) > limit or sha256_hex(body) != want:
                raise TrainerMismatch(
                    f"s3://{bucket}/{key} does not hash to the sha256 recorded for it: the "
                    "trainer was changed after it was recorded; not used"
                )
            got[name] = body
        return cls(got[MODULE_FILE], got[LOCK_FILE])


def parse_lock(text: str) -> list[Pin]:
    """The pins of a lock that apply on this platform; any other line is refused."""
    pins = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line or line.startswith("--hash="):
            continue
        match = _PIN.match(line)
        if match is None:
            raise TrainerRefused(
                f"trainer lock line {number} is not a pin 'name==version': {raw.strip()[:120]!r}"
            )
        marker = (match.group("marker") or "").strip()
        try:
            if marker and not Marker(marker).evaluate():
                continue
            Version(match.group("version"))
        except (InvalidMarker, InvalidVersion) as exc:
            raise TrainerRefused(f"trainer lock line {number}: {exc}") from exc
        pins.append(Pin(canonicalize_name(match.group("name")), match.group("version")))
    return pins


def installed_version(name: str) -> str | None:
    """The version of distribution `name` this interpreter has installed, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_pins(
    lock: bytes, installed: Callable[[str], str | None] = installed_version
) -> list[Pin]:
    """Every pin of `lock` satisfied by what is installed, or `TrainerMismatch` for the first
    that is not, in one sentence naming the package, the version wanted and the one installed."""
    try:
        pins = parse_lock(lock.decode("utf-8", errors="replace"))
    except TrainerRefused as exc:
        raise TrainerMismatch(exc.message) from exc
    for pin in pins:
        have = installed(pin.name)
        if have is None or Version(have) != Version(pin.version):
            raise TrainerMismatch(
                f"the trainer's lock pins {pin.name}=={pin.version} but the training image has "
                f"{'no ' + pin.name if have is None else pin.name + ' ' + have} installed, and "
                "packages cannot be installed at run time: register the trainer with a lock of "
                "the image's versions"
            )
    return pins


def card_trainer(card: Card) -> TrainerRef | None:
    """The trainer a registered version records in its lineage, if any."""
    lin = card.lineage
    if not (lin.trainer_sha256 and lin.trainer_lock_sha256):
        return None
    return TrainerRef(
        module_sha256=lin.trainer_sha256,
        lock_sha256=lin.trainer_lock_sha256,
        entry_point=lin.entry_point or f"{MODULE_FILE}:{TRAINER_ATTRIBUTE}",
    )


def with_trainer(lineage: Lineage, ref: TrainerRef, uri: str | None) -> Lineage:
    """`lineage` recording the trainer: both sha256, its entry point and where its file is."""
    return lineage.model_copy(
        update={
            "trainer_sha256": ref.module_sha256,
            "trainer_lock_sha256": ref.lock_sha256,
            "trainer_uri": uri,
            "entry_point": ref.entry_point,
        }
    )
