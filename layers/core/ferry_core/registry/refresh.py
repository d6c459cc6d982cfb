"""Keep a warm scorer's stage pointers fresh without a read on the request path.

A scoring container caches stage pointers and canaries (`RegistryReader`, TTL
`REGISTRY_CACHE_SECONDS`). A daemon thread re-reads them every `interval` seconds in one
BatchGetItem (`RegistryReader.refresh`), so a promotion or a rollback reaches every warm
container in about `interval` plus one read, whatever the TTL. A request never waits for it: it
reads the cache as before, and the refresh only replaces entries. When reads fail the entries
age, and the TTL is the fallback: past it, a request reads the registry itself.

Why a poll and not a notification: an EventBridge rule that targets the scoring function
invokes ONE execution environment per event, so a rule cannot reach every warm container; a
poll by each container can. On Lambda a container is frozen between invocations and its
thread with it: a container frozen through a change answers its first request after the thaw
from the pointer it held (never older than the TTL) while the refresh that the thaw wakes is in
flight, and the requests after that read from the new pointer.

Cost: one consistent BatchGetItem per container per `interval` (1 read unit per cached key,
a stage pointer and a canary per model served), and on the request path nothing but the GIL
the refresh holds while botocore builds and parses its request (`ferry bench refresh`).
"""

from __future__ import annotations

import threading
from typing import Protocol

from ferry_core.errors import FerryError


class Refreshable(Protocol):
    def refresh(self) -> int: ...


class PointerRefresher:
    """Calls `reader.refresh()` every `interval` seconds on a daemon thread."""

    def __init__(self, reader: Refreshable, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"a refresh interval must be positive, not {interval}")
        self.reader = reader
        self.interval = interval
        self.refreshes = 0  # successful refreshes
        self.failures = 0  # consecutive failed ones (0 after a success)
        self.last_error: str | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        """One refresh; a failure is counted and kept, never raised (the TTL covers it)."""
        try:
            self.reader.refresh()
        except Exception as exc:  # the thread must outlive any failure: the TTL covers it
            self.failures += 1
            self.last_error = exc.message if isinstance(exc, FerryError) else repr(exc)
            return False
        self.refreshes += 1
        self.failures = 0
        return True

    def start(self) -> PointerRefresher:
        """Start the thread (once); it never delays a request and dies with the process."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="registry-refresh", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.tick()
