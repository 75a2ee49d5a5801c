"""Slots, queueing and cancellation of the engine (serving.llm.engine), with the real model."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from serving.llm.engine import Engine, OverloadedError
from serving.llm.metrics import LLMMetrics
from serving.llm.model import GenerationParams, LocalGenerator
from serving.llm.settings import LLMServerSettings

pytestmark = pytest.mark.slow

LONG = GenerationParams(max_new_tokens=300)  # "Once upon a time" runs on without an end-of-turn token
SHORT = GenerationParams(max_new_tokens=3)


@pytest.fixture(scope="module")
def generator() -> LocalGenerator:
    return LocalGenerator.load(LLMServerSettings().models_dir, threads=1)


def _engine(generator: LocalGenerator, slots: int, timeout_s: float) -> Engine:
    return Engine(generator, LLMMetrics(slots), max_concurrent=slots, queue_timeout_s=timeout_s)


async def _wait_idle(engine: Engine, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while engine.active and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


def test_a_request_beyond_the_slots_waits_then_is_refused(generator: LocalGenerator) -> None:
    async def scenario() -> None:
        engine = _engine(generator, slots=1, timeout_s=0.2)
        ids = generator.encode("Once upon a time")
        busy = await engine.start(ids, LONG)
        with pytest.raises(OverloadedError, match="1 generation slots"):
            await engine.start(ids, SHORT)
        busy.cancel()
        await _wait_idle(engine)
        assert engine.active == 0
        steps = [s async for s in (await engine.start(ids, SHORT)).steps()]
        assert steps[-1].result is not None and steps[-1].result.finish_reason == "length"
        engine.shutdown()

    asyncio.run(scenario())


def test_a_waiting_request_gets_the_slot_when_it_frees(generator: LocalGenerator) -> None:
    async def scenario() -> None:
        engine = _engine(generator, slots=1, timeout_s=30)
        ids = generator.encode("Once upon a time")
        first = await engine.start(ids, SHORT)
        second = asyncio.create_task(engine.start(ids, SHORT))
        await asyncio.sleep(0)
        assert engine.metrics.registry.get_sample_value("streamrag_llm_waiting_requests") == 1  # queued
        assert len([s async for s in first.steps()]) == 3
        assert len([s async for s in (await second).steps()]) == 3
        await _wait_idle(engine)
        assert engine.active == 0
        engine.shutdown()

    asyncio.run(scenario())


def test_a_request_cancelled_while_waiting_leaks_no_slot(generator: LocalGenerator) -> None:
    async def scenario() -> None:
        engine = _engine(generator, slots=1, timeout_s=30)
        ids = generator.encode("Once upon a time")
        busy = await engine.start(ids, LONG)
        waiting = asyncio.create_task(engine.start(ids, SHORT))
        await asyncio.sleep(0.05)
        waiting.cancel()  # e.g. its client went away while queued
        with pytest.raises(asyncio.CancelledError):
            await waiting
        busy.cancel()
        await _wait_idle(engine)
        # The one slot is free again: a new request starts at once instead of waiting.
        started = await asyncio.wait_for(engine.start(ids, SHORT), 1.0)
        assert len([s async for s in started.steps()]) == 3
        engine.shutdown()

    asyncio.run(scenario())


def test_leaving_the_stream_early_cancels_the_generation(generator: LocalGenerator) -> None:
    async def scenario() -> None:
        engine = _engine(generator, slots=2, timeout_s=1)
        running = await engine.start(generator.encode("Once upon a time"), LONG)
        async with contextlib.aclosing(running.steps()) as steps:
            async for step in steps:
                if step.index == 2:
                    break
        await _wait_idle(engine)
        assert engine.active == 0
        sample = engine.metrics.registry.get_sample_value
        assert sample("streamrag_llm_generations_total", {"finish_reason": "cancelled"}) == 1
        assert (sample("streamrag_llm_generated_tokens_total") or 0) < 20
        engine.shutdown()

    asyncio.run(scenario())
