"""The ``streamrag`` command line: one entry point for every pipeline and the local stack.

Subcommands import their pipeline lazily, so ``streamrag --help`` is instant.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# numpy's OpenBLAS keeps a thread per core busy-waiting after each call. Our numpy work is small
# (a query against the index, a norm), and that spinning thread took a whole core from the model
# in every process (measured: the API used 2 cores to serve 1 client). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """streamrag: streaming, event-driven RAG.

    \b
    Typical session:
      streamrag stack up                 # Kafka, PostgreSQL, Connect + Debezium on 127.0.0.1
      streamrag db upsert faq-1 --title "What is X?" --body "X is ..."   # a row change -> CDC
      streamrag publish --tenant acme --doc-id d1 --version 1 --body "..."  # or publish directly
      streamrag pipeline run             # index both topics into Qdrant
      streamrag serve & streamrag ask "What is X?"
      streamrag lag                      # is everyone keeping up?

    Every setting is also an environment variable: STREAMRAG_<FIELD>, nested with '__'
    (STREAMRAG_KAFKA__BOOTSTRAP_SERVERS, STREAMRAG_QDRANT_URL, STREAMRAG_TGI_URL, ...).
    """


# --- stack -----------------------------------------------------------------------------------------


@main.group()
def stack() -> None:
    """The local stack: Kafka (KRaft), PostgreSQL, Kafka Connect + Debezium, Qdrant.

    Jars come from Maven Central into .cache/, data lives in .data/; every command is idempotent.
    """


def _stack_settings() -> Any:
    from stack.settings import StackSettings

    return StackSettings()


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


@stack.command("up")
@click.option(
    "--kafka-only",
    is_flag=True,
    help="Start the broker and create the topics, nothing else: no PostgreSQL, Connect or CDC "
    "(for publishing documents with `streamrag publish`). Needs only Java once the jars are cached.",
)
@click.option(
    "--qdrant",
    "qdrant_mode",
    type=click.Choice(["embedded", "server", "cluster"]),
    default=None,
    help="embedded (default): Qdrant Edge in each process, nothing to start. server: one Qdrant "
    "node on 127.0.0.1:16333. cluster: three nodes (16333, 16343, 16353) in one Raft cluster. "
    "Also STREAMRAG_STACK_QDRANT.",
)
def stack_up(kafka_only: bool, qdrant_mode: str | None) -> None:
    """Start (or keep) every component, create topics and register the CDC connector.

    \b
      streamrag stack up                    # Kafka, PostgreSQL, Connect + Debezium
      streamrag stack up --kafka-only       # Kafka and the topics alone
      streamrag stack up --qdrant server    # ... and a Qdrant server
      export STREAMRAG_QDRANT_URL=http://127.0.0.1:16333
      streamrag stack up --qdrant cluster   # ... and a 3-node Qdrant cluster
      export STREAMRAG_QDRANT_URL=http://127.0.0.1:16333 STREAMRAG_QDRANT__REPLICATION_FACTOR=3 STREAMRAG_QDRANT__WRITE_CONSISTENCY_FACTOR=2
    """
    from stack.errors import StackError
    from stack.manager import up

    settings = _stack_settings()
    if qdrant_mode is not None:
        settings = settings.model_copy(update={"stack_qdrant": qdrant_mode})
    try:
        up(settings, log=click.echo, kafka_only=kafka_only)
    except StackError as exc:
        _fail(str(exc))


@stack.command("down")
def stack_down() -> None:
    """Stop every component; data is kept."""
    from stack.manager import down

    down(_stack_settings(), log=click.echo)


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stack_status(as_json: bool) -> None:
    """Show each component, its address and health. Exit code 1 when any is down."""
    from stack.manager import status_dicts

    rows = status_dicts(_stack_settings())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            mark = click.style("up  ", fg="green") if row["healthy"] else click.style("DOWN", fg="red")
            click.echo(f"{mark}  {row['name']:<9} {row['address']:<40} {row['detail']}")
    sys.exit(0 if all(r["healthy"] for r in rows) else 1)


@main.command("init")
@click.option("--connect-url", default=None, help="Kafka Connect REST URL (default: the local stack's).")
def init(connect_url: str | None) -> None:
    """Create the topics and register the Debezium connector on an existing Kafka + Connect.

    For deployments where Kafka, PostgreSQL and Connect run elsewhere (docker-compose, Kubernetes):
      STREAMRAG_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 STREAMRAG_POSTGRES__HOST=postgres \\
        streamrag init --connect-url http://connect:8083
    """
    from producers.cdc.connector import ConnectorError, connector_config, register
    from stack.errors import StackError
    from stack.kafka import ensure_topics

    settings = _stack_settings()
    try:
        created = ensure_topics(settings)
        click.echo(f"topics created: {', '.join(created) or 'none (all present)'}")
        register(
            connect_url or settings.connect_url, settings.connector_name, connector_config(settings.postgres)
        )
    except (StackError, ConnectorError) as exc:
        _fail(str(exc))
    click.echo(f"connector {settings.connector_name} RUNNING")


@main.command("demo")
@click.option(
    "--docs", "n_docs", type=int, default=40, show_default=True, help="Debian FAQ sections to load."
)
@click.option("--question", default=None, help="What to ask (default: one of the FAQ's own questions).")
def demo(n_docs: int, question: str | None) -> None:
    """The main job end to end on the embedded defaults (what `make demo` runs).

    Stack up; real Debian FAQ sections written to PostgreSQL; Debezium CDC events indexed by the
    pipeline into embedded Qdrant; a question answered by the local LLM, streamed with citations;
    then an UPDATE and a DELETE followed exactly by the index.
    """
    from app.embedded import demo as run_demo
    from stack.errors import StackError
    from streamrag.config import configure_logging

    configure_logging("WARNING")
    try:
        sys.exit(run_demo(n_docs, question, echo=lambda m, end="\n": click.echo(m, nl=end == "\n")))
    except StackError as exc:
        _fail(str(exc))


# --- contracts -------------------------------------------------------------------------------------


@main.command("schema")
@click.argument("model", required=False)
def schema(model: str | None) -> None:
    """Print the JSON Schema of every event (or of MODEL, e.g. DocumentEvent)."""
    from streamrag.contracts import EVENT_MODELS, json_schemas

    schemas = json_schemas()
    if model:
        if model not in EVENT_MODELS:
            _fail(f"unknown model {model!r}; choose from {', '.join(EVENT_MODELS)}")
        schemas = schemas[model]
    click.echo(json.dumps(schemas, indent=2))


def _register_subcommands() -> None:
    """Attach the pipelines' command groups. Imported, not discovered: a broken import anywhere
    fails every command with its traceback rather than making one command silently vanish."""
    from app.serving_cli import ask, eval_cmd, lag, llm, serve
    from consumers.cli import consumers
    from producers.cli import db, publish
    from streams.cli import pipeline
    from training.cli import index, models, train

    for command in (publish, db, pipeline, serve, ask, llm, eval_cmd, lag, consumers, models, index, train):
        main.add_command(command)


_register_subcommands()
