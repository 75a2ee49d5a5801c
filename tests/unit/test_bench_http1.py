"""The query bench's HTTP/1.1 client: framing by Content-Length over a kept-alive connection."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.http1 import Connection, ProtocolError
from tests.utils.net import free_port


async def echo(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"got": body, "key": request.headers.get("x-api-key"), "pad": "x" * body["pad"]})


async def missing(_request: Request) -> Response:
    return JSONResponse({"detail": "nope"}, status_code=404)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    app = Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/missing", missing, methods=["POST"])]
    )
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(10)


def test_requests_on_one_connection_answer_as_httpx(server: int) -> None:
    conn = Connection("127.0.0.1", server)
    try:
        for i, pad in enumerate([0, 10, 300_000, 5]):  # 300 kB: many reads for one body
            payload = {"i": i, "pad": pad}
            status, body = conn.post("/echo", json.dumps(payload).encode(), {"X-API-Key": "k"})
            want = httpx.post(f"http://127.0.0.1:{server}/echo", json=payload, headers={"X-API-Key": "k"})
            assert status == want.status_code == 200
            assert json.loads(body) == want.json() == {"got": payload, "key": "k", "pad": "x" * pad}
        status, body = conn.post("/missing", b"{}", {})
        assert (status, json.loads(body)) == (404, {"detail": "nope"})
    finally:
        conn.close()


def _one_shot(reply: Callable[[socket.socket], None]) -> int:
    """A server that reads one request and answers it with ``reply``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def run() -> None:
        peer, _ = listener.accept()
        with peer, listener:
            peer.recv(65536)
            reply(peer)

    threading.Thread(target=run, daemon=True).start()
    return port


def test_a_response_in_pieces_and_the_next_one_buffered() -> None:
    first = b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"a": "bc"}'
    second = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}"

    def reply(peer: socket.socket) -> None:
        for piece in (first[:7], first[7:30], first[30:45], first[45:] + second):
            peer.sendall(piece)
            time.sleep(0.02)
        time.sleep(0.5)

    conn = Connection("127.0.0.1", _one_shot(reply))
    try:
        assert conn.post("/x", b"{}", {}) == (200, b'{"a": "bc"}')
        # the next answer came in the same segment as the first one's end: it is read from the buffer
        assert conn.post("/y", b"{}", {}) == (503, b"{}")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "transfer-encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", "closed the connection"),
        (b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "no Content-Length"),
        (b"SMTP ready\r\n\r\n", "status line"),
    ],
)
def test_what_it_does_not_handle_is_an_error(answer: bytes, message: str) -> None:
    conn = Connection("127.0.0.1", _one_shot(lambda peer: peer.sendall(answer)), timeout_s=5)
    try:
        with pytest.raises(ProtocolError, match=message):
            conn.post("/x", b"{}", {})
    finally:
        conn.close()
