"""Builders of contract events and raw Debezium envelopes for tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from streamrag.contracts import DocumentEvent, Op, utcnow


def document_event(
    doc_id: str | None = None,
    *,
    tenant: str = "t1",
    version: int = 1,
    op: Op = Op.UPSERT,
    title: str = "A title",
    body: str = "Some body text.",
    **extra: Any,
) -> DocumentEvent:
    return DocumentEvent(
        tenant=tenant,
        doc_id=doc_id or f"doc-{uuid.uuid4().hex[:8]}",
        version=version,
        op=op,
        title=title if op is Op.UPSERT else "",
        body=body if op is Op.UPSERT else "",
        source_ts=utcnow(),
        **extra,
    )


def debezium_row(doc_id: str = "d1", tenant: str = "t1", version: int = 1, **fields: Any) -> dict[str, Any]:
    row = {
        "id": doc_id,
        "tenant": tenant,
        "title": "T",
        "body": "B",
        "metadata": "{}",
        "updated_at": "2026-01-01T00:00:00Z",
        "version": version,
    }
    row.update(fields)
    return row


def debezium_envelope(
    op: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    lsn: int = 1000,
    ts_ms: int = 1_767_225_600_000,
    schema: bool = False,
) -> bytes:
    payload = {
        "before": before,
        "after": after,
        "op": op,
        "ts_ms": ts_ms,
        "source": {"connector": "postgresql", "lsn": lsn, "ts_ms": ts_ms, "table": "documents"},
    }
    body: Any = {"schema": {"type": "struct", "optional": False}, "payload": payload} if schema else payload
    return json.dumps(body).encode()


def debezium_key(doc_id: str = "d1", tenant: str = "t1", schema: bool = True) -> bytes:
    payload = {"tenant": tenant, "id": doc_id}
    return json.dumps({"schema": {"type": "struct"}, "payload": payload} if schema else payload).encode()


def corpus_events(documents: Any, tenant: str, version: int = 1) -> list[DocumentEvent]:
    """Upserts of evaluation-corpus documents (``EvalDocument``); their ids' '/' become ':'."""
    return [
        DocumentEvent(tenant=tenant, doc_id=d.doc_id.replace("/", ":"), version=version, op=Op.UPSERT,
                      title=d.title, body=d.body, metadata={"source": d.source}, source_ts=utcnow())
        for d in documents
    ]  # fmt: skip
