"""Streaming S3 I/O: hashed sequential reads, ranged random access, atomic multipart writes.

Nothing here holds a whole file: reads come in blocks, writes go out in parts, so a batch
run's memory is a few blocks and a few parts whatever the file size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from typing import Any

from ferry_core.batch.keys import ObjectRef

PART_BYTES = 8 * 1024 * 1024  # S3 parts must be ≥ 5 MiB except the last


def client_code(exc: Exception) -> str | None:
    """The error code of a failed S3 call (`NoSuchKey`, `404`, …), None for any other error."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


class HashingReader(io.RawIOBase):
    """A read-only stream over an S3 body that hashes (sha256) and counts what passes through."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes += n
        return n

    def drain(self, block: int = 1 << 20) -> None:
        """Read (and hash) whatever the consumer left unread."""
        while self.read(block):
            pass


def open_stream(s3: Any, obj: ObjectRef, byte_range: tuple[int, int] | None = None) -> Any:
    """A buffered, hashing stream over one pinned version of an object (or a byte range of it)."""
    kwargs = obj.get_kwargs()
    if byte_range is not None:
        kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
    body = s3.get_object(**kwargs)["Body"]
    return io.BufferedReader(HashingReader(body), buffer_size=1 << 20)


class RangeFile(io.RawIOBase):
    """Random access to one object version through ranged GETs (Parquet reads its footer first)."""

    def __init__(self, s3: Any, obj: ObjectRef, size: int) -> None:
        self._s3 = s3
        self._obj = obj
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        kwargs = self._obj.get_kwargs() | {"Range": f"bytes={self._pos}-{end - 1}"}
        data = self._s3.get_object(**kwargs)["Body"].read()
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


class MultipartWriter(io.RawIOBase):
    """Writes one object in parts; it appears only when `commit()` completes the upload.

    A crash before `commit()` leaves no object (only an incomplete upload, which `abort()` or
    the bucket's lifecycle rule removes), so a reader never sees half a result file. A small
    output is one PutObject, which is atomic too.
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        content_type: str = "application/octet-stream",
        part_bytes: int = PART_BYTES,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._type = content_type
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._written = 0
        self.committed = False

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self._part_bytes:
            self._upload(bytes(self._buffer[: self._part_bytes]))
            del self._buffer[: self._part_bytes]
        return len(view)

    def close(self) -> None:
        """pyarrow writers close their sink; completing the upload is `commit()`'s job."""

    def _upload(self, data: bytes) -> None:
        if self._upload_id is None:
            resp = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._type
            )
            self._upload_id = resp["UploadId"]
        number = len(self._parts) + 1
        resp = self._s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def commit(self) -> None:
        """Publish the object (atomically: all of it or, before this call, nothing)."""
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), ContentType=self._type
            )
        else:
            if self._buffer:
                self._upload(bytes(self._buffer))
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()
        self.committed = True

    def abort(self) -> None:
        """Drop an unfinished upload (best effort: the lifecycle rule is the backstop)."""
        if self._upload_id is not None and not self.committed:
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )
        self._buffer.clear()
