"""Validate: raw messages become :class:`DocumentEvent` s or dead letters (errors as data)."""

from __future__ import annotations

import base64

from streamrag.contracts import (
    DeadLetter,
    DocumentEvent,
    EventValidationError,
    Tombstone,
    parse_debezium,
    utcnow,
)
from streams.batch import Sourced, Work
from streams.kafka_source import RawBatch, RawMessage

PIPELINE_NAME = "streams"


def dead_letter(msg: RawMessage, reason: str, error_type: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        error_type=error_type,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key.decode("utf-8", errors="replace") if msg.key is not None else None,
        value_b64=base64.b64encode(msg.value).decode() if msg.value is not None else None,
        pipeline=PIPELINE_NAME,
        failed_at=utcnow(),
    )


def parse_message(msg: RawMessage, cdc_topics: frozenset[str]) -> DocumentEvent | Tombstone | None:
    """One message to an event; ``None`` for a null value on a documents topic (a tombstone).

    Raises :class:`EventValidationError` for anything malformed.
    """
    if msg.topic in cdc_topics:
        return parse_debezium(msg.key, msg.value)
    if msg.value is None:
        return None
    event = DocumentEvent.from_json(msg.value)
    if msg.key is not None and msg.key.decode("utf-8", errors="replace") != event.key:
        raise EventValidationError(
            "<key>", f"message key {msg.key!r} does not match the event's {event.key!r}"
        )
    return event


def validate(batch: RawBatch, cdc_topics: frozenset[str]) -> Work:
    """Split a raw batch into valid events and dead letters; tombstones are counted and skipped."""
    events: list[Sourced] = []
    dead: list[DeadLetter] = []
    tombstones = 0
    for msg in batch.messages:
        try:
            parsed = parse_message(msg, cdc_topics)
        except EventValidationError as exc:
            dead.append(dead_letter(msg, str(exc), "EventValidationError"))
            continue
        if parsed is None or isinstance(parsed, Tombstone):
            tombstones += 1
        else:
            events.append(Sourced(parsed, msg.topic, msg.partition, msg.offset))
    return Work(
        topic=batch.topic,
        partition=batch.partition,
        next_offset=batch.next_offset,
        received=len(batch.messages),
        seq=batch.seq,
        events=tuple(events),
        dead=tuple(dead),
        tombstones=tombstones,
    )
