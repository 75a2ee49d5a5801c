"""``streamrag pipeline``: the streaming feature pipeline's commands."""

from __future__ import annotations

from typing import Any

import click


@click.group("pipeline")
def pipeline() -> None:
    """The feature pipeline: Kafka (CDC + documents topics) -> clean, chunk, embed -> Qdrant."""


@pipeline.command("run")
@click.option("--workers", "-w", type=int, default=None, help="Bytewax workers in this process.")
@click.option("--process-id", "-i", type=int, default=None, help="This process's index in a cluster.")
@click.option("--addresses", "-a", default=None, help="host:port of every process, ';'-separated.")
@click.option(
    "--until-idle",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop once every partition is read to its end and has had no new message for SECONDS (backfills).",
)
@click.option("--metrics-port", type=int, default=None, help="Prometheus port (default 9100, 0 disables).")
def run_cmd(
    workers: int | None,
    process_id: int | None,
    addresses: str | None,
    until_idle: float | None,
    metrics_port: int | None,
) -> None:
    """Index every document change into Qdrant, exactly, until stopped.

    \b
    Reads the Debezium CDC topic and the documents topic from the committed offsets of the
    consumer group streamrag-pipeline, and commits a batch's offsets only after its chunks are
    written (and acknowledged) in Qdrant: stop it any way, even kill -9, and a restart goes on
    with no event lost and no chunk duplicated or stale.
    \b
    Examples:
      streamrag pipeline run                      # one worker, embedded Qdrant at .data/qdrant
      streamrag pipeline run --workers 2          # two workers, per-document order kept
      STREAMRAG_QDRANT_URL=http://localhost:6333 streamrag pipeline run -i 0 -a "h1:2101;h2:2101"
      streamrag pipeline run --until-idle 5       # backfill, then exit
    Progress: kafka-consumer-groups --describe --group streamrag-pipeline, or `streamrag lag`.
    Metrics: http://127.0.0.1:9100/metrics
    Tuning (environment): STREAMRAG_EMBED_STREAMS (model batches at once; 2 on a CPU),
    STREAMRAG_TORCH_THREADS, STREAMRAG_EMBED_SLICE_CHUNKS (turn size; smaller = fresher small
    documents, larger = more throughput), STREAMRAG_EMBED_IN_BACKGROUND (all in streams/settings.py).
    """
    from streamrag.config import configure_logging
    from streams.runner import run
    from streams.settings import PipelineSettings

    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["workers"] = workers
    if until_idle is not None:
        overrides["stop_when_idle_s"] = until_idle
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port or None
    settings = PipelineSettings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    run(settings, process_id=process_id, addresses=addresses.split(";") if addresses else None)
    if until_idle is not None:
        _exit_unless_caught_up(settings)


def _exit_unless_caught_up(settings: Any, grace_s: float = 15.0) -> None:
    """``--until-idle`` promises lag 0 on every source partition at exit 0: check it (a cluster's
    peers may commit their last batch a moment later, hence the grace), else exit 3."""
    import time

    from streamrag.progress import group_progress

    deadline = time.monotonic() + grace_s
    while True:
        progress = group_progress(settings.kafka.librdkafka(), settings.group_id, settings.source_topics)
        if progress.caught_up:
            return
        if time.monotonic() > deadline:
            behind = {
                p: end - max(progress.committed[p], progress.start[p]) for p, end in progress.end.items()
            }
            click.secho(
                f"error: stopped idle but group {settings.group_id} is not caught up: lag "
                f"{ {p: n for p, n in behind.items() if n} }; run it again to continue",
                fg="red",
                err=True,
            )
            raise SystemExit(3)
        time.sleep(0.5)
