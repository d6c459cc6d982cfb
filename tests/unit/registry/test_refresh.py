"""The background refresh of cached stage pointers: a rollback reaches a reader whose cache
has not expired, a failing refresh leaves the TTL as the fallback, no request ever waits.

The clock is a value the test sets; nothing here asserts on elapsed time."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ferry_core.errors import ModelUnavailable
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.refresh import PointerRefresher
from ferry_core.registry.writer import RegistryWriter
from ferry_core.serving.scoring import ScoringService
from ferry_core.settings import ScoringSettings

MODEL = "credit-risk"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """The DynamoDB client, with BatchGetItem failing or leaving keys unprocessed on demand."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.fail = False
        self.leave_unprocessed = False
        self.batch_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.batch_calls += 1
        if self.fail:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://dynamodb")
        if self.leave_unprocessed:
            return {"Responses": {}, "UnprocessedKeys": kwargs["RequestItems"]}
        return self._client.batch_get_item(**kwargs)


def _second_version(built: Any, aws: Any, boto: dict[str, Any], writer: RegistryWriter) -> int:
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built

    card = register_built(built, MODEL, boto["s3"], aws.model_bucket, writer, Lineage())
    return card.version


def _reader(client: Any, aws: Any, clock: Clock, ttl: float = 30.0) -> RegistryReader:
    return RegistryReader(client, aws.registry_table, pointer_ttl_seconds=ttl, clock=clock)


def test_a_refresh_brings_a_stage_move_into_an_unexpired_cache(
    aws: Any, boto: dict[str, Any], built: Any, registered: Any
) -> None:
    """Given a reader with a 30 s cache serving v1, when production moves to v2 and then back,
    then the cached pointer is unchanged until a refresh, and each refresh brings the move in
    while the clock stands still."""
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    v2 = _second_version(built, aws, boto, writer)
    clock = Clock()
    reader = _reader(boto["dynamodb"], aws, clock)
    assert reader.resolve(MODEL).version == 1
    assert reader.canary(MODEL) is None
    moved = writer.set_stage(MODEL, "production", v2, 1, actor="tests")
    assert reader.resolve(MODEL).version == 1  # cached, as before
    assert reader.refresh() == 2  # the production pointer and the canary, in one batch
    assert reader.resolve(MODEL).version == v2
    writer.set_stage(MODEL, "production", 1, moved.revision, actor="tests")
    assert reader.refresh() == 2
    assert reader.resolve(MODEL).version == 1


def test_a_refresh_brings_a_canary_in_and_out(
    aws: Any, boto: dict[str, Any], built: Any, registered: Any
) -> None:
    """Given a cached 'no canary', when a canary starts and then ends, each refresh shows it."""
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    v2 = _second_version(built, aws, boto, writer)
    reader = _reader(boto["dynamodb"], aws, Clock())
    reader.resolve(MODEL)
    assert reader.canary(MODEL) is None
    boto["dynamodb"].transact_write_items(
        TransactItems=[writer.canary_put_item(MODEL, v2, 10, "tests", "run-1")]
    )
    reader.refresh()
    assert (reader.canary(MODEL).version, reader.canary(MODEL).percent) == (v2, 10)
    boto["dynamodb"].transact_write_items(TransactItems=[writer.canary_delete_item(MODEL, v2)])
    reader.refresh()
    assert reader.canary(MODEL) is None


def test_names_that_never_resolved_are_not_refreshed(
    aws: Any, boto: dict[str, Any], registered: Any
) -> None:
    """Given requests for a model that does not exist, then the refresh does not re-read it
    (a stream of made-up names must not turn into reads every second)."""
    reader = _reader(boto["dynamodb"], aws, Clock())
    with pytest.raises(Exception, match="no model named"):
        reader.resolve("no-such-model")
    assert reader.refresh() == 0
    reader.resolve(MODEL)
    assert reader.refresh() == 1


def test_a_read_that_started_earlier_never_replaces_a_newer_entry(
    aws: Any, boto: dict[str, Any], built: Any, registered: Any
) -> None:
    """Given an entry cached by a read that started at t=100, when a refresh whose read
    started at t=90 returns, then the entry stays (overlapping reads cannot go backwards)."""
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    v2 = _second_version(built, aws, boto, writer)
    clock = Clock()
    reader = _reader(boto["dynamodb"], aws, clock)
    reader.resolve(MODEL)
    writer.set_stage(MODEL, "production", v2, 1, actor="tests")
    clock.now = 90.0
    reader.refresh()
    clock.now = 100.0
    assert reader.resolve(MODEL).version == 1
    clock.now = 101.0
    reader.refresh()
    assert reader.resolve(MODEL).version == v2


def test_when_refreshes_fail_the_ttl_is_the_fallback(
    aws: Any, boto: dict[str, Any], built: Any, registered: Any
) -> None:
    """Given refreshes that cannot read the registry (or whose keys come back unprocessed),
    then the refresher counts the failure and keeps running, the cached pointer is served
    until its TTL, and past the TTL a request reads the registry itself."""
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    v2 = _second_version(built, aws, boto, writer)
    flaky, clock = Flaky(boto["dynamodb"]), Clock()
    reader = _reader(flaky, aws, clock)
    refresher = PointerRefresher(reader, 1.0)
    reader.resolve(MODEL)
    writer.set_stage(MODEL, "production", v2, 1, actor="tests")
    flaky.fail = True
    assert refresher.tick() is False and refresher.tick() is False
    assert refresher.failures == 2 and "dynamodb" in (refresher.last_error or "")
    flaky.fail, flaky.leave_unprocessed = False, True
    assert refresher.tick() is True  # unprocessed keys keep their entry: it ages
    clock.now += 29.0
    assert reader.resolve(MODEL).version == 1
    clock.now += 1.0
    assert reader.resolve(MODEL).version == v2
    assert refresher.failures == 0 and refresher.refreshes == 1


def test_a_request_never_waits_for_a_refresh_in_flight(
    aws: Any, boto: dict[str, Any], registered: Any
) -> None:
    """Given a refresh blocked inside its BatchGetItem, then a request still resolves from
    the cache (the refresh holds no lock a request takes while it reads)."""
    inside, release = threading.Event(), threading.Event()

    class Blocking(Flaky):
        def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
            inside.set()
            release.wait(30)
            return super().batch_get_item(**kwargs)

    reader = _reader(Blocking(boto["dynamodb"]), aws, Clock())
    reader.resolve(MODEL)
    refresh = threading.Thread(target=reader.refresh)
    refresh.start()
    try:
        assert inside.wait(30)
        assert reader.resolve(MODEL).version == 1
    finally:
        release.set()
        refresh.join(30)


def test_the_refresher_thread_refreshes_until_stopped() -> None:
    """Given a started refresher, then it calls the reader's refresh repeatedly on its own
    thread, and stops when told; a failing reader does not end the thread."""
    calls: list[int] = []
    twice = threading.Event()

    class Reader:
        def refresh(self) -> int:
            calls.append(threading.get_ident())
            if len(calls) >= 3:
                twice.set()
            if len(calls) == 1:
                raise ModelUnavailable("the registry cannot be read right now")
            return 0

    refresher = PointerRefresher(Reader(), 0.001).start()
    assert twice.wait(30)
    refresher.stop(30)
    assert threading.get_ident() not in calls
    assert refresher.refreshes >= 2
    with pytest.raises(ValueError, match="positive"):
        PointerRefresher(Reader(), 0)


def test_the_scoring_service_starts_a_refresher_when_its_settings_ask(
    aws: Any, boto: dict[str, Any]
) -> None:
    """Given the scoring settings with and without REGISTRY_REFRESH_SECONDS, then the service
    runs a refresher of its own reader only when asked."""
    env = {
        "FERRY_ENV": "local",
        "MODEL_BUCKET": aws.model_bucket,
        "REGISTRY_TABLE": aws.registry_table,
    }
    plain = ScoringSettings.from_env(env)
    assert plain.registry_refresh_seconds == 0
    assert ScoringService.from_settings(plain, boto["dynamodb"], boto["s3"]).refresher is None
    asked = ScoringSettings.from_env({**env, "REGISTRY_REFRESH_SECONDS": "0.5"})
    service = ScoringService.from_settings(
        asked, boto["dynamodb"], boto["s3"], asked.registry_refresh_seconds
    )
    assert service.refresher is not None
    assert (service.refresher.reader, service.refresher.interval) == (service.registry, 0.5)
    service.refresher.stop(30)
