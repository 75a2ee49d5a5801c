"""Preference data from human feedback: each rated answer joined with its request's trace.

A rating (``streamrag.feedback``) says only which request it is about; the trace
(``streamrag.traces``) holds the question, the chunks and prompt the generator saw and the answer.
Both topics are keyed by request id and compacted, so a snapshot read from offset 0 to the end
offsets of the moment, keeping the last record per key, is the current state of both. A rating
without a trace (expired, or written by a request whose trace was lost) is counted and skipped.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import BaseModel, ValidationError

from streamrag.contracts import FeedbackEvent, TraceRecord

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PreferenceRecord:
    request_id: str
    tenant: str
    question: str
    context: str
    """The prompt's last user turn: the documents and the question exactly as the generator saw them."""
    chunks: list[dict[str, Any]]
    answer: str
    rating: str
    correction: str | None
    comment: str | None
    generator_model: str
    embedding_model: str
    rated_at: str


@dataclass(frozen=True)
class PreferenceSnapshot:
    records: list[PreferenceRecord]
    ratings: int
    without_trace: int
    end_offsets: dict[str, int]
    """``'topic:partition' -> end offset`` of both topics when read: what the snapshot covers."""


def latest_by_key(
    conf: dict[str, Any], topic: str, model: type[M], timeout_s: float = 30.0
) -> tuple[dict[str, M], dict[str, int]]:
    """The last valid ``model`` record per key of ``topic``, from offset 0 to its end now."""
    consumer = Consumer(
        {**conf, "group.id": f"streamrag-snapshot-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaException(f"topic {topic} does not exist")
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        out: dict[str, M] = {}
        while todo:
            msg = consumer.poll(timeout_s)
            if msg is None:
                raise KafkaException(
                    f"{topic}: no message within {timeout_s:g} s before the end offsets {ends}"
                )
            if msg.error() is not None:
                continue
            key, value, offset, partition = msg.key(), msg.value(), msg.offset(), msg.partition()
            if key is not None and value is not None:
                with contextlib.suppress(ValidationError):  # not this contract: nothing to join
                    out[key.decode(errors="replace")] = model.model_validate_json(value)
            if offset is not None and partition is not None and offset + 1 >= ends[partition]:
                todo.discard(partition)
        return out, {f"{topic}:{p}": end for p, end in ends.items()}
    finally:
        consumer.close()


def preference_snapshot(conf: dict[str, Any], feedback_topic: str, traces_topic: str) -> PreferenceSnapshot:
    ratings, fb_ends = latest_by_key(conf, feedback_topic, FeedbackEvent)
    traces, tr_ends = latest_by_key(conf, traces_topic, TraceRecord)
    records, missing = [], 0
    for rid, fb in sorted(ratings.items(), key=lambda kv: kv[1].ts):
        trace = traces.get(rid)
        if trace is None or trace.tenant != fb.tenant:
            missing += 1
            continue
        records.append(
            PreferenceRecord(
                request_id=rid,
                tenant=fb.tenant,
                question=trace.question,
                context=(trace.prompt or [{"content": ""}])[-1]["content"],
                chunks=[c.model_dump() for c in trace.chunks_used],
                answer=trace.answer or "",
                rating=fb.rating,
                correction=fb.correction,
                comment=fb.comment,
                generator_model=fb.generator_model,
                embedding_model=fb.embedding_model,
                rated_at=fb.ts.isoformat(),
            )
        )
    return PreferenceSnapshot(records, len(ratings), missing, {**fb_ends, **tr_ends})


def write_jsonl(records: list[PreferenceRecord], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")


def iter_jsonl(path: Path) -> Iterator[PreferenceRecord]:
    with path.open() as f:
        for line in f:
            yield PreferenceRecord(**json.loads(line))
