"""The generator through the product's path against llama.cpp's engine alone, side by side in one run.

Goal (issue 18): time to first token and decode speed through the embedded server (HTTP + SSE via
``huggingface_hub.InferenceClient``, as the API calls it) within 1.2x of the same llama.cpp engine
called in-process (``llama_cpp.Llama``) with the same model, prompt, threads and batch size. The two
alternate request by request (which goes first alternates too), each on its own copy of the model, so machine noise hits both alike;
the engine alone is the limit, so the ratio is the overhead the product adds.

Prompts are the API's own (:func:`serving.generation.prompt.build_prompt`: the cached few-shot
prefix, then Debian FAQ sections as documents at the API's token budget and one of their headings as
the question); every request gets other sections, as every question retrieves its own context.
Then ``--concurrency`` requests at once through the server (they queue: one generation at a time).

    python -m bench.llm                    # 6 pairs of 64 tokens, then 4 clients at once
    python -m bench.llm --pairs 3 --max-new-tokens 32 --concurrency 2
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import click

from serving.generation.prompt import Prompt, build_prompt
from serving.llm.bench import RequestTiming, _faq_sections, _one, bench_round, time_stream
from serving.llm.client import allow_self_hosted_inference
from serving.llm.settings import LLMServerSettings
from serving.retrieval.search import Hit
from serving.settings import ApiSettings


def api_prompt(offset: int, count_tokens: Callable[[str], int]) -> Prompt:
    """The API's prompt for one FAQ heading, its section first among three neighbouring sections."""
    docs = _faq_sections()
    picked = [docs[(offset + i) % len(docs)] for i in range(3)]
    hits = [
        Hit(
            point_id=d.doc_id,
            doc_id=d.doc_id,
            tenant="bench",
            version=1,
            chunk_index=0,
            text=d.body,
            parent_text=d.body,
            title=d.title,
            score=1.0,
            dense_score=1.0,
            source_ts="",
            indexed_ts="",
        )
        for d in picked
    ]
    return build_prompt(picked[0].title, hits, count_tokens, ApiSettings().context_token_budget)


def engine_one(llm: object, messages: list[dict[str, str]], max_new_tokens: int) -> RequestTiming:
    """One streamed chat completion straight through llama-cpp-python, timed like the server's."""
    start = time.perf_counter()
    chunks = llm.create_chat_completion(  # type: ignore[attr-defined]
        messages, max_tokens=max_new_tokens, temperature=0.0, stream=True
    )
    return time_stream(
        start, chunks, lambda c: bool(c["choices"] and c["choices"][0]["delta"].get("content"))
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--pairs", default=6, show_default=True, help="Requests each way, alternating.")
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--concurrency", default=4, show_default=True, help="Clients at once in the last round.")
def main(pairs: int, max_new_tokens: int, concurrency: int) -> None:
    from llama_cpp import Llama

    from serving.llm.launch import start_llm
    from serving.llm.server import model_file
    from serving.retrieval.search import QueryEncoder

    allow_self_hosted_inference()
    settings = LLMServerSettings()
    path = model_file(settings)
    counter = QueryEncoder(ApiSettings().embedding_model_path, frozen=False).count_tokens
    port = settings.port + 7  # beside a server the user may run on the default port
    server = start_llm(port)
    try:
        from huggingface_hub import InferenceClient

        client = InferenceClient(base_url=f"http://127.0.0.1:{port}", timeout=600)
        engine = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.threads,
            n_batch=settings.n_batch,
            verbose=False,
        )
        warm = api_prompt(10_000, counter).messages
        _one(client, warm, 2), engine_one(engine, warm, 2)  # the shared prefix is prefilled once each
        prompts = [api_prompt(i * 7, counter).messages for i in range(pairs)]
        rows: list[tuple[RequestTiming, RequestTiming]] = []
        for i, messages in enumerate(prompts):
            if i % 2:  # which goes first alternates, so neither always runs after the other's idle spell
                direct = engine_one(engine, messages, max_new_tokens)
                served = _one(client, messages, max_new_tokens)
            else:
                served = _one(client, messages, max_new_tokens)
                direct = engine_one(engine, messages, max_new_tokens)
            rows.append((served, direct))
            click.echo(
                f"pair {i + 1}/{pairs}: server ttft {served.ttft_s:.2f} s, {served.decode_rate:.1f} tok/s | "
                f"engine ttft {direct.ttft_s:.2f} s, {direct.decode_rate:.1f} tok/s"
            )
        del engine
        s_ttft = statistics.median(r[0].ttft_s for r in rows)
        e_ttft = statistics.median(r[1].ttft_s for r in rows)
        s_rate = statistics.median(r[0].decode_rate for r in rows)
        e_rate = statistics.median(r[1].decode_rate for r in rows)
        tokens = statistics.median(len(m[-1]["content"]) for m in prompts)
        click.echo(
            f"model {path.name}, {settings.threads} threads, n_batch {settings.n_batch}, "
            f"median last-turn {tokens:.0f} chars"
        )
        click.echo(f"TTFT   server {s_ttft:.2f} s, engine {e_ttft:.2f} s: ratio {s_ttft / e_ttft:.2f}")
        click.echo(
            f"decode server {s_rate:.1f} tok/s, engine {e_rate:.1f} tok/s: ratio {e_rate / s_rate:.2f}"
        )
        others = [api_prompt(1000 + i * 7, counter).messages for i in range(concurrency)]
        round_ = bench_round(f"http://127.0.0.1:{port}", concurrency, max_new_tokens, prompts=others)
        click.echo(f"server, {round_.summary()}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
