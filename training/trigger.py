"""The drift consumer: each :class:`~streamrag.contracts.DriftEvent` becomes one training run.

Runs are queued in the order the events are read and run one at a time on a single worker
thread, while the main thread keeps polling (so a long run never exceeds Kafka's poll interval
and costs the consumer its partitions). A message's offset is committed only after its run is
recorded in the registry (trained, or FAILED with its error), in read order per partition, so a
crash re-delivers every event whose run was not recorded. A re-delivered event whose run *was*
recorded (crash between recording and committing) is recognised by its ``drift.event_id`` tag and
not trained twice. A message that is not a valid DriftEvent is logged and committed: it can never
become valid. When ``training.max_queued`` runs are waiting, consumption pauses.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from streamrag.contracts import DriftEvent, EventValidationError
from training.registry import ModelRegistry
from training.run import RunResult, TrainingFailed, run_training
from training.settings import TrainingSettings

__all__ = ["DriftTrainingConsumer", "Outcome", "run_training"]

log = logging.getLogger("streamrag.training")


@dataclass(frozen=True)
class Outcome:
    """What became of one drift-topic message; ``run_id`` names the registry run that records it."""

    topic: str
    partition: int
    offset: int
    status: Literal["trained", "failed", "duplicate", "invalid"]
    event_id: str | None = None
    run_id: str | None = None
    result: RunResult | None = None
    error: str | None = None


@dataclass
class _Job:
    topic: str
    partition: int
    offset: int
    future: Future[Outcome]


Runner = Callable[[DriftEvent, ModelRegistry], RunResult]


class DriftTrainingConsumer:
    """Consumes ``training.drift_topic`` as group ``training.group_id``; see the module docstring.

    ``runner(event, registry)`` runs one training run (default: :func:`run_training` with these
    settings and ``store``); it runs on the worker thread, which owns its registry.
    """

    def __init__(
        self,
        settings: TrainingSettings,
        store: Any,
        runner: Runner | None = None,
        registry_factory: Callable[[], ModelRegistry] | None = None,
    ) -> None:
        self.settings = settings
        self._runner = runner or (lambda ev, reg: run_training(ev, settings, store, reg))
        self._registry_factory = registry_factory or (lambda: ModelRegistry(settings))
        self._registry: ModelRegistry | None = None  # created on, and used only by, the worker thread
        self._jobs: deque[_Job] = deque()
        self._consumer: Any = None
        self._paused = False
        self._revoke_outcomes: list[Outcome] = []

    # --- the worker thread --------------------------------------------------------------------------

    def _process(self, topic: str, partition: int, offset: int, event: DriftEvent) -> Outcome:
        if self._registry is None:
            self._registry = self._registry_factory()
        coords = functools.partial(Outcome, topic, partition, offset, event_id=event.event_id)
        done = self._registry.run_for_trigger(event.event_id)
        if done is not None:
            log.info("drift event %s already has run %s: not training again", event.event_id, done)
            return coords(status="duplicate", run_id=done)
        log.info(
            "training run starts for drift event %s (%s, tenant %s, score %.4g > %.4g) at %s:%d@%d",
            event.event_id,
            event.kind,
            event.tenant,
            event.score,
            event.threshold,
            topic,
            partition,
            offset,
        )
        try:
            result = self._runner(event, self._registry)
        except TrainingFailed as exc:
            return coords(status="failed", run_id=exc.run_id, error=str(exc))
        return coords(status="trained", run_id=result.run_id, result=result)

    # --- the polling thread --------------------------------------------------------------------------

    def _enqueue(self, msg: Any, executor: ThreadPoolExecutor) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        try:
            event = DriftEvent.model_validate_json(msg.value() or b"")
        except ValidationError as exc:
            reason = str(EventValidationError.from_pydantic(exc))
            log.error("not a DriftEvent at %s:%d@%d, skipped: %s", topic, partition, offset, reason)
            invalid: Future[Outcome] = Future()
            invalid.set_result(Outcome(topic, partition, offset, "invalid", error=reason))
            self._jobs.append(_Job(topic, partition, offset, invalid))
            return
        log.info("queued drift event %s (%d runs waiting)", event.event_id, len(self._jobs))
        self._jobs.append(
            _Job(topic, partition, offset, executor.submit(self._process, topic, partition, offset, event))
        )

    def _commit_done(self, outcomes: list[Outcome]) -> None:
        """Commit finished jobs from the head of the queue (read order). Unrecorded failures raise."""
        from confluent_kafka import KafkaException, TopicPartition

        while self._jobs and self._jobs[0].future.done():
            job = self._jobs.popleft()
            outcome = job.future.result()  # an exception here was not recorded: stop, leave it uncommitted
            try:
                self._consumer.commit(
                    offsets=[TopicPartition(job.topic, job.partition, job.offset + 1)], asynchronous=False
                )
            except KafkaException as exc:  # partition revoked meanwhile: its new owner sees the recorded run
                log.warning("commit of %s:%d@%d failed: %s", job.topic, job.partition, job.offset, exc)
            outcomes.append(outcome)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._commit_done(self._revoke_outcomes)
        # runs not started yet belong to the next owner now; a running one finishes and is recorded
        self._jobs = deque(
            j for j in self._jobs if (j.topic, j.partition) not in revoked or not j.future.cancel()
        )
        self._paused = False

    def _flow_control(self, limit: int) -> None:
        """Pause consumption while ``limit`` messages are queued or running, resume below it."""
        waiting = len(self._jobs)
        if not self._paused and waiting >= limit:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        elif self._paused and waiting < limit:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    def run(
        self,
        stop: threading.Event | None = None,
        max_events: int | None = None,
        timeout_s: float | None = None,
    ) -> list[Outcome]:
        """Consume until ``stop`` is set, ``max_events`` messages are done, or ``timeout_s`` passed.

        Returns the outcomes of the messages committed, in commit order. On return the worker is
        idle: runs not started are dropped (uncommitted, so re-read next time) and a running one
        is waited for and committed.
        """
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        opts = self.settings.training
        self._consumer = Consumer(
            self.settings.kafka.librdkafka(
                **{
                    "group.id": opts.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": False,
                    "client.id": "streamrag-training",
                }
            )
        )
        self._consumer.subscribe([opts.drift_topic], on_revoke=self._on_revoke)
        outcomes: list[Outcome] = []
        self._revoke_outcomes = outcomes
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrag-training")
        log.info("training consumer: group %s on %s", opts.group_id, opts.drift_topic)
        try:
            while not (stop is not None and stop.is_set()) and (
                max_events is None or len(outcomes) < max_events
            ):
                if deadline is not None and time.monotonic() > deadline:
                    break
                left = opts.max_queued if max_events is None else max_events - len(outcomes)
                limit = min(opts.max_queued, left)
                self._flow_control(limit)
                msg = self._consumer.poll(opts.poll_timeout_s)
                if msg is not None:
                    err = msg.error()
                    if err is None and len(self._jobs) < limit:
                        self._enqueue(msg, executor)
                    elif err is None:  # fetched before the pause took effect: leave it for later
                        self._consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                    elif err.fatal():
                        raise KafkaException(err)
                    else:
                        log.warning("drift consumer: %s", err)
                self._commit_done(outcomes)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            self._jobs = deque(j for j in self._jobs if not j.future.cancelled())
            try:
                self._commit_done(outcomes)
            finally:
                self._consumer.close()
                self._consumer = None
        return outcomes
