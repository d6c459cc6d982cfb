"""The registry: immutable versions, conditional stage moves, briefly cached pointers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ferry_core.card import Artifact, Card, Feature, InputSchema
from ferry_core.errors import ModelNotFound, RegistryConflict, VersionNotFound
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.writer import RegistryWriter


def _card(name: str, version: int) -> Card:
    return Card(
        name=name,
        version=version,
        input_schema=InputSchema(features=[Feature(name="x", type="number")]),
        artifact=Artifact(
            uri=f"s3://b/models/{name}/v{version}/model.onnx", sha256="a" * 64, size=1
        ),
    )


@pytest.fixture
def writer(aws, boto) -> RegistryWriter:
    return RegistryWriter(boto["dynamodb"], aws.registry_table)


def _register(writer: RegistryWriter, name: str = "m") -> Card:
    card = _card(name, writer.allocate_version(name))
    writer.put_version(card)
    return card


def test_versions_are_numbered_and_never_overwritten(writer: RegistryWriter) -> None:
    assert [_register(writer).version for _ in range(3)] == [1, 2, 3]
    with pytest.raises(RegistryConflict):
        writer.put_version(_card("m", 2))


def test_resolve_production_pinned_and_missing(aws, boto, writer: RegistryWriter) -> None:
    _register(writer)
    _register(writer)
    reader = RegistryReader(boto["dynamodb"], aws.registry_table, pointer_ttl_seconds=0)
    with pytest.raises(ModelNotFound, match="no production version"):
        reader.resolve("m")
    writer.set_stage("m", "production", 2, None, actor="t")
    assert reader.resolve("m").version == 2
    assert reader.resolve("m", version=1).version == 1
    with pytest.raises(VersionNotFound):
        reader.resolve("m", version=9)
    with pytest.raises(ModelNotFound, match="no model named"):
        reader.resolve("other")
    with pytest.raises(ModelNotFound, match="no model named"):
        reader.resolve("other", version=1)
    with pytest.raises(ModelNotFound, match="no staging version"):
        reader.resolve("m", stage="staging")


def test_stage_moves_are_optimistically_locked(writer: RegistryWriter) -> None:
    for _ in range(3):
        _register(writer)
    first = writer.set_stage("m", "production", 1, None, actor="a")
    with pytest.raises(RegistryConflict):
        writer.set_stage("m", "production", 2, None, actor="b")  # thinks there is no pointer
    second = writer.set_stage("m", "production", 2, first.revision, actor="b")
    with pytest.raises(RegistryConflict):
        writer.set_stage("m", "production", 3, first.revision, actor="c")  # stale revision
    assert second.revision == 2


def test_stage_cannot_point_at_a_missing_version(writer: RegistryWriter) -> None:
    _register(writer)
    with pytest.raises(RegistryConflict):
        writer.set_stage("m", "production", 7, None, actor="a")


def test_concurrent_promoters_leave_one_consistent_pointer(
    aws, boto, writer: RegistryWriter
) -> None:
    for _ in range(5):
        _register(writer)
    start = writer.set_stage("m", "production", 1, None, actor="seed")
    winners: list[int] = []

    def promote(version: int) -> None:
        try:
            writer.set_stage("m", "production", version, start.revision, actor=f"p{version}")
            winners.append(version)
        except RegistryConflict:
            pass

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(2, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = RegistryReader(boto["dynamodb"], aws.registry_table)
    assert len(winners) == 1
    assert reader.resolve("m").version == winners[0]


def test_pointer_cache_sees_a_promotion_after_its_ttl(aws, boto, writer: RegistryWriter) -> None:
    _register(writer)
    _register(writer)
    p = writer.set_stage("m", "production", 1, None, actor="t")
    now = [0.0]
    reader = RegistryReader(boto["dynamodb"], aws.registry_table, 5.0, clock=lambda: now[0])
    assert reader.resolve("m").version == 1
    writer.set_stage("m", "production", 2, p.revision, actor="t")
    now[0] = 4.9
    assert reader.resolve("m").version == 1  # cached: no read per request
    now[0] = 5.0
    assert reader.resolve("m").version == 2  # seen within the TTL


def test_models_listing(aws, boto, writer: RegistryWriter) -> None:
    _register(writer, "a")
    _register(writer, "b")
    _register(writer, "b")
    writer.set_stage("b", "staging", 2, None, actor="t")
    listing: list[dict[str, Any]] = RegistryReader(boto["dynamodb"], aws.registry_table).models()
    assert listing == [
        {"name": "a", "stages": {"production": None, "staging": None}, "latest_version": 1},
        {"name": "b", "stages": {"production": None, "staging": 2}, "latest_version": 2},
    ]


@pytest.mark.parametrize("name", ["", "UPPER", "a" * 64, "x" * 3000, "../etc", "a b", "-lead"])
def test_names_that_cannot_exist_are_not_found_without_a_read(aws, boto, name: str) -> None:
    with pytest.raises(ModelNotFound):
        RegistryReader(boto["dynamodb"], aws.registry_table).resolve(name)


def test_registry_outage_is_model_unavailable_not_a_crash(aws, boto) -> None:
    from ferry_core.errors import ModelUnavailable

    reader = RegistryReader(boto["dynamodb"], "no-such-table")
    with pytest.raises(ModelUnavailable, match="registry cannot be read"):
        reader.resolve("m")
