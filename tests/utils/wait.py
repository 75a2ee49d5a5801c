"""Waiting for a condition with a deadline (never for a fixed time)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], what: str, timeout_s: float = 120.0, every_s: float = 0.1) -> None:
    """Poll ``cond`` until it is truthy; fail naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(every_s)
