"""The embed step's scheduler and the committer's ordering: pure logic, with a counting embedder.

The embedder here is a stand-in that records how many chunks each call embeds and gives every
text a vector derived from the text itself, so a test can check that each chunk got its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from streams.batch import ChunkVectors, PreparedDoc, Sourced, Work
from streams.commit import InOrder
from streams.schedule import EmbedQueue, InFlight
from streams.steps import EmbedJob, embed, embed_together
from tests.utils.builders import document_event


class CountingEmbedder:
    """Vectors that identify their text: ``[len(ids), first id, index of the text in its call]``."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def complete_ids(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None = None
    ) -> list[list[int]]:
        known = token_ids or [None] * len(texts)
        return [
            list(ids) if ids is not None else [len(w) for w in t.split()]
            for t, ids in zip(texts, known, strict=True)
        ]

    def encode_tokenised(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.asarray(
            [
                [float(len(ids or [])), float(int(t.split("#")[1]))]
                for t, ids in zip(texts, token_ids, strict=True)
            ]
        )

    def sparse_batch(
        self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None = None
    ) -> list[tuple[list[int], list[float]]]:
        return [([int(t.split("#")[1])], [1.0]) for t in texts]


def batch(seq: int, *chunk_counts: int, partition: int = 0) -> Work:
    """A batch of ``len(chunk_counts)`` documents with that many chunks each (text ``doc#n``)."""
    docs = []
    n = 0
    for d, count in enumerate(chunk_counts):
        src = Sourced(document_event(f"b{seq}d{d}"), "docs", partition, seq * 10 + d)
        chunks = []
        for i in range(count):
            # longer texts first in chunk order would hide the sort: make lengths vary
            chunks.append(
                ChunkVectors(i, f"chunk{'x' * (i % 3)} #{n}", i, "", token_ids=tuple(range(1 + i % 3)))
            )
            n += 1
        docs.append(PreparedDoc(src, title="t", body="b", chunks=tuple(chunks)))
    return Work("docs", partition, seq * 10 + len(chunk_counts), len(chunk_counts), seq=seq, docs=tuple(docs))


def queue(embedder: CountingEmbedder, slice_chunks: int = 8) -> EmbedQueue:
    return EmbedQueue(
        lambda w: EmbedJob(w, embedder), lambda plan: embed_together(embedder, plan), slice_chunks
    )


def seqs(works: list[Work]) -> list[int]:
    return [w.seq for w in works]


# --- EmbedJob ---------------------------------------------------------------------------------------


def test_a_job_embedded_in_slices_equals_one_call() -> None:
    work = batch(0, 5, 7, 3)
    whole = embed(work, CountingEmbedder())
    sliced_embedder = CountingEmbedder()
    job = EmbedJob(work, sliced_embedder)
    while job.remaining:
        job.advance(4)
    assert sliced_embedder.calls == [4, 4, 4, 3]
    assert job.result() == whole
    for doc in whole.docs:  # every chunk got the vectors of its own text
        for ch in doc.chunks:
            n = int(ch.text.split("#")[1])
            assert ch.dense[1] == n and ch.sparse_indices == (n,)
            assert ch.dense[0] == len(ch.token_ids or ())


def test_a_job_embeds_longest_rows_first_so_slices_pad_like_one_call() -> None:
    work = batch(0, 9)
    seen: list[list[int]] = []
    emb = CountingEmbedder()
    original = emb.encode_tokenised

    def spy(texts: Sequence[str], ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        seen.append([len(i or []) for i in ids])
        return original(texts, ids)

    emb.encode_tokenised = spy  # type: ignore[method-assign]
    job = EmbedJob(work, emb)
    while job.remaining:
        job.advance(3)
    flat = [n for call in seen for n in call]
    assert flat == sorted(flat, reverse=True)


def test_an_unfinished_job_refuses_to_give_its_result_and_a_job_without_chunks_is_done() -> None:
    job = EmbedJob(batch(0, 4), CountingEmbedder())
    job.advance(2)
    with pytest.raises(RuntimeError, match="2 chunks"):
        job.result()
    deletes_only = replace(batch(1, 2), docs=tuple(replace(d, chunks=()) for d in batch(1, 2).docs))
    empty = EmbedJob(deletes_only, CountingEmbedder())
    assert empty.remaining == 0 and empty.result() == deletes_only


# --- EmbedQueue -------------------------------------------------------------------------------------


def test_a_small_batch_overtakes_a_large_one_in_the_same_partition() -> None:
    emb = CountingEmbedder()
    q = queue(emb, slice_chunks=12)
    out, discard = q.on_batch([batch(0, 40)])
    assert out == [] and not discard and q.notify_at() is not None
    out, _ = q.on_batch([batch(1, 2), batch(2, 3)])  # arrive while the large one is queued
    assert seqs(out) == [1, 2]  # both finished in the next turn, in half a slice
    assert sum(emb.calls) == 12 + 12  # a whole slice a turn, the rest to the oldest


def test_a_turn_is_one_call_and_the_batches_it_finishes_are_finished_smallest_first() -> None:
    """One model call per turn, across batches; ``finish`` (the flow writes the batch there) runs
    for each batch the turn finished, smallest first, the large one's share embedded meanwhile."""
    emb = CountingEmbedder()
    finished: list[tuple[int, int]] = []

    def finish(work: Work) -> Work:
        finished.append((work.seq, len(emb.calls)))
        return work

    q = EmbedQueue(lambda w: EmbedJob(w, emb), lambda plan: embed_together(emb, plan), 12, finish=finish)
    q.on_batch([batch(0, 40)])
    out, _ = q.on_batch([batch(2, 3), batch(1, 2)])
    assert emb.calls == [12, 12]  # one call a turn: 2 + 3 small chunks and 7 of the large batch
    assert finished == [(1, 2), (2, 2)]  # in the second turn, fewest chunks first
    assert seqs(out) == [1, 2]


def test_embedding_jobs_together_gives_each_its_own_vectors() -> None:
    emb = CountingEmbedder()
    first, second = batch(0, 3, 2), batch(1, 4)
    a, b = EmbedJob(first, emb), EmbedJob(second, emb)
    assert embed_together(emb, [(a, 10), (b, 3)]) == 8 and emb.calls == [8]
    assert (a.remaining, b.remaining) == (0, 1)
    b.advance(1)
    assert a.result() == embed(first, CountingEmbedder())
    assert b.result() == embed(second, CountingEmbedder())
    with pytest.raises(ValueError, match="more chunks than remain"):
        b.accept([[0.0]], [([1], [1.0])])


def test_every_turn_embeds_at_most_a_slice_and_the_oldest_gets_half_of_it() -> None:
    emb = CountingEmbedder()
    q = queue(emb, slice_chunks=8)
    q.on_batch([batch(0, 30)])
    finished: list[int] = []
    turns = 0
    seq = 1
    while 0 not in finished:
        before = sum(emb.calls)
        # a steady stream of small batches that fit in the other half of a turn, two at a time
        out, _ = q.on_batch([batch(seq, 2), batch(seq + 1, 2)])
        seq += 2
        finished += seqs(out)
        assert sum(emb.calls) - before <= 8
        turns += 1
        assert turns <= 6, "the oldest batch is starved"
    assert turns == 6  # 8 chunks in its first turn alone, then half a slice (4) a turn: 8 + 6 * 4 >= 30
    assert len(finished) == 1 + 2 * turns  # and every small batch finished in the turn it arrived


def test_a_batch_that_cannot_finish_in_the_turn_keeps_its_place() -> None:
    """Large batches do not share a turn: the oldest gets the whole slice, the next one waits."""
    emb = CountingEmbedder()
    q = queue(emb, slice_chunks=8)
    out, _ = q.on_batch([batch(0, 12), batch(1, 5)])  # 5 > half a slice: behind the oldest
    assert out == [] and emb.calls == [8]
    out, _ = q.on_notify()  # the oldest's last 4, alone
    assert seqs(out) == [0] and emb.calls == [8, 4]
    out, discard = q.on_notify()
    assert seqs(out) == [1] and emb.calls == [8, 4, 5] and discard


def test_the_oldest_batch_uses_what_the_others_leave() -> None:
    emb = CountingEmbedder()
    q = queue(emb, slice_chunks=8)
    q.on_batch([batch(0, 20)])  # 8 (alone: the whole slice)
    out, _ = q.on_notify()  # 16
    assert out == []
    out, discard = q.on_notify()  # 20
    assert seqs(out) == [0] and discard and q.notify_at() is None


def test_batches_without_chunks_pass_in_the_same_turn() -> None:
    emb = CountingEmbedder()
    q = queue(emb, slice_chunks=4)
    deletes = replace(batch(1, 1), docs=tuple(replace(d, chunks=()) for d in batch(1, 1).docs))
    out, _ = q.on_batch([batch(0, 100), deletes])
    assert seqs(out) == [1]


def test_end_of_input_finishes_everything_queued() -> None:
    emb = CountingEmbedder()
    q = queue(emb, slice_chunks=4)
    first, _ = q.on_batch([batch(0, 11), batch(1, 5), batch(2, 1)])
    out, discard = q.on_eof()
    assert seqs(first) == [2] and sorted(seqs(out)) == [0, 1] and discard
    out += first
    assert sum(emb.calls) == 17 and max(emb.calls) <= 4
    assert all(ch.dense for w in out for d in w.docs for ch in d.chunks)


# --- EmbedQueue with the model on a background thread ---------------------------------------------


class Recorded(Executor):
    """An executor that runs a call only when the test says so, recording the order of events."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.pending: list[tuple[Future[int], Callable[..., int], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., int], /, *args: Any, **kwargs: Any) -> Future[int]:  # type: ignore[override]
        future: Future[int] = Future()
        self.pending.append((future, fn, args))
        self.log.append("submit")
        return future

    def run_next(self) -> None:
        future, fn, args = self.pending.pop(0)
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # as a real executor does: the error goes to the future
            future.set_exception(exc)
        self.log.append("model done")


def background_queue(
    emb: CountingEmbedder, executor: Executor, slice_chunks: int, log: list[str]
) -> EmbedQueue:
    def finish(work: Work) -> Work:
        log.append(f"write {work.seq}")
        return work

    return EmbedQueue(
        lambda w: EmbedJob(w, emb),
        lambda plan: embed_together(emb, plan),
        slice_chunks,
        finish=finish,
        executor=executor,
        wait_s=0.001,
    )


def drain(q: EmbedQueue, executor: Recorded) -> list[Work]:
    out: list[Work] = []
    while executor.pending:
        executor.run_next()
        got, _ = q.on_notify()
        out += got
    return out


def test_the_next_slice_is_handed_over_before_the_last_ones_batches_are_written() -> None:
    emb = CountingEmbedder()
    log: list[str] = []
    ex = Recorded(log)
    q = background_queue(emb, ex, 4, log)
    out, discard = q.on_batch([batch(0, 3), batch(1, 6)])
    assert out == [] and not discard and log == ["submit"]  # the turn returns at once
    out, _ = q.on_notify()  # the slice is not done: nothing yet, no second call
    assert out == [] and log == ["submit"] and q.notify_at() is not None
    ex.run_next()
    out, _ = q.on_notify()
    # batch 0 (3 chunks) and 1 of batch 1 were embedded; the next slice went before batch 0's write
    assert seqs(out) == [0] and log == ["submit", "model done", "submit", "write 0"]
    out = drain(q, ex)
    assert seqs(out) == [1] and q.notify_at() is None and sum(emb.calls) == 9


def test_background_turns_give_the_batches_and_vectors_of_inline_turns() -> None:
    arrivals = [[batch(0, 40)], [batch(1, 2), batch(2, 3)], [batch(3, 7)], [], [batch(4, 1)], []]
    inline = queue(CountingEmbedder(), slice_chunks=12)
    ex = Recorded([])
    background = background_queue(CountingEmbedder(), ex, 12, [])
    expected: list[Work] = []
    got: list[Work] = []
    for values in arrivals:
        expected += (inline.on_batch(values) if values else inline.on_notify())[0]
        got += (background.on_batch(values) if values else background.on_notify())[0]
        if ex.pending:
            ex.run_next()
    expected += inline.on_eof()[0]
    got += drain(background, ex)
    got += background.on_eof()[0]
    assert sorted(got, key=lambda w: w.seq) == sorted(expected, key=lambda w: w.seq)
    assert len(got) == 5 and all(ch.dense for w in got for d in w.docs for ch in d.chunks)


def test_end_of_input_waits_for_the_slice_in_flight_on_a_real_thread() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Event()

    class Slow(CountingEmbedder):
        def encode_tokenised(
            self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]
        ) -> np.ndarray:
            gate.wait(5)
            return super().encode_tokenised(texts, token_ids)

    emb = Slow()
    with ThreadPoolExecutor(1) as ex:
        q = background_queue(emb, ex, 4, [])
        out, _ = q.on_batch([batch(0, 10), batch(1, 1)])
        out += q.on_notify()[0]  # waits wait_s, then gives the other steps their turn
        assert out == []
        gate.set()
        rest, discard = q.on_eof()
    assert sorted(seqs(out + rest)) == [0, 1] and discard and sum(emb.calls) == 11


class _Recorded:
    """A future that records how long each caller was willing to wait for it (its timeouts)."""

    def __init__(self, inner: Future[Any], waits: list[float | None]) -> None:
        self._inner, self._waits = inner, waits

    def result(self, timeout: float | None = None) -> Any:
        self._waits.append(timeout)
        return self._inner.result(timeout)

    def done(self) -> bool:
        return self._inner.done()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _f: fn(self))


def test_only_the_turn_of_the_oldest_slice_in_the_model_waits_for_it() -> None:
    """Two partitions share the model; the model finishes slices first in, first out, so the
    younger slice's turn does not wait (the worker goes on) and the oldest's waits up to wait_s.

    The waits are read from the timeouts the queues pass to the futures, not timed."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    gates = {0: threading.Event(), 1: threading.Event()}

    class Gated(CountingEmbedder):
        def encode_tokenised(
            self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]
        ) -> np.ndarray:
            gates[len(texts) % 2].wait(5)  # partition 0's slice has 4 chunks, partition 1's 3
            return super().encode_tokenised(texts, token_ids)

    waits: list[float | None] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return _Recorded(super().submit(fn, *args, **kwargs), waits)

    emb = Gated()
    inflight = InFlight()
    with Recording(2) as ex:
        queues = [
            EmbedQueue(
                lambda w: EmbedJob(w, emb),
                lambda plan: embed_together(emb, plan),
                8,
                executor=ex,
                wait_s=0.5,
                inflight=inflight,
            )
            for _ in range(2)
        ]
        assert queues[0].on_batch([batch(0, 4)]) == ([], False)  # handed over: the oldest
        assert queues[1].on_batch([batch(0, 3, partition=1)]) == ([], False)
        assert len(inflight) == 2
        waits.clear()
        assert queues[1].on_notify() == ([], False)  # the younger's turn: no wait, the worker goes on
        assert waits == [0.0]
        assert queues[0].on_notify() == ([], False)  # the oldest's turn: waits up to wait_s for it
        assert waits == [0.0, 0.5]
        gates[0].set()
        done, discard = [], False
        while not done:  # each turn waits up to wait_s; the slice is back once the model is done
            done, discard = queues[0].on_notify()
        assert seqs(done) == [0] and discard
        assert len(inflight) == 1  # partition 1's slice is now the oldest: its turn waits for it
        waits.clear()
        gates[1].set()
        done = []
        while not done:
            done, discard = queues[1].on_notify()
        assert waits[0] == 0.5
        assert seqs(done) == [0] and done[0].partition == 1 and discard
    assert len(inflight) == 0


def test_each_worker_waits_for_its_own_oldest_slice() -> None:
    """Two workers in one process share the model: each one's oldest slice is the one its turns
    wait for, even when the other worker's slices are older."""
    import threading

    inflight = InFlight()
    slices = {name: [Future[int](), Future[int]()] for name in ("a", "b")}

    handed, done = threading.Semaphore(0), threading.Event()

    def hand_over(name: str) -> None:  # as a worker's turns do, on the worker's own thread
        for f in slices[name]:
            inflight.add(f)
        handed.release()
        done.wait(5)  # workers live as long as the dataflow (a thread id is reused only after)

    workers = [threading.Thread(target=hand_over, args=(name,)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
        handed.acquire(timeout=5)  # "a" hands its slices over first
    done.set()
    for worker in workers:
        worker.join()
    a, b = slices["a"], slices["b"]
    assert [inflight.is_oldest(f) for f in (*a, *b)] == [True, False, True, False]
    a[0].set_result(1)  # done: out of the model, and the worker's next slice is its oldest
    assert inflight.is_oldest(a[1]) and not inflight.is_oldest(a[0]) and len(inflight) == 3
    b[1].set_result(1)  # a younger slice finishing first changes nothing for the older one
    assert inflight.is_oldest(b[0]) and len(inflight) == 2


def test_a_model_error_in_the_background_fails_the_turn_that_collects_it() -> None:
    class Broken(CountingEmbedder):
        def encode_tokenised(
            self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]
        ) -> np.ndarray:
            raise RuntimeError("model failed")

    ex = Recorded([])
    q = background_queue(Broken(), ex, 4, [])
    q.on_batch([batch(0, 2)])
    ex.run_next()
    with pytest.raises(RuntimeError, match="model failed"):
        q.on_notify()


def test_batches_without_chunks_finish_without_a_model_call_in_the_background() -> None:
    log: list[str] = []
    q = background_queue(CountingEmbedder(), Recorded(log), 4, log)
    deletes = replace(batch(1, 1), docs=tuple(replace(d, chunks=()) for d in batch(1, 1).docs))
    out, discard = q.on_batch([deletes])
    assert seqs(out) == [1] and discard and log == ["write 1"]


def test_a_batch_without_chunks_that_arrives_while_a_slice_is_in_flight_is_not_lost() -> None:
    # All-fenced batches (or deletes only) behind a batch being embedded: each must still be
    # finished, or its partition's later batches wait for it in the commit order for ever.
    log: list[str] = []
    ex = Recorded(log)
    q = background_queue(CountingEmbedder(), ex, 4, log)
    empty = [replace(batch(seq, 1), docs=()) for seq in (1, 2)]
    out, _ = q.on_batch([batch(0, 3)])
    assert out == [] and log == ["submit"]
    out, _ = q.on_batch(empty)  # the slice of batch 0 is still in the model
    assert out == []
    out = seqs(out + drain(q, ex))
    if q.notify_at() is not None:  # the empties may need one more turn once nothing is in flight
        out += seqs(q.on_notify()[0])
    assert sorted(out) == [0, 1, 2] and q.notify_at() is None  # the commit step restores the order


def test_a_slice_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        queue(CountingEmbedder(), slice_chunks=1)


# --- InOrder (the committer) ------------------------------------------------------------------------


def test_batches_are_released_in_their_partitions_order() -> None:
    order = InOrder()
    assert order.add(batch(1, 1)) == []  # finished before batch 0: held
    assert order.add(batch(2, 1)) == []
    assert order.held() == 2
    assert seqs(order.add(batch(0, 1))) == [0, 1, 2]
    assert order.held() == 0
    assert seqs(order.add(batch(3, 1))) == [3]


def test_partitions_are_ordered_independently_and_a_batch_cannot_finish_twice() -> None:
    order = InOrder()
    assert order.add(batch(1, 1, partition=0)) == []
    assert seqs(order.add(batch(0, 1, partition=1))) == [0]  # partition 1 does not wait for 0
    assert seqs(order.add(batch(0, 1, partition=0))) == [0, 1]
    with pytest.raises(ValueError, match="twice"):
        order.add(batch(1, 1, partition=0))
    order.add(batch(3, 1, partition=1))
    with pytest.raises(ValueError, match="twice"):
        order.add(batch(3, 1, partition=1))
