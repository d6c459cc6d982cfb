"""Anchors: the head hash of a model's chain after each append, in an S3 bucket with Object
Lock in compliance mode. Someone who can rewrite the audit table, and recompute every hash so
the chain looks intact, still cannot change the anchors, and verification compares with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ferry_core.audit.table import AuditEntry, canonical
from ferry_core.clock import now_iso

ANCHOR_PREFIX = "anchors/"


@dataclass(frozen=True)
class Anchor:
    """The head of a model's chain as it was when an entry was appended."""

    model: str
    seq: int
    hash: str
    at: str
    versions: int = 1  # S3 object versions under this key; more than one is itself tampering


class AnchorStore:
    """Head hashes in an S3 bucket with Object Lock (compliance mode, default retention).

    One object per entry, `anchors/{model}/{seq:012d}.json`, written with `If-None-Match: *`.
    The bucket's default retention locks each one; no principal can delete or shorten it.
    """

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    @staticmethod
    def key(model: str, seq: int) -> str:
        return f"{ANCHOR_PREFIX}{model}/{seq:012d}.json"

    def write(self, entry: AuditEntry) -> None:
        """Anchor `entry`; an anchor already there is fine only if it is this very entry's.

        botocore retries a PutObject whose answer was lost; the retry then meets the object
        the first attempt created (412): that is a success, not a failed anchor.
        """
        body = canonical(
            {"model": entry.model, "seq": entry.seq, "hash": entry.hash, "at": now_iso()}
        )
        key = self.key(entry.model, entry.seq)
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code not in ("PreconditionFailed", "412"):
                raise
            there = json.loads(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            if (there.get("seq"), there.get("hash")) != (entry.seq, entry.hash):
                raise

    def anchors(self, model: str) -> list[Anchor]:
        """Every anchor of `model`, oldest first, read from the OLDEST version of each key.

        A later version of an anchor key can only be an attempt to rewrite it; it is counted
        (and reported by `verify`) but never believed.
        """
        oldest: dict[str, tuple[str, int]] = {}  # key -> (version id, versions seen)
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{ANCHOR_PREFIX}{model}/"):
            for v in page.get("Versions", []):
                # Versions of a key are listed newest first: the last one seen is the oldest.
                seen = oldest.get(v["Key"], ("", 0))[1]
                oldest[v["Key"]] = (v["VersionId"], seen + 1)
        out = []
        for key in sorted(oldest):
            vid, count = oldest[key]
            obj = self._s3.get_object(Bucket=self.bucket, Key=key, VersionId=vid)
            data = json.loads(obj["Body"].read())
            out.append(Anchor(data["model"], int(data["seq"]), data["hash"], data["at"], count))
        return out
