"""The typed publisher: acknowledged, keyed, idempotent; the CLI prints where events landed."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from producers.publisher import Publisher
from streamrag.contracts import DocumentEvent, Op
from tests.utils.builders import document_event
from tests.utils.kafka import read_from

pytestmark = pytest.mark.stack


def test_publish_many_is_acknowledged_keyed_and_in_order(
    stack: Any, topic_factory: Any, kafka_conf: dict
) -> None:
    topic = topic_factory("docs", partitions=3)
    events = [document_event(f"d{i % 5}", version=i) for i in range(20)]
    with Publisher(stack.kafka, topic=topic) as pub:
        deliveries = pub.publish_many(events)
    assert [d.key for d in deliveries] == [e.key for e in events]
    by_key: dict[str, set[int]] = {}
    for d in deliveries:
        by_key.setdefault(d.key, set()).add(d.partition)
    assert all(len(parts) == 1 for parts in by_key.values())  # one document -> one partition

    msgs = read_from(kafka_conf, topic, {p: 0 for p in range(3)}, lambda ms: len(ms) >= 20, timeout_s=30)
    got = [DocumentEvent.from_json(m.value()) for m in msgs]
    assert sorted((e.doc_id, e.version) for e in got) == sorted((e.doc_id, e.version) for e in events)
    for key in by_key:  # per-document order kept
        versions = [e.version for e in got if e.key == key]
        assert versions == sorted(versions)


def test_cli_publishes_from_options_and_stdin(stack: Any, topic_factory: Any, kafka_conf: dict) -> None:
    topic = topic_factory("docs-cli", partitions=2)
    env_cmd = [sys.executable, "-m", "streamrag", "publish"]
    one = subprocess.run(
        [
            *env_cmd,
            "--topic",
            topic,
            "--tenant",
            "acme",
            "--doc-id",
            "faq-1",
            "--version",
            "3",
            "--title",
            "Reset",
            "--body",
            "Hold the button.",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert one.returncode == 0, one.stderr
    landed = json.loads(one.stdout)
    assert landed["key"] == "acme/faq-1" and landed["topic"] == topic and landed["offset"] >= 0

    lines = "\n".join(document_event(f"s{i}", tenant="acme", version=1).model_dump_json() for i in range(3))
    many = subprocess.run(
        [*env_cmd, "--topic", topic, "--file", "-"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert many.returncode == 0, many.stderr
    assert len(many.stdout.strip().splitlines()) == 3

    msgs = read_from(kafka_conf, topic, {0: 0, 1: 0}, lambda ms: len(ms) >= 4, timeout_s=30)
    assert {DocumentEvent.from_json(m.value()).doc_id for m in msgs} == {"faq-1", "s0", "s1", "s2"}


def test_cli_rejects_an_invalid_event_with_the_field_and_sends_nothing(stack: Any) -> None:
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamrag",
            "publish",
            "--tenant",
            "acme",
            "--doc-id",
            "a/b",
            "--version",
            "1",
            "--body",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert bad.returncode != 0
    assert "doc_id" in bad.stderr and "Traceback" not in bad.stderr
    delete = document_event("x", op=Op.DELETE)
    assert delete.body == ""


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
