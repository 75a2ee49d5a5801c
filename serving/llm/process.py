"""Running ``streamrag llm serve`` as a child process and waiting until its model answers.

``streamrag serve`` and ``streamrag demo`` start the generator this way when no ``STREAMRAG_TGI_URL``
is set: a separate process, so a crash or a slow load of the model never takes the API down with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


class LLMProcess:
    """A child ``streamrag llm serve`` on 127.0.0.1:``port``; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, port: int, log_path: Path | None = None, extra_env: dict[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        env = {
            **os.environ,
            **(extra_env or {}),
            "STREAMRAG_LLM_PORT": str(port),
            "STREAMRAG_LLM_HOST": "127.0.0.1",
        }
        out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.llm.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Return once ``/health`` answers 200; raise with the log's tail if the child exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the LLM server exited with code {self.proc.returncode}{self._tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"the LLM server did not become ready on {self.url} within {timeout_s:.0f} s{self._tail()}"
        )

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "; its log ends:\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # uvicorn.Server-like, so Embedded can stop it with the API servers.
    @property
    def should_exit(self) -> bool:
        return self.proc.poll() is not None

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self.stop()
