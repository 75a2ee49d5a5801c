"""Row changes in PostgreSQL arrive on the CDC topic as Debezium events and parse into DocumentEvents."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from streamrag.contracts import DocumentEvent, Op, Tombstone, Topics, parse_debezium
from tests.utils.kafka import end_offsets, read_from

pytestmark = pytest.mark.stack


def test_insert_update_delete_become_events_and_a_tombstone(stack: Any, kafka_conf: dict) -> None:
    start = end_offsets(kafka_conf, Topics.CDC_DOCUMENTS)
    doc_id, tenant = f"cdc-{uuid.uuid4().hex[:8]}", "cdctest"
    with psycopg.connect(stack.postgres.dsn(), autocommit=True) as conn:
        v1 = conn.execute(
            "INSERT INTO documents (id, tenant, title, body, metadata) VALUES (%s, %s, %s, %s, %s::jsonb) "
            "RETURNING version",
            (doc_id, tenant, "First", "The first body.", '{"lang": "en"}'),
        ).fetchone()[0]
        v2 = conn.execute(
            "UPDATE documents SET body = %s WHERE tenant = %s AND id = %s RETURNING version",
            ("The second body.", tenant, doc_id),
        ).fetchone()[0]
        conn.execute("DELETE FROM documents WHERE tenant = %s AND id = %s", (tenant, doc_id))
    assert v2 > v1

    def ours(msgs: list[Any]) -> list[Any]:
        return [m for m in msgs if m.key() is not None and doc_id.encode() in m.key()]

    msgs = ours(
        read_from(kafka_conf, Topics.CDC_DOCUMENTS, start, lambda ms: len(ours(ms)) >= 4, timeout_s=60)
    )
    parsed = [parse_debezium(m.key(), m.value()) for m in msgs]
    assert len(parsed) == 4, parsed
    ins, upd, dele, tomb = parsed
    assert (
        isinstance(ins, DocumentEvent) and isinstance(upd, DocumentEvent) and isinstance(dele, DocumentEvent)
    )
    assert (ins.op, ins.version, ins.body, ins.metadata) == (Op.UPSERT, v1, "The first body.", {"lang": "en"})
    assert (upd.op, upd.version, upd.body) == (Op.UPSERT, v2, "The second body.")
    assert (dele.op, dele.version) == (Op.DELETE, v2)
    assert tomb == Tombstone(tenant=tenant, doc_id=doc_id)
    assert msgs[3].value() is None
    assert ins.key == upd.key == dele.key == f"{tenant}/{doc_id}"
    assert ins.lsn is not None and upd.lsn is not None and ins.lsn < upd.lsn < (dele.lsn or 0)
    # One document's changes stay on one partition, in order.
    assert len({m.partition() for m in msgs}) == 1
    assert [m.offset() for m in msgs] == sorted(m.offset() for m in msgs)
