"""Running generations from asyncio: bounded slots, one worker thread per generation, cancellation.

The event loop must never run the model: each generation runs in a thread of a pool sized to the
number of slots, and its tokens cross back to the loop through an ``asyncio.Queue``. A request first
waits (up to ``queue_timeout_s``) for one of ``max_concurrent`` slots, else :class:`OverloadedError`.
A slot is freed when the worker thread ends, not when the HTTP handler does, so the count of active
slots is the count of generations really running.

Cancelling (the client went away) sets a flag that the generator checks before every forward pass,
so the worker stops within one token and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from serving.llm.metrics import LLMMetrics
from serving.llm.model import GenerationParams, LocalGenerator, StreamStep

# How often a waiting consumer checks whether its client is still connected, in seconds.
_DISCONNECT_POLL_S = 0.25


class OverloadedError(RuntimeError):
    """No slot became free within the queue timeout."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()  # the worker's last message when it did not fail


class RunningGeneration:
    """One generation running in a worker thread; iterate :meth:`steps` once to get its tokens."""

    def __init__(self, queue: asyncio.Queue[object], cancel_event: threading.Event) -> None:
        self._queue = queue
        self._cancel = cancel_event

    def cancel(self) -> None:
        """Ask the worker to stop (idempotent, non-blocking, callable from any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def steps(
        self, is_disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> AsyncGenerator[StreamStep, None]:
        """Yield the steps as the worker produces them; raises what the worker raised.

        ``is_disconnected`` is polled while waiting for a token; once true the generation is cancelled and
        the iteration ends. Closing the iterator early (``aclose``, an error or cancellation inside it,
        or garbage collection after a ``break``) cancels too.
        """
        try:
            while True:
                try:
                    item = await asyncio.wait_for(self._queue.get(), _DISCONNECT_POLL_S)
                except TimeoutError:
                    if is_disconnected is not None and await is_disconnected():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                assert isinstance(item, StreamStep)
                yield item
        finally:
            self.cancel()  # a no-op when the worker has already finished


class Engine:
    """Admits generations into a bounded number of slots and runs each in a worker thread."""

    def __init__(
        self, generator: LocalGenerator, metrics: LLMMetrics, max_concurrent: int, queue_timeout_s: float
    ) -> None:
        self.generator = generator
        self.metrics = metrics
        self.max_concurrent = max_concurrent
        self.queue_timeout_s = queue_timeout_s
        self._slots = asyncio.Semaphore(max_concurrent)
        self._active = 0
        self._running: set[threading.Event] = set()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="llm-generate")

    @property
    def active(self) -> int:
        """Generations running now (worker threads that have not ended)."""
        return self._active

    async def start(
        self, prompt_ids: Sequence[int], params: GenerationParams, arrived: float | None = None
    ) -> RunningGeneration:
        """Wait for a slot, then start generating; raises :class:`OverloadedError` after the timeout.

        ``arrived`` (``time.perf_counter()`` at the request's arrival) is where time to first token
        counts from; by default, now.
        """
        arrived = time.perf_counter() if arrived is None else arrived
        self.metrics.waiting.inc()
        try:
            acquired = await self._acquire_slot()
        finally:
            self.metrics.waiting.dec()
        if not acquired:
            raise OverloadedError(
                f"all {self.max_concurrent} generation slots stayed busy for {self.queue_timeout_s:g} s"
            )
        self.metrics.queue_wait.observe(time.perf_counter() - arrived)
        self._active += 1
        self.metrics.active_slots.inc()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel_event = threading.Event()
        self._running.add(cancel_event)
        try:
            self._pool.submit(self._work, loop, queue, cancel_event, list(prompt_ids), params, arrived)
        except BaseException:
            self._release(cancel_event)
            raise
        return RunningGeneration(queue, cancel_event)

    async def _acquire_slot(self) -> bool:
        """Take a slot within the queue timeout; False if none came free. Never leaks a slot.

        Not ``asyncio.wait_for``: on Python 3.11 a timeout (or the request being cancelled) that races
        with a successful acquire can drop the acquired slot.
        """
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns without suspending
            return True
        acquire = asyncio.ensure_future(self._slots.acquire())
        try:
            done, _ = await asyncio.wait({acquire}, timeout=self.queue_timeout_s)
        except asyncio.CancelledError:  # the request itself was cancelled while waiting
            if not acquire.cancel() and not acquire.cancelled():
                self._slots.release()  # acquired just before the cancellation: give it back
            raise
        if done:
            return True
        if acquire.cancel():
            return False
        return not acquire.cancelled()  # it completed between the timeout and the cancel: keep it

    def _release(self, cancel_event: threading.Event) -> None:
        """Free a slot; runs on the event loop."""
        self._running.discard(cancel_event)
        self._active -= 1
        self.metrics.active_slots.dec()
        self._slots.release()

    def _work(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[object],
        cancel_event: threading.Event,
        prompt_ids: list[int],
        params: GenerationParams,
        arrived: float,
    ) -> None:
        """The worker thread: generate, forward every step to the loop, record metrics, free the slot."""
        first_at: float | None = None
        count = 0
        final: object = _END
        try:
            self.metrics.prompt_tokens.inc(len(prompt_ids))
            for step in self.generator.stream(prompt_ids, params, cancel_event):
                now = time.perf_counter()
                if first_at is None:
                    first_at = now
                    self.metrics.time_to_first_token.observe(now - arrived)
                count += 1
                self.metrics.generated_tokens.inc()
                if step.result is not None:
                    self.metrics.generations.labels(step.result.finish_reason).inc()
                    if count > 1 and now > first_at:
                        self.metrics.decode_rate.observe((count - 1) / (now - first_at))
                _post(loop, queue, step, cancel_event)
            if first_at is None:  # cancelled before the first token
                self.metrics.generations.labels("cancelled").inc()
        except BaseException as exc:  # handed to the consumer, which turns it into an HTTP error
            final = _Failed(exc)
        finally:
            _post(loop, queue, final, cancel_event)
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process is exiting
                loop.call_soon_threadsafe(self._release, cancel_event)

    def shutdown(self) -> None:
        """Cancel every running generation and wait for the workers (each stops within one token)."""
        for cancel_event in list(self._running):
            cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _post(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], item: object, cancel: threading.Event
) -> None:
    try:
        loop.call_soon_threadsafe(queue.put_nowait, item)
    except RuntimeError:  # the event loop is closed: nobody will read, so stop generating
        cancel.set()
