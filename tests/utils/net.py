"""Network helpers for tests that start servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_block(span: int) -> int:
    """A port ``base`` with ``base .. base + span - 1`` all free now (for servers that take several)."""
    while True:
        base = free_port()
        if base + span < 65000 and all(port_free(base + d) for d in range(1, span)):
            return base
