"""Running the dataflow: as the main program (``streamrag pipeline run``) or in a background thread.

The embedded store (Qdrant Edge) is owned by one process, so a process that also serves queries
runs the pipeline in a thread with the same store (:func:`start_in_thread`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from streams.flow import Runtime, build_flow
from streams.settings import PipelineSettings

log = logging.getLogger("streamrag.streams")


def run(
    settings: PipelineSettings,
    runtime: Runtime | None = None,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Run until stopped (or, with ``stop_when_idle_s``, until every partition is idle)."""
    from bytewax.run import cli_main

    owned = runtime is None  # then this run opened the store and closes it
    rt = runtime or Runtime.create(settings)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, registry=rt.metrics.registry)
    flow = build_flow(settings, rt)
    log.info(
        "pipeline starting: group=%s topics=%s workers=%d collection=%s",
        settings.group_id,
        settings.source_topics,
        settings.workers,
        rt.store.collection,
    )
    try:
        cli_main(flow, workers_per_process=settings.workers, process_id=process_id, addresses=addresses)
    finally:
        if rt.model_threads is not None:
            rt.model_threads.shutdown(wait=True)  # idle by now: end of input collected every slice
        rt.dead_letters.close()
        if rt.features is not None:
            rt.features.close()
        if owned:
            rt.store.store.close()


class RunningPipeline:
    """A pipeline in a background thread; :meth:`stop` ends it after in-flight batches are done."""

    def __init__(self, settings: PipelineSettings, runtime: Runtime, owns_store: bool = False) -> None:
        self.settings = settings
        self.runtime = runtime
        self.owns_store = owns_store  # then stop() closes it (the embedded store's folder is freed)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="streamrag-pipeline", daemon=True)

    def _main(self) -> None:
        try:
            run(self.settings, self.runtime)
        except BaseException as exc:  # surfaced by .stop() / .check()
            log.exception("pipeline thread failed")
            self.error = exc

    def start(self) -> RunningPipeline:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 60.0) -> None:
        self.runtime.stop.set()
        self._thread.join(timeout_s)
        if self.owns_store and not self._thread.is_alive():
            self.runtime.store.store.close()
        if self.error is not None:
            raise RuntimeError("the pipeline thread failed") from self.error


def start_in_thread(settings: PipelineSettings, store: Any = None, embedder: Any = None) -> RunningPipeline:
    """The pipeline in a background thread, writing to ``store`` (default: its own, from the
    settings, closed when it stops)."""
    owns = store is None
    runtime = Runtime.create(
        settings, store=store if store is not None else settings.qdrant.store(), embedder=embedder
    )
    return RunningPipeline(settings, runtime, owns_store=owns).start()
