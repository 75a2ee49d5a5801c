"""DocumentEvent validation and Debezium envelope parsing (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streamrag.contracts import (
    DocumentEvent,
    EventValidationError,
    Op,
    Tombstone,
    json_schemas,
    parse_debezium,
    sparse_encode,
)
from tests.utils.builders import debezium_envelope, debezium_key, debezium_row, document_event


def test_document_event_round_trips_through_json() -> None:
    ev = document_event("d1", version=3, metadata={"lang": "en"})
    back = DocumentEvent.from_json(ev.to_bytes())
    assert back == ev
    assert back.key == "t1/d1"
    assert back.source_ts.tzinfo is not None


def test_delete_outranks_upsert_of_the_same_version() -> None:
    up = document_event("d1", version=5)
    down = document_event("d1", version=5, op=Op.DELETE)
    newer = document_event("d1", version=6)
    assert up.order_key < down.order_key < newer.order_key


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"doc_id": "d", "version": 1, "op": "upsert", "body": "x"}, "tenant"),
        ({"tenant": "t", "doc_id": "a/b", "version": 1, "op": "upsert", "body": "x"}, "doc_id"),
        ({"tenant": "t", "doc_id": "d", "version": -1, "op": "upsert", "body": "x"}, "version"),
        ({"tenant": "t", "doc_id": "d", "version": 1, "op": "merge", "body": "x"}, "op"),
        ({"tenant": "t", "doc_id": "d", "version": 1, "op": "upsert", "body": "  "}, "<root>"),
        ({"tenant": "bad tenant!", "doc_id": "d", "version": 1, "op": "upsert", "body": "x"}, "tenant"),
        ({"tenant": "t", "doc_id": "d", "version": 1, "op": "upsert", "body": "x", "colour": 1}, "colour"),
    ],
)
def test_invalid_document_events_name_the_field(payload: dict, field: str) -> None:
    payload = {"source_ts": "2026-01-01T00:00:00Z", **payload}
    with pytest.raises(EventValidationError) as info:
        DocumentEvent.from_json(json.dumps(payload))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(EventValidationError) as info:
        DocumentEvent.from_json(
            json.dumps(
                {
                    "tenant": "t",
                    "doc_id": "d",
                    "version": 1,
                    "op": "upsert",
                    "body": "x",
                    "source_ts": "2026-01-01T00:00:00",
                }
            )
        )
    assert info.value.field == "source_ts"


@pytest.mark.parametrize("schema", [True, False], ids=["with-schema", "without-schema"])
def test_debezium_create_update_snapshot_become_upserts(schema: bool) -> None:
    for op in ("c", "u", "r"):
        row = debezium_row("d9", tenant="acme", version=7, title="Title", body="Body", metadata='{"a": 1}')
        ev = parse_debezium(
            debezium_key("d9", "acme"), debezium_envelope(op, after=row, lsn=42, schema=schema)
        )
        assert isinstance(ev, DocumentEvent)
        assert (ev.tenant, ev.doc_id, ev.version, ev.op) == ("acme", "d9", 7, Op.UPSERT)
        assert (ev.title, ev.body, ev.metadata, ev.lsn, ev.source) == ("Title", "Body", {"a": 1}, 42, "cdc")
        assert ev.source_ts == datetime(2026, 1, 1, tzinfo=UTC)


def test_debezium_delete_uses_before_and_keeps_its_version() -> None:
    ev = parse_debezium(debezium_key(), debezium_envelope("d", before=debezium_row(version=11), after=None))
    assert isinstance(ev, DocumentEvent)
    assert ev.op is Op.DELETE and ev.version == 11 and ev.body == ""


@pytest.mark.parametrize("schema", [True, False])
def test_debezium_tombstone(schema: bool) -> None:
    assert parse_debezium(debezium_key("d2", "t2", schema=schema), None) == Tombstone(
        tenant="t2", doc_id="d2"
    )


MALFORMED = [
    ("not json", b"{nope", "<value>"),
    ("json array", b"[1, 2]", "<value>"),
    ("unknown op", debezium_envelope("x", after=debezium_row()), "op"),
    ("missing op", json.dumps({"after": debezium_row(), "source": {"ts_ms": 1}}).encode(), "op"),
    ("create without after", debezium_envelope("c", after=None), "after"),
    ("delete without before", debezium_envelope("d", before=None), "before"),
    ("no source", json.dumps({"op": "c", "after": debezium_row()}).encode(), "source"),
    (
        "ts not int",
        json.dumps({"op": "c", "after": debezium_row(), "source": {"ts_ms": "soon"}}).encode(),
        "source.ts_ms",
    ),
    (
        "lsn not int",
        json.dumps({"op": "c", "after": debezium_row(), "source": {"ts_ms": 1, "lsn": "x"}}).encode(),
        "source.lsn",
    ),
    (
        "row without id",
        debezium_envelope("c", after={k: v for k, v in debezium_row().items() if k != "id"}),
        "after.id",
    ),
    ("row without tenant", debezium_envelope("u", after={**debezium_row(), "tenant": None}), "after.tenant"),
    (
        "row without version",
        debezium_envelope("c", after={**debezium_row(), "version": None}),
        "after.version",
    ),
    ("metadata not json", debezium_envelope("c", after=debezium_row(metadata="{oops")), "after.metadata"),
    ("metadata a list", debezium_envelope("c", after=debezium_row(metadata="[1]")), "after.metadata"),
    ("negative version", debezium_envelope("c", after=debezium_row(version=-3)), "after.version"),
    ("empty upsert", debezium_envelope("c", after=debezium_row(title="", body="")), "after.<root>"),
    ("invalid utf-8", b"\xff\xfe{", "<value>"),
    ("payload not object", json.dumps({"schema": {}, "payload": 3}).encode(), "payload"),
]


@pytest.mark.parametrize(("name", "value", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_envelopes_raise_the_typed_error(name: str, value: bytes, field: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_debezium(debezium_key(), value)
    assert info.value.field == field, str(info.value)
    assert info.value.reason


def test_tombstone_with_a_bad_key_is_a_typed_error() -> None:
    with pytest.raises(EventValidationError):
        parse_debezium(b'{"payload": {"id": "x"}, "schema": {}}', None)
    with pytest.raises(EventValidationError):
        parse_debezium(None, None)


def test_every_event_has_a_json_schema() -> None:
    schemas = json_schemas()
    assert {"DocumentEvent", "DeadLetter", "FeatureRecord", "QueryRecord", "DriftEvent"} <= set(schemas)
    doc = schemas["DocumentEvent"]
    assert set(doc["required"]) >= {"tenant", "doc_id", "version", "op", "source_ts"}


def test_sparse_encode_saturates_term_frequency() -> None:
    idx, vals = sparse_encode([5, 3, 5, 5])
    assert idx == [3, 5]
    assert vals[0] == pytest.approx(1.0)
    assert 1.0 < vals[1] < 2.2


def test_the_index_schema_names_fields_of_the_chunk_payload() -> None:
    from streamrag.contracts import ChunkPayload, IndexSchema

    names = {
        v
        for k, v in vars(IndexSchema).items()
        if k.isupper() and k not in ("DENSE", "SPARSE", "REGISTRY_SUFFIX", "ORDER", "OP")
    }
    assert names <= set(ChunkPayload.model_fields), names - set(ChunkPayload.model_fields)
