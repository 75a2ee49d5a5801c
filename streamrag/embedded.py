"""The all-in-one local mode: API, feature pipeline and LLM server in one process.

Embedded Qdrant (qdrant-client local mode) can be opened by one process only, so on a laptop the
API hosts the pipeline in a thread with the same client. With a Qdrant server
(``STREAMRAG_QDRANT_URL``) every pipeline runs as its own process instead (docker-compose).
This module composes the pipelines; none of them imports it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("streamrag.embedded")


@dataclass
class Embedded:
    """What the all-in-one mode started, so it can be stopped in reverse order."""

    pipeline: Any = None
    servers: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.should_exit = True
        if self.pipeline is not None:
            self.pipeline.stop()


def start_pipeline(qdrant_client: Any, embedder: Any = None) -> Any:
    from streams.runner import start_in_thread
    from streams.settings import PipelineSettings

    return start_in_thread(PipelineSettings(), qdrant_client=qdrant_client, embedder=embedder)


def serve_in_thread(app: Any, host: str, port: int, name: str, ready_path: str = "/health",
                    timeout_s: float = 180.0) -> Any:  # fmt: skip
    """Run a uvicorn server in a daemon thread and wait until ``ready_path`` answers 200."""
    import httpx
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, name=name, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}:{port}{ready_path}", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not become ready on {host}:{port} within {timeout_s:.0f}s")


def start_llm(port: int) -> Any:
    from serving.llm.server import create_app
    from serving.llm.settings import LLMServerSettings

    settings = LLMServerSettings(port=port)
    log.info("loading the embedded generator on 127.0.0.1:%d ...", port)
    return serve_in_thread(create_app(settings), "127.0.0.1", port, "streamrag-llm")
