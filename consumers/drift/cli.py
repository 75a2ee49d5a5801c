"""``streamrag consumers``: long-running consumers; ``run`` starts the drift detection worker."""

from __future__ import annotations

import click


@click.group("consumers")
def consumers() -> None:
    """Long-running stream consumers (drift detection)."""


@consumers.command("run")
@click.option(
    "--loglevel", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None, help="Log level (default: STREAMRAG_LOG_LEVEL, INFO).",
)  # fmt: skip
def run(loglevel: str | None) -> None:
    """Run the drift detection worker (Faust) until interrupted (Ctrl-C or SIGTERM).

    \b
    It reads FeatureRecords (document embeddings) and QueryRecords (query embeddings, top-1
    retrieval scores, don't-know answers), keeps a reference and a sliding current window per
    tenant and kind, and publishes a DriftEvent to the drift topic when they differ. The windows
    are restored from the app's changelog topic on restart.

    \b
    Examples:
      streamrag consumers run
      streamrag consumers run --loglevel debug
      STREAMRAG_DRIFT__REFERENCE_SIZE=500 STREAMRAG_DRIFT__WINDOW_SIZE=500 streamrag consumers run
      STREAMRAG_DRIFT__APP_ID=drift-staging STREAMRAG_DRIFT__DRIFT_TOPIC=staging.drift streamrag consumers run
    Settings: STREAMRAG_KAFKA__* for Kafka, STREAMRAG_DRIFT__* for drift (see DriftOptions).
    """
    import faust

    from consumers.drift.app import create_app
    from consumers.drift.settings import DriftSettings

    settings = DriftSettings()
    app, _stats = create_app(settings)
    # Faust's default stdout redirection turns every print into a WARNING log line; keep stdout as is
    worker = faust.Worker(app, loglevel=(loglevel or settings.log_level).lower(), redirect_stdouts=False)
    worker.execute_from_commandline()
