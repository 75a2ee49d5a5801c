"""``streamrag serve`` (the RAG API), ``streamrag ask`` (its client), ``llm``, ``lag`` and ``eval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from serving.lag.cli import lag
from serving.llm.cli import llm

__all__ = ["ask", "eval_cmd", "lag", "llm", "serve"]


@click.command("serve")
@click.option("--host", default=None, help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option(
    "--pipeline/--no-pipeline",
    "with_pipeline",
    default=None,
    help="Run the feature pipeline in this process (default: yes with embedded Qdrant).",
)
@click.option(
    "--llm/--no-llm",
    "with_llm",
    default=None,
    help="Start the embedded LLM server (default: yes unless STREAMRAG_TGI_URL is set).",
)
@click.option(
    "--training",
    "with_training",
    is_flag=True,
    help="Also run drift-triggered training and re-index-on-promotion here (needed with embedded Qdrant).",
)
def serve(
    host: str | None, port: int | None, with_pipeline: bool | None, with_llm: bool | None, with_training: bool
) -> None:
    """Start the streaming RAG API.

    \b
    Endpoints: POST /v1/search, POST /v1/answer (SSE), GET /v1/documents/{id}, GET /v1/lag,
    GET /v1/freshness, GET /dashboard, GET /healthz, /readyz, /metrics; OpenAPI at /docs.
    Authenticate with X-API-Key (STREAMRAG_API_KEYS maps keys to tenants; dev default: dev-key).
    \b
    Examples:
      streamrag serve                                   # all-in-one: API + pipeline + local LLM
      STREAMRAG_TGI_URL=http://tgi:80 STREAMRAG_QDRANT_URL=http://qdrant:6333 \\
        streamrag serve --host 0.0.0.0 --no-pipeline    # production: each service on its own
    """
    import uvicorn

    from app.embedded import Embedded, start_pipeline, start_training
    from serving.api.app import build_state, create_app
    from serving.llm.launch import start_llm
    from serving.settings import ApiSettings
    from streamrag.config import configure_logging

    settings = ApiSettings(**{k: v for k, v in (("host", host), ("port", port)) if v is not None})  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    run_pipeline = (
        with_pipeline
        if with_pipeline is not None
        else (settings.run_pipeline if settings.run_pipeline is not None else settings.qdrant.url is None)
    )
    run_llm = with_llm if with_llm is not None else settings.tgi_url is None
    embedded = Embedded()
    if run_llm:
        embedded.processes.append(start_llm(settings.llm_port))
    client = settings.qdrant.store()
    if run_pipeline:
        embedded.pipeline = start_pipeline(client)
    if with_training:
        start_training(embedded, client)
    if not run_pipeline and settings.query_torch_threads:
        import torch

        torch.set_num_threads(settings.query_torch_threads)  # process-wide: not with the pipeline here
    state = build_state(settings, store=client)
    click.echo(
        f"streamrag API on http://{settings.host}:{settings.port} (docs at /docs, dashboard at /dashboard)"
    )
    try:
        uvicorn.run(
            create_app(settings, state),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
        )
    finally:
        embedded.stop()
        client.close()


@click.command("ask")
@click.argument("question")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The API.")
@click.option("--api-key", envvar="STREAMRAG_API_KEY", default="dev-key", show_default=True)
@click.option("-k", type=int, default=5, show_default=True, help="Chunks to retrieve.")
@click.option("--filter", "filters", multiple=True, metavar="FIELD=VALUE", help="Metadata equality filter.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole answer (one JSON body).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON / SSE events.")
@click.option(
    "--trace", "show_trace", is_flag=True, help="Then print the request's trace: every step, timed."
)
@click.option(
    "--rate",
    type=click.Choice(["ask", "up", "down", "no"]),
    default="ask",
    show_default=True,
    help="Rate the answer: ask (a key press, on a terminal), up, down, or no.",
)
@click.option("--comment", default=None, help="With a rating: a comment.")
@click.option("--correction", default=None, help="With a rating: what the answer should have said.")
def ask(
    question: str,
    url: str,
    api_key: str,
    k: int,
    filters: tuple[str, ...],
    no_stream: bool,
    as_json: bool,
    show_trace: bool,
    rate: str,
    comment: str | None,
    correction: str | None,
) -> None:
    """Ask the RAG API a question; the answer streams in as it is generated, then its sources.

    After the answer, press u (thumbs up) or d (down), or any other key to skip: ratings go to the
    feedback topic and become training data. --trace prints what happened at each step.

    \b
      streamrag ask "How do I install a package from a .deb file?"
      streamrag ask "What is dpkg?" --filter source=debian-faq -k 3 --trace
      streamrag ask "What is apt?" --rate down --correction "apt is Debian's package manager."
    """
    body = {
        "query": question,
        "k": k,
        "stream": not no_stream,
        "filters": dict(f.split("=", 1) for f in filters),
    }
    headers = {"X-API-Key": api_key}
    try:
        request_id = _ask(url, body, headers, no_stream, as_json)
        if request_id is None:
            return
        if show_trace:
            _show_trace(url, headers, request_id)
        rating = rate
        if rating == "ask":
            rating = _prompt_rating() if sys.stdin.isatty() and sys.stdout.isatty() else "no"
        if rating in ("up", "down"):
            resp = httpx.post(
                f"{url}/v1/feedback",
                json={
                    "request_id": request_id,
                    "rating": rating,
                    "comment": comment,
                    "correction": correction,
                },
                headers=headers,
                timeout=30,
            )
            _check(resp)
            click.secho(f"rated {rating}: thank you", fg="green")
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"cannot reach the API at {url}: {exc} (is `streamrag serve` running?)"
        ) from None


def _ask(
    url: str, body: dict[str, Any], headers: dict[str, str], no_stream: bool, as_json: bool
) -> str | None:
    """Print the answer; return its request id."""
    if no_stream:
        resp = httpx.post(f"{url}/v1/answer", json=body, headers=headers, timeout=300)
        _check(resp)
        data = resp.json()
        click.echo(json.dumps(data, indent=2) if as_json else data["answer"])
        if not as_json:
            _print_citations(data["citations"])
            _print_guardrails(data.get("guardrails", []))
        return str(data["request_id"])
    request_id = None
    with httpx.stream("POST", f"{url}/v1/answer", json=body, headers=headers, timeout=300) as resp:
        if resp.status_code != 200:
            resp.read()
            _check(resp)
        request_id = resp.headers.get("X-Request-Id")
        event = ""
        for line in resp.iter_lines():
            if as_json and line:
                click.echo(line)
                continue
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "token":
                    click.echo(data["text"], nl=False)
                elif event == "replace":
                    click.echo()
                    click.secho(f"(replaced by a guardrail: {data['reason']})", fg="yellow")
                    click.echo(data["text"], nl=False)
                elif event == "citations":
                    click.echo()
                    _print_citations(data["citations"])
                elif event == "done":
                    if not as_json:
                        _print_guardrails(data.get("guardrails", []))
                elif event == "error":
                    raise click.ClickException(data["detail"])
    return request_id


def _prompt_rating() -> str:
    click.echo("Rate this answer: [u]p, [d]own, any other key to skip ", nl=False)
    key = click.getchar()
    click.echo()
    return {"u": "up", "d": "down"}.get(key.lower(), "no")


def _print_guardrails(decisions: list[dict[str, Any]]) -> None:
    for d in decisions:
        click.secho(
            f"  guardrail {d['stage']}: {d['rule']} -> {d['action']} ({d['target']}) {d['detail']}",
            fg="yellow",
        )


def _show_trace(url: str, headers: dict[str, str], request_id: str) -> None:
    resp = httpx.get(f"{url}/v1/traces/{request_id}", headers=headers, timeout=30)
    _check(resp)
    t = resp.json()
    click.secho(f"trace {request_id}", bold=True)
    click.echo(f"  models {t['models']}  collection {t['collection']}")
    click.echo(f"  index at {t['index_offsets'] or 'unknown'} (sampled {t['index_sampled_at']})")
    if t["rewrites"]:
        click.echo(f"  rewrites {t['rewrites']}")
    click.echo(f"  candidates {len(t['candidates'])}, returned {len(t['results'])}:")
    for c in t["results"]:
        click.echo(
            f"    {c['doc_id']} v{c['version']} #{c['chunk_index']}  fused {c['score']:.3f}  "
            f"dense {_score(c['dense_score'])}  sparse {_score(c['sparse_score'])}"
        )
    used = ", ".join(f"[{u['n']}] {u['doc_id']}" for u in t["chunks_used"])
    click.echo(f"  chunks in the prompt: {used or 'none'}")
    for d in t["guardrails"]:
        click.echo(f"  guardrail {d['stage']}: {d['rule']} -> {d['action']} ({d['target']})")
    click.echo("  timings: " + ", ".join(f"{k} {v:.1f}" for k, v in t["timings_ms"].items()))


def _score(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        raise click.ClickException(f"{resp.status_code}: {detail}")


def _print_citations(citations: list[dict[str, object]]) -> None:
    for c in citations:
        click.secho(
            f"  [{c['n']}] {c['doc_id']} (v{c['version']}, chunk {c['chunk_index']}) {c['title']}", fg="cyan"
        )


@click.command("eval")
@click.option("--max-docs", type=int, default=400, show_default=True)
@click.option("--k", "ks", type=int, multiple=True, default=(1, 5, 10), show_default=True)
@click.option(
    "--answers",
    type=int,
    default=0,
    show_default=True,
    help="Also answer this many questions with the generator: loop rate, gold citation rate, token-F1, "
    "time to first token and tokens/s.",
)
@click.option(
    "--unanswerable",
    type=int,
    default=10,
    show_default=True,
    help="With --answers: Debian FAQ questions whose document is withheld from the index; the right "
    'reply is "I don\'t know".',
)
@click.option(
    "--retrieval/--no-retrieval",
    default=True,
    show_default=True,
    help="Score the retrieval variants (with --answers, --no-retrieval measures only the answers).",
)
@click.option(
    "--study",
    is_flag=True,
    help="The retrieval study: every index variant (chunk sizes, word windows, title placement, "
    "embedder) x every query variant (dense, sparse, weighted/RRF/DBSF hybrids, document scoring, "
    "parent rerank) on each corpus, as one table.",
)
@click.option(
    "--corpus",
    "corpus_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="With --study: your own corpus, JSON lines of documents {doc_id, title, body} and questions "
    "{question, relevant: [doc_id, ...]} (repeat for several). Default: the Debian FAQ, man pages "
    "and Policy Manual.",
)
@click.option(
    "--index-variant",
    "index_names",
    multiple=True,
    help="With --study: only these index variants (repeatable; names as printed).",
)
@click.option(
    "--expansion",
    "expansion_questions",
    type=int,
    default=0,
    show_default=True,
    help="With --study: also measure query expansion by the generator on this many questions per corpus "
    "(the first index and query variant; ~2-4 s a question on 2 CPU cores).",
)
@click.option(
    "--query-variant",
    "query_names",
    multiple=True,
    help="With --study: only these query variants (repeatable; names as printed).",
)
@click.option(
    "--model-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="With --study: also index with this sentence-transformers model (title in every chunk).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --study: append every row as JSON to this file (the table is printed either way).",
)
def eval_cmd(
    max_docs: int,
    ks: tuple[int, ...],
    answers: int,
    unanswerable: int,
    retrieval: bool,
    study: bool,
    corpus_files: tuple[Path, ...],
    index_names: tuple[str, ...],
    query_names: tuple[str, ...],
    expansion_questions: int,
    model_path: Path | None,
    out: Path | None,
) -> None:
    """Evaluate retrieval (dense vs sparse vs hybrid vs hybrid+rerank) on real, self-labelled text.

    \b
    The corpus is built from what Debian installs: Debian FAQ question headings (queries) and
    their sections (documents), man page NAME lines (queries) and the rest of each page. It is
    indexed by the real pipeline into a fresh embedded Qdrant, then each variant of the API's
    retriever is scored: recall@k, MRR, nDCG with bootstrap 95% intervals.
      streamrag eval --max-docs 400
      streamrag eval --answers 50      # plus 50 answered + 10 unanswerable questions (~20 s each on 2 cores)
    \b
    The retrieval study compares settings on each corpus separately (bench/RESULTS.md holds it for
    the Debian FAQ, man pages and Policy Manual); run it on your own documents to choose settings:
      streamrag eval --study --max-docs 300
      streamrag eval --study --corpus mydocs.jsonl --index-variant "tokens 254/64, title in every chunk"
    """
    if study:
        from app.study import run_study_cli

        sys.exit(
            run_study_cli(
                max_docs,
                corpus_files,
                index_names,
                query_names,
                model_path,
                out,
                click.echo,
                expansion_questions,
            )
        )
    from serving.eval.live import run_eval

    sys.exit(
        run_eval(
            max_docs=max_docs,
            ks=ks,
            answers=answers,
            unanswerable=unanswerable,
            echo=click.echo,
            retrieval=retrieval,
        )
    )
