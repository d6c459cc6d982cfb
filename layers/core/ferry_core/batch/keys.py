"""Where batch files live: parsing an incoming key and naming every output (DESIGN.md §3.4).

`batch/incoming/{model}[@{version}]/{path}.{csv|jsonl|parquet}` →
`batch/scored/{model}/{path}.{same}`, `batch/rejected/{model}/{path}.jsonl`,
`batch/manifests/{model}/{path}.json`, and `batch/staging/{run_id}/…` for fanned-out parts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ferry_core.errors import FerryError
from ferry_core.names import is_model_name

# The data bucket's batch prefixes (infra/retention.py gives each its lifecycle rule).
INCOMING = "batch/incoming/"
SCORED = "batch/scored/"
REJECTED = "batch/rejected/"
MANIFESTS = "batch/manifests/"
STAGING = "batch/staging/"
Format = Literal["csv", "jsonl", "parquet"]
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
OUTPUT_EXTENSION: dict[Format, str] = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
VERSION_TAG = "ferry-model-version"

_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")


class BatchFileError(FerryError):
    """The file cannot be scored as uploaded (name, format, header, content): no retry helps."""

    code = "bad_request"


@dataclass(frozen=True)
class ObjectRef:
    """One version of one uploaded object, as an S3 event names it.

    `version_id` is None when the bucket is unversioned (and in moto's events); the run then
    keys on the ETag, which S3 changes whenever the bytes change.
    """

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None

    @property
    def identity(self) -> str:
        """What makes two deliveries "the same upload": bucket, key and version (or ETag)."""
        return f"{self.bucket}/{self.key}#{self.version_id or 'etag:' + (self.etag or '')}"

    def get_kwargs(self) -> dict[str, Any]:
        """GetObject arguments pinned to exactly this version of the object."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            kwargs["VersionId"] = self.version_id
        elif self.etag:
            kwargs["IfMatch"] = f'"{self.etag.strip(chr(34))}"'
        return kwargs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchKey:
    """A parsed incoming key: the model, an optional pinned version, the path and the format."""

    model: str
    version: int | None
    path: str
    format: Format

    @property
    def scored(self) -> str:
        return f"{SCORED}{self.model}/{self.path}{OUTPUT_EXTENSION[self.format]}"

    @property
    def rejected(self) -> str:
        return f"{REJECTED}{self.model}/{self.path}.jsonl"

    @property
    def manifest(self) -> str:
        return manifest_key(self.model, self.path)


def manifest_key(model: str, path: str) -> str:
    return f"{MANIFESTS}{model}/{path}.json"


def is_incoming(key: str) -> bool:
    """An object batch scoring should look at: under incoming/, and not a folder placeholder."""
    return key.startswith(INCOMING) and not key.endswith("/")


def _model_prefix(head: str) -> tuple[str, int | None] | None:
    """`{model}` or `{model}@{version}` → (model, version), else None."""
    model, at, version = head.partition("@")
    if not is_model_name(model) or (at and _VERSION.fullmatch(version) is None):
        return None
    return model, int(version) if at else None


def parse_key(key: str) -> BatchKey:
    """The model, pinned version, path and format of an incoming key, or BatchFileError."""
    if not key.startswith(INCOMING):
        raise BatchFileError(f"{key!r} is not under {INCOMING}")
    rest = key[len(INCOMING) :]
    head, sep, tail = rest.partition("/")
    if not sep or not tail:
        raise BatchFileError(f"upload to {INCOMING}{{model}}/{{file}}, not {key!r}")
    pinned = _model_prefix(head)
    if pinned is None:
        raise BatchFileError(f"{head!r} is not a model name (optionally @version)")
    stem, dot, ext = tail.rpartition(".")
    fmt = EXTENSIONS.get(f".{ext.lower()}") if dot else None
    if fmt is None or not stem:
        known = ", ".join(sorted(EXTENSIONS))
        raise BatchFileError(f"{tail!r}: the file type must be one of {known}")
    return BatchKey(model=pinned[0], version=pinned[1], path=stem, format=fmt)


def failure_manifest_key(key: str) -> str:
    """Where the failed manifest of an unparseable incoming key goes (never a silent drop)."""
    rest = key[len(INCOMING) :] if key.startswith(INCOMING) else key
    head, sep, tail = rest.partition("/")
    pinned = _model_prefix(head)
    if sep and tail and pinned is not None:
        return manifest_key(pinned[0], tail)
    return manifest_key("_unrouted", rest or "_empty")


def run_id(obj: ObjectRef) -> str:
    """A short deterministic id of one upload: names its staging prefix and its fan-out run."""
    return hashlib.sha256(obj.identity.encode()).hexdigest()[:32]
