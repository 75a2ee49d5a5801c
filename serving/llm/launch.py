"""Starting the embedded generator (``streamrag llm serve``) as a child process of this one."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from serving.llm.settings import LLMServerSettings
from streamrag.process import Managed, answers_200, wait_until

log = logging.getLogger("streamrag.serving")


def start_llm(port: int, run_dir: Path | None = None, timeout_s: float = 180.0) -> Managed:
    """Start the generator (``streamrag llm serve``) as a child process on 127.0.0.1:``port``.

    Returns its :class:`streamrag.process.Managed` (``stop()`` ends it) once ``/health`` answers; its
    pid and log files are ``llm-<port>.pid/.log`` under ``run_dir`` (default: the data dir). A child,
    not a thread, so a crash or a slow load of the model never takes the API down with it.
    """
    settings = LLMServerSettings(port=port)
    run_dir = run_dir or settings.data_dir
    proc = Managed(f"the LLM server on :{port}", run_dir / f"llm-{port}.pid", run_dir / f"llm-{port}.log")
    log.info("starting the generator (llama.cpp, %s) on 127.0.0.1:%d ...", settings.model_alias, port)
    proc.start(
        [sys.executable, "-m", "serving.llm.cli", "serve"],
        env={"STREAMRAG_LLM_PORT": str(port), "STREAMRAG_LLM_HOST": "127.0.0.1"},
    )
    try:
        wait_until(lambda: answers_200(f"http://127.0.0.1:{port}/health"), "its /health", timeout_s, proc)
    except BaseException:
        proc.stop()
        raise
    return proc
