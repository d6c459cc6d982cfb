"""ONNX files that try to read outside themselves, and the watchers that would see them do it.

`corpus` writes models whose tensors point at external data (absolute paths, `..`, symlinks,
device files, a sentinel file outside the model folder) from every placement a tensor can
take (`ferry_bench.onnx_placements`); `Inotify` and `OpenAudit` record
every file the process opens while one is loaded, so a read outside the model is observed,
not assumed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
from pathlib import Path
from typing import Any, ClassVar

from ferry_bench.onnx_placements import PLACEMENTS, placement_model


def _external_tensor(name: str, location: str | None, dtype: str = "float32") -> Any:
    """A [4] tensor whose data is 'external': at `location` (None: no location)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    t = numpy_helper.from_array(np.ones((4,), dtype=dtype), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    if location is not None:
        for key, value in {"location": location, "offset": "16", "length": "16"}.items():
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    return t


def model_file(placement: str, location: str | None) -> bytes:
    """A small valid-looking model with an external tensor in `placement` (onnx_placements)."""

    def external(name: str, dtype: str) -> Any:
        return _external_tensor(name, location, dtype)

    return placement_model(placement, external).SerializeToString()


def corpus(outside: Path) -> list[tuple[str, bytes]]:
    """(label, bytes) of every malicious file: each placement × each way out of the folder."""
    sentinel = outside / "secret.bin"
    locations: list[tuple[str, str | None]] = [
        ("absolute path", str(sentinel)),
        ("../ path", f"../{outside.name}/secret.bin"),
        ("./../ path", f"./../{outside.name}/secret.bin"),
        ("sub/../../ path", f"sub/../../{outside.name}/secret.bin"),
        ("backslash ..\\ path", f"..\\{outside.name}\\secret.bin"),
        ("symlink in the folder", "weights.bin"),
        ("/proc/self/root path", f"/proc/self/root{sentinel}"),
        ("no location", None),
    ]
    return [
        (f"{where}, {how}", model_file(where, location))
        for where in PLACEMENTS
        for how, location in locations
    ]


class Inotify:
    """Kernel-level open/read events on watched paths (Linux), via libc; no extra package."""

    IN_ACCESS = 0x001
    IN_OPEN = 0x020

    def __init__(self) -> None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(name, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._watches: dict[int, str] = {}

    def watch(self, path: Path) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN | self.IN_ACCESS)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path} failed")
        self._watches[wd] = str(path)

    def events(self) -> list[str]:
        """Drain the queue: one `path[/name]` per open or read since the last call."""
        found: list[str] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            pos = 0
            while pos < len(buf):
                wd, _mask, _cookie, size = struct.unpack_from("iIII", buf, pos)
                name = buf[pos + 16 : pos + 16 + size].rstrip(b"\0").decode(errors="replace")
                found.append(self._watches.get(wd, "?") + (f"/{name}" if name else ""))
                pos += 16 + size

    def close(self) -> None:
        os.close(self.fd)


class OpenAudit:
    """Python-level `open` events under `root`, recorded while `recording` (an audit hook)."""

    _hooked: ClassVar[list[OpenAudit]] = []

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())
        self.recording = False
        self.paths: list[str] = []
        if not OpenAudit._hooked:
            sys.addaudithook(OpenAudit._hook)  # hooks cannot be removed: one per process
        OpenAudit._hooked.append(self)

    @staticmethod
    def _hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not OpenAudit._hooked:
            return
        path = args[0]
        if not isinstance(path, str | bytes | os.PathLike):
            return
        for audit in OpenAudit._hooked:
            if audit.recording:
                full = os.path.realpath(os.fsdecode(path))
                if full.startswith(audit.root + os.sep) or full == audit.root:
                    audit.paths.append(full)

    def close(self) -> None:
        self.recording = False
        OpenAudit._hooked.remove(self)
