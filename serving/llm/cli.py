"""``streamrag llm``: the embedded generator, llama.cpp's OpenAI-compatible server on a packaged model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def llm() -> None:
    """The embedded default LLM: llama.cpp's server (llama-cpp-python) on Qwen2.5-Coder-1.5B-Instruct.

    \b
    It speaks the OpenAI chat-completions protocol, as TGI and vLLM do, so the API reaches any of them
    through huggingface_hub.InferenceClient by URL (STREAMRAG_TGI_URL):
      streamrag llm serve &
      streamrag llm bench                # time to first token and tokens/s, 1 and 4 clients at once

    \b
    With HF_HUB_OFFLINE=1 huggingface_hub refuses every URL, 127.0.0.1 included: call
    serving.llm.client.allow_self_hosted_inference() once in the client process first.
    """


@llm.command("serve")
@click.option("--host", default=None, help="Interface to bind [default: 127.0.0.1, STREAMRAG_LLM_HOST].")
@click.option("--port", type=int, default=None, help="TCP port [default: 18090, STREAMRAG_LLM_PORT].")
@click.option(
    "--model",
    default=None,
    help="Packaged model: qwen2.5-coder-1.5b (default) or qwen2.5-coder-0.5b [STREAMRAG_LLM_MODEL].",
)
@click.option(
    "--model-path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve this GGUF file (e.g. a fine-tuned model) instead [STREAMRAG_LLM_MODEL_PATH].",
)
@click.option("--n-ctx", type=int, default=None, help="Context window in tokens [default: 4096].")
@click.option("--threads", type=int, default=None, help="CPU threads [default: the cores available].")
@click.option("--verbose", is_flag=True, help="llama.cpp's own timing lines on stderr.")
def serve(
    host: str | None,
    port: int | None,
    model: str | None,
    model_path: Path | None,
    n_ctx: int | None,
    threads: int | None,
    verbose: bool,
) -> None:
    """Load the model and serve /v1/chat/completions, /v1/completions, /v1/models and /health.

    \b
    The first run joins the packaged model's pieces into .cache/models and checks its SHA-256
    (about a second, once). One generation runs at a time; further requests queue. A client that
    disconnects mid-stream ends its generation. Every option is also a setting (STREAMRAG_LLM_<NAME>).

    \b
    Examples:
      streamrag llm serve                                  # http://127.0.0.1:18090
      streamrag llm serve --model qwen2.5-coder-0.5b --port 18091
      curl -sN 127.0.0.1:18090/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "Hi!"}], "stream": true, "max_tokens": 16}'
    """
    import uvicorn

    from serving.llm.server import create_app, model_file
    from serving.llm.settings import LLMServerSettings
    from serving.llm.weights import WeightsNotAvailableError

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "model": model,
        "model_path": model_path,
        "n_ctx": n_ctx,
        "threads": threads,
    }
    settings = LLMServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        path = model_file(settings, progress=lambda m: click.echo(f"streamrag llm: {m}", err=True))
    except WeightsNotAvailableError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    click.echo(
        f"streamrag llm: loading {path.name} (n_ctx {settings.n_ctx}, {settings.threads} threads)", err=True
    )
    app = create_app(settings, path, verbose=verbose)
    click.echo(
        f"streamrag llm: serving {settings.model_alias} on http://{settings.host}:{settings.port}", err=True
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


@llm.command("bench")
@click.option(
    "--url", default=None, help="The server [default: http://<STREAMRAG_LLM_HOST>:<STREAMRAG_LLM_PORT>]."
)
@click.option(
    "--concurrency", "-c", type=int, multiple=True, default=(1, 4), show_default=True,
    help="Requests sent at once; repeat for several rounds.",
)  # fmt: skip
@click.option("--max-new-tokens", type=int, default=64, show_default=True, help="Tokens per request.")
def bench(url: str | None, concurrency: tuple[int, ...], max_new_tokens: int) -> None:
    """Measure time to first token and tokens/s of a running server, one round per concurrency.

    \b
    Each request is a RAG-sized chat prompt (about 660 tokens), streamed through InferenceClient.
    Examples:
      streamrag llm bench                          # 1 then 4 concurrent requests of 64 tokens
      streamrag llm bench -c 1 -c 2 --max-new-tokens 128 --url http://127.0.0.1:18091
    """
    from serving.llm.bench import bench_round
    from serving.llm.settings import LLMServerSettings

    if url is None:
        settings = LLMServerSettings()
        url = f"http://{settings.host}:{settings.port}"
    bench_round(url, 1, 2)  # warm the server up; not measured
    for n in concurrency:
        click.echo(bench_round(url, n, max_new_tokens).summary())


if __name__ == "__main__":
    llm()
