"""A minimal HTTP/1.1 client for load generation: one kept-alive connection, requests one at a time.

The query bench times ``/v1/search`` from its clients, so what a client spends on itself is part of
every latency it reports. ``http.client`` parses each response's headers with the ``email``
package: ~0.23 ms a request on the 16-core device machine, a sixth of the API's own overhead
there. Load generators (wrk, h2load) are lean for the same reason. This client writes each
request in one ``sendall`` and reads the response by its ``Content-Length``: all that the API's
JSON answers need. Anything else (chunked bodies, a closed connection, a malformed status line)
raises :class:`ProtocolError` rather than being guessed at.
"""

from __future__ import annotations

import socket


class ProtocolError(RuntimeError):
    """The server's answer is not a ``Content-Length`` framed HTTP/1.1 response."""


class Connection:
    """One kept-alive connection to ``host:port`` (TCP_NODELAY: each request is one segment)."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0) -> None:
        self._host = host
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """``(status, body)`` of ``POST path`` with a JSON ``body`` and extra ``headers``."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n"
        ).encode("latin-1") + body
        self._sock.sendall(request)
        return self._response()

    def close(self) -> None:
        self._sock.close()

    def _response(self) -> tuple[int, bytes]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        status_line, *lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        length: int | None = None
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                raise ProtocolError(f"transfer-encoding {value.strip()!r} is not supported")
        if length is None:
            raise ProtocolError("the response has no Content-Length")
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(parts[1]), body

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ProtocolError("the server closed the connection mid-response")
        self._buffer += data
