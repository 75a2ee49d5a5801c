"""The LLM server end to end: the real model behind a real uvicorn, driven by huggingface_hub's clients.

One server per module (a background thread on a free port) serves every test; a second one with a
single slot and a short queue timeout tests overload. Generations stay short (8-24 tokens) so the
module runs in well under two minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from huggingface_hub import InferenceClient
from huggingface_hub.errors import OverloadedError, ValidationError

from serving.llm.cli import llm
from serving.llm.client import allow_self_hosted_inference
from serving.llm.model import LocalGenerator
from serving.llm.server import create_app
from serving.llm.settings import LLMServerSettings
from tests.utils.net import free_port

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "What is 2+2?"}]
MAX_INPUT_TOKENS = 256


class _ServerThread:
    """A real uvicorn server for ``app`` in a daemon thread; :meth:`stop` shuts it down gracefully."""

    def __init__(self, app: Any, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name=f"llm-server-{port}", daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 120.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the LLM server did not start")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def generator() -> LocalGenerator:
    settings = LLMServerSettings()
    return LocalGenerator.load(settings.models_dir, settings.model_path, settings.threads)


@pytest.fixture(scope="module")
def server(generator: LocalGenerator) -> Iterator[str]:
    settings = LLMServerSettings(port=free_port(), max_concurrent=4, max_input_tokens=MAX_INPUT_TOKENS)
    running = _ServerThread(create_app(settings, generator), settings.port)
    yield running.start()
    running.stop()


@pytest.fixture(scope="module")
def self_hosted() -> None:
    # conftest sets HF_HUB_OFFLINE, which otherwise makes huggingface_hub refuse even 127.0.0.1.
    allow_self_hosted_inference()


@pytest.fixture(scope="module")
def client(server: str, self_hosted: None) -> InferenceClient:
    return InferenceClient(base_url=server, timeout=120)


def _metric(base_url: str, name: str, labels: str = "") -> float:
    """The value of one sample of /metrics, e.g. ``_metric(url, "streamrag_llm_active_slots")``."""
    text = httpx.get(f"{base_url}/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _sse_payloads(lines: Iterator[str]) -> Iterator[Any]:
    for line in lines:
        if line.startswith("data:"):
            data = line[len("data:") :].strip()
            yield data if data == "[DONE]" else json.loads(data)


# --- TGI text generation -----------------------------------------------------------------------------


def test_streamed_tokens_join_to_the_non_streamed_text(client: InferenceClient) -> None:
    text = client.text_generation(PROMPT, max_new_tokens=16)
    tokens = list(client.text_generation(PROMPT, max_new_tokens=16, stream=True))

    assert text.strip()
    assert 1 <= len(tokens) <= 16
    assert "".join(tokens) == text


def test_details_describe_the_generation(client: InferenceClient) -> None:
    out = client.text_generation(PROMPT, max_new_tokens=12, details=True, decoder_input_details=True)
    events = list(client.text_generation(PROMPT, max_new_tokens=12, details=True, stream=True))

    assert out.details is not None
    assert out.details.finish_reason in ("length", "eos_token")
    assert out.details.generated_tokens == len(out.details.tokens)
    assert "".join(t.text for t in out.details.tokens) == out.generated_text
    assert all(t.logprob <= 0 for t in out.details.tokens)
    assert len(out.details.prefill) == 5  # "The capital of France is" is 5 tokens
    assert out.details.prefill[0].logprob is None
    assert [e.index for e in events] == list(range(1, len(events) + 1))
    assert all(e.generated_text is None for e in events[:-1])
    assert events[-1].generated_text == out.generated_text
    assert events[-1].details is not None
    assert events[-1].details.generated_tokens == len(events)
    assert events[-1].details.input_length == 5


def test_generation_ends_at_a_stop_sequence(client: InferenceClient) -> None:
    free = client.text_generation(PROMPT, max_new_tokens=16)
    stop = free.strip().split()[0]  # the first word of the free answer, so the stop surely occurs

    out = client.text_generation(PROMPT, max_new_tokens=16, stop=[stop], details=True)

    assert out.details is not None
    assert out.details.finish_reason == "stop_sequence"
    assert out.generated_text.endswith(stop)  # TGI keeps the stop sequence
    assert free.startswith(out.generated_text)


def test_return_full_text_prepends_the_prompt(client: InferenceClient) -> None:
    out = client.text_generation(PROMPT, max_new_tokens=8, return_full_text=True)
    assert out.startswith(PROMPT)
    assert len(out) > len(PROMPT)


def test_seeded_sampling_is_reproducible(client: InferenceClient) -> None:
    kwargs: dict[str, Any] = {"max_new_tokens": 16, "do_sample": True, "temperature": 1.3, "top_k": 50}
    first = client.text_generation("Once upon a time", seed=7, details=True, **kwargs)
    again = client.text_generation("Once upon a time", seed=7, details=True, **kwargs)

    assert first.generated_text == again.generated_text
    assert first.details is not None and first.details.seed == 7


def test_truncate_keeps_the_last_tokens(server: str) -> None:
    long_prompt = "word " * (MAX_INPUT_TOKENS + 50)
    body = {
        "inputs": long_prompt,
        "parameters": {"max_new_tokens": 4, "truncate": 32, "details": True, "decoder_input_details": True},
    }
    response = httpx.post(f"{server}/generate", json=body, timeout=60)

    assert response.status_code == 200, response.text
    assert len(response.json()["details"]["prefill"]) == 32


# --- OpenAI chat ---------------------------------------------------------------------------------------


def test_chat_completion_streamed_equals_non_streamed(client: InferenceClient) -> None:
    reply = client.chat_completion(CHAT, max_tokens=16)
    chunks = list(client.chat_completion(CHAT, max_tokens=16, stream=True))

    content = reply.choices[0].message.content
    assert content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == content
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


def test_chat_stop_sequences_are_cut_from_the_reply(client: InferenceClient) -> None:
    free = client.chat_completion(CHAT, max_tokens=16).choices[0].message.content
    assert free is not None
    words = free.split()
    assert len(words) >= 3, free
    stop = " " + words[2]  # cut after the second word
    expected = free[: free.index(stop)]

    reply = client.chat_completion(CHAT, max_tokens=16, stop=[stop])
    chunks = list(client.chat_completion(CHAT, max_tokens=16, stop=[stop], stream=True))

    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected


def test_chat_stream_ends_with_done_and_optional_usage(server: str) -> None:
    body = {"messages": CHAT, "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        payloads = list(_sse_payloads(response.iter_lines()))

    assert payloads[-1] == "[DONE]"
    usage_chunk = payloads[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 8
    assert all(p["object"] == "chat.completion.chunk" for p in payloads[:-1])


# --- operations ----------------------------------------------------------------------------------------


def test_info_and_health(server: str) -> None:
    info = httpx.get(f"{server}/info").json()
    health = httpx.get(f"{server}/health")

    assert info["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["max_input_tokens"] == MAX_INPUT_TOKENS
    assert info["max_total_tokens"] == MAX_INPUT_TOKENS + info["max_new_tokens"]
    assert info["max_concurrent_requests"] == 4
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_metrics_count_requests_and_time_to_first_token(server: str, client: InferenceClient) -> None:
    before = _metric(server, "streamrag_llm_time_to_first_token_seconds_count")
    client.text_generation(PROMPT, max_new_tokens=8)

    assert _metric(server, "streamrag_llm_time_to_first_token_seconds_count") == before + 1
    assert _metric(server, "streamrag_llm_tokens_per_second_count") >= 1
    assert _metric(server, "streamrag_llm_requests_total", '{route="/",status="200"}') >= 1
    assert _metric(server, "streamrag_llm_slots") == 4


# --- concurrency and cancellation ------------------------------------------------------------------------


def test_concurrent_requests_interleave(client: InferenceClient) -> None:
    first_token: dict[int, float] = {}
    finished: dict[int, float] = {}
    texts: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            pieces = []
            for token in client.text_generation(f"{PROMPT} (question {i})", max_new_tokens=16, stream=True):
                first_token.setdefault(i, time.perf_counter())
                pieces.append(token)
            finished[i] = time.perf_counter()
            texts[i] = "".join(pieces)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert not errors
    assert sorted(finished) == [0, 1, 2]
    assert all(texts.values())
    # Interleaved, not one after the other: every request had its first token before any finished.
    assert max(first_token.values()) < min(finished.values())


def test_a_client_that_disconnects_frees_its_slot_and_stops_generation(server: str) -> None:
    tokens_before = _metric(server, "streamrag_llm_generated_tokens_total")
    cancelled_before = _metric(server, "streamrag_llm_generations_total", '{finish_reason="cancelled"}')
    # "Once upon a time" runs on for hundreds of tokens without an end-of-turn token (greedy).
    body = {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 400}}

    with httpx.stream("POST", f"{server}/generate_stream", json=body, timeout=60) as response:
        events = _sse_payloads(response.iter_lines())
        assert [next(events)["index"], next(events)["index"]] == [1, 2]
        assert _metric(server, "streamrag_llm_active_slots") == 1
    # Leaving the block closed the connection after two events.

    deadline = time.monotonic() + 5
    while _metric(server, "streamrag_llm_active_slots") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server, "streamrag_llm_active_slots") == 0
    assert (
        _metric(server, "streamrag_llm_generations_total", '{finish_reason="cancelled"}')
        == cancelled_before + 1
    )
    # 400 tokens would take about 25 s; it stopped within a few tokens of the disconnect.
    assert _metric(server, "streamrag_llm_generated_tokens_total") - tokens_before < 40


@pytest.mark.usefixtures("self_hosted")
def test_overloaded_server_answers_503(generator: LocalGenerator) -> None:
    settings = LLMServerSettings(port=free_port(), max_concurrent=1, queue_timeout_s=0.3, warmup=False)
    running = _ServerThread(create_app(settings, generator), settings.port)
    url = running.start()
    try:
        busy = {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 200}}
        with httpx.stream("POST", f"{url}/generate_stream", json=busy, timeout=60) as response:
            # Keep the iterator referenced: a collected generator closes the stream, which is a disconnect.
            events = _sse_payloads(response.iter_lines())
            assert next(events)["index"] == 1  # the only slot is now taken
            refused = httpx.post(f"{url}/generate", json={"inputs": PROMPT}, timeout=60)
            with pytest.raises(OverloadedError):
                InferenceClient(base_url=url).text_generation(PROMPT, max_new_tokens=4)

        assert refused.status_code == 503
        assert refused.json()["error_type"] == "overloaded"
        # The disconnected stream frees the slot: the next request is served.
        assert InferenceClient(base_url=url, timeout=60).text_generation(PROMPT, max_new_tokens=4)
    finally:
        running.stop()


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 0}}, "max_new_tokens"),
        ("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 100_000}}, "must be <= 512"),
        ("/generate", {"inputs": "", "parameters": {}}, "inputs"),
        ("/generate", {"inputs": "word " * (MAX_INPUT_TOKENS + 10)}, "must have at most 256 tokens"),
        ("/generate", {"inputs": PROMPT, "parameters": {"temperature": 0}}, "temperature"),
        ("/generate", {"inputs": PROMPT, "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, "up to 4"),
        ("/generate", {"inputs": PROMPT, "parameters": {"best_of": 2}}, "not supported"),
        ("/generate_stream", {"inputs": PROMPT, "parameters": {"top_p": 1.5}}, "top_p"),
        ("/v1/chat/completions", {"messages": []}, "messages"),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": -1}, "max_tokens"),
        ("/v1/chat/completions", {"messages": CHAT, "n": 2}, "not supported"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_422(server: str, path: str, body: Any, message: str) -> None:
    response = httpx.post(f"{server}{path}", json=body, timeout=30)

    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert message in response.json()["error"]


def test_the_client_raises_validation_errors(client: InferenceClient) -> None:
    with pytest.raises(ValidationError, match="max_new_tokens"):
        client.text_generation(PROMPT, max_new_tokens=100_000)
    with pytest.raises(ValidationError, match="max_new_tokens"):
        list(client.text_generation(PROMPT, max_new_tokens=100_000, stream=True))


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(llm, ["serve", "--help"])

    assert result.exit_code == 0
    assert "streamrag llm serve --port" in result.output
    assert "/generate" in result.output


@pytest.mark.usefixtures("generator")  # the model is converted, so the server starts in seconds
def test_cli_serves_until_interrupted() -> None:
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "STREAMRAG_LLM_WARMUP": "false"}
    command = [
        sys.executable,
        "-m",
        "serving.llm.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in stderr
