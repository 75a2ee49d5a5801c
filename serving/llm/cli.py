"""``streamrag llm``: the embedded LLM server behind Text Generation Inference's HTTP protocol."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def llm() -> None:
    """The embedded default LLM (SmolLM2-135M-Instruct, on CPU) served like Text Generation Inference.

    \b
    Any TGI or OpenAI client works against it, e.g. huggingface_hub:
      streamrag llm serve &
      python -c "from huggingface_hub import InferenceClient as C; \\
        print(C('http://127.0.0.1:18090').text_generation('Paris is', max_new_tokens=12))"
      streamrag llm bench                # time to first token and tokens/s, 1 and 3 at once

    \b
    With HF_HUB_OFFLINE=1 huggingface_hub refuses every URL, 127.0.0.1 included: call
    serving.llm.client.allow_self_hosted_inference() once in the client process first.
    """


@llm.command("serve")
@click.option("--host", default=None, help="Interface to bind [default: 127.0.0.1, STREAMRAG_LLM_HOST].")
@click.option("--port", type=int, default=None, help="TCP port [default: 18090, STREAMRAG_LLM_PORT].")
@click.option(
    "--max-concurrent",
    type=int,
    default=None,
    help="Generations running at once; more requests wait [default: 4, STREAMRAG_LLM_MAX_CONCURRENT].",
)
@click.option(
    "--model-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Serve this transformers model folder (e.g. a fine-tuned checkpoint) instead of the bundled one.",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
def serve(
    host: str | None, port: int | None, max_concurrent: int | None, model_path: Path | None, log_level: str
) -> None:
    """Load the model once and serve TGI's /generate, /generate_stream, OpenAI's /v1/chat/completions,
    /info, /health and /metrics until interrupted.

    \b
    The first run converts the bundled GGUF model into .cache/models (about 30 s, once); later
    starts take a few seconds. Every option is also a setting (STREAMRAG_LLM_<NAME>), e.g. the limits
    STREAMRAG_LLM_MAX_NEW_TOKENS (512), STREAMRAG_LLM_MAX_INPUT_TOKENS (2048),
    STREAMRAG_LLM_QUEUE_TIMEOUT_S (30, then 503), STREAMRAG_LLM_THREADS (2 per generation).

    \b
    Examples:
      streamrag llm serve                          # http://127.0.0.1:18090
      streamrag llm serve --port 18091 --max-concurrent 2
      curl -s 127.0.0.1:18090/generate -H 'content-type: application/json' \\
        -d '{"inputs": "The capital of France is", "parameters": {"max_new_tokens": 8}}'
      curl -sN 127.0.0.1:18090/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "Hi!"}], "stream": true, "max_tokens": 16}'
    """
    import uvicorn

    from serving.llm.loading import ModelNotAvailableError
    from serving.llm.model import LocalGenerator
    from serving.llm.server import create_app
    from serving.llm.settings import LLMServerSettings

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "max_concurrent": max_concurrent,
        "model_path": model_path,
    }
    settings = LLMServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    click.echo(f"streamrag llm: loading {settings.model_path or settings.model_id} ...", err=True)
    try:
        # Loaded here rather than in the app's startup so that a missing model is a clear error and
        # exit code 2, not a uvicorn startup traceback.
        generator = LocalGenerator.load(settings.models_dir, settings.model_path, settings.threads)
    except ModelNotAvailableError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    click.echo(
        f"streamrag llm: serving {settings.model_id} on http://{settings.host}:{settings.port}", err=True
    )
    uvicorn.run(create_app(settings, generator), host=settings.host, port=settings.port, log_level=log_level)


@llm.command("bench")
@click.option(
    "--url", default=None, help="The server [default: http://<STREAMRAG_LLM_HOST>:<STREAMRAG_LLM_PORT>]."
)
@click.option(
    "--concurrency", "-c", type=int, multiple=True, default=(1, 3), show_default=True,
    help="Requests sent at once; repeat for several rounds.",
)  # fmt: skip
@click.option("--max-new-tokens", type=int, default=64, show_default=True, help="Tokens per request.")
@click.option("--prompt", default=None, help='Prompt of every request [default: "Once upon a time"].')
def bench(url: str | None, concurrency: tuple[int, ...], max_new_tokens: int, prompt: str | None) -> None:
    """Measure time to first token and tokens/s of a running server, one round per concurrency.

    \b
    Examples:
      streamrag llm bench                          # 1 then 3 concurrent requests of 64 tokens
      streamrag llm bench -c 1 -c 2 -c 4 --max-new-tokens 128 --url http://127.0.0.1:18091
    """
    from serving.llm.bench import DEFAULT_PROMPT, bench_round
    from serving.llm.settings import LLMServerSettings

    if url is None:
        settings = LLMServerSettings()
        url = f"http://{settings.host}:{settings.port}"
    bench_round(url, 1, 2, prompt or DEFAULT_PROMPT)  # warm the server up; not measured
    for n in concurrency:
        click.echo(bench_round(url, n, max_new_tokens, prompt or DEFAULT_PROMPT).summary())


if __name__ == "__main__":
    llm()
