"""The local generator with the real bundled model (serving.llm.model). Short generations only."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving.llm.model import GenerationParams, LocalGenerator
from serving.llm.settings import LLMServerSettings

pytestmark = pytest.mark.slow

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def generator() -> LocalGenerator:
    # These tests generate in pytest's main thread, where 2 intra-op threads measured 2-4x slower
    # than 1 on this busy 2-core machine (the server generates in worker threads instead).
    return LocalGenerator.load(LLMServerSettings().models_dir, threads=1)


def test_streaming_yields_the_same_tokens_as_generate(generator: LocalGenerator) -> None:
    params = GenerationParams(max_new_tokens=12)
    result = generator.generate(PROMPT, params)
    steps = list(generator.stream(PROMPT, params))

    assert result.finish_reason == "length"
    assert result.generated_tokens == 12
    assert [s.index for s in steps] == list(range(1, 13))
    assert [s.token for s in steps] == result.tokens
    assert "".join(s.token.text for s in steps) == result.text
    assert all(s.result is None for s in steps[:-1])
    assert steps[-1].result == result


def test_a_chat_answer_ends_with_a_special_end_of_turn_token(generator: LocalGenerator) -> None:
    prompt = generator.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])
    result = generator.generate(prompt, GenerationParams(max_new_tokens=40))

    assert result.finish_reason == "eos_token"
    assert result.tokens[-1].special
    assert result.tokens[-1].text == ""
    assert "Paris" in result.text


def test_cancelling_stops_within_one_token(generator: LocalGenerator) -> None:
    cancel = threading.Event()
    steps = []
    for step in generator.stream(PROMPT, GenerationParams(max_new_tokens=200), cancel):
        steps.append(step)
        if step.index == 2:
            cancel.set()

    assert len(steps) == 3
    assert steps[-1].result is not None
    assert steps[-1].result.finish_reason == "cancelled"


def test_cancelled_before_start_generates_nothing(generator: LocalGenerator) -> None:
    cancel = threading.Event()
    cancel.set()

    result = generator.generate(PROMPT, GenerationParams(max_new_tokens=50), cancel)

    assert result.finish_reason == "cancelled"
    assert result.tokens == []


def test_generation_stops_at_the_first_stop_sequence(generator: LocalGenerator) -> None:
    free = generator.generate(PROMPT, GenerationParams(max_new_tokens=20)).text
    stop = free.split()[2]  # a word that surely occurs

    result = generator.generate(PROMPT, GenerationParams(max_new_tokens=20, stop=(stop,)))

    assert result.finish_reason == "stop_sequence"
    assert stop in result.text
    assert free.startswith(result.text)
    assert len(result.text) < len(free)


def test_seeded_sampling_repeats_and_reports_its_seed(generator: LocalGenerator) -> None:
    params = GenerationParams(max_new_tokens=12, temperature=1.2, top_p=0.95, seed=11)
    unseeded = GenerationParams(max_new_tokens=2, do_sample=True)

    assert generator.generate(PROMPT, params).text == generator.generate(PROMPT, params).text
    assert generator.generate(PROMPT, params).seed == 11
    assert generator.generate(PROMPT, unseeded).seed is not None  # drawn, so the run can be repeated
    assert generator.generate(PROMPT, GenerationParams(max_new_tokens=2)).seed is None  # greedy


def test_concurrent_generations_do_not_disturb_each_other(generator: LocalGenerator) -> None:
    prompts = [PROMPT, "The capital of France is", "def fibonacci(n):"]
    params = GenerationParams(max_new_tokens=10)
    sequential = [generator.generate(p, params).text for p in prompts]

    with ThreadPoolExecutor(3) as pool:
        concurrent = list(pool.map(lambda p: generator.generate(p, params).text, prompts))

    assert concurrent == sequential


def test_prefill_logprobs_cover_the_prompt(generator: LocalGenerator) -> None:
    result = generator.generate(
        "The capital of France is", GenerationParams(max_new_tokens=2, prefill_logprobs=True)
    )

    assert [t.id for t in result.prefill] == generator.encode("The capital of France is")
    assert result.prefill[0].logprob is None
    assert all(t.logprob is not None and t.logprob <= 0 for t in result.prefill[1:])
