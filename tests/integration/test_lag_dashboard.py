"""The lag router over HTTP and its dashboard in headless Chromium, fed by real Kafka data.

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); skipped without it.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from confluent_kafka import TopicPartition
from fastapi import FastAPI

from serving.lag.monitor import LagMonitor
from serving.lag.router import lag_router
from serving.lag.settings import LagOptions, LagSettings
from tests.utils.net import free_port

pytestmark = pytest.mark.stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served(
    stack: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[..., str],
    producer_factory: Any,
    consumer_factory: Any,
) -> Iterator[tuple[str, str, LagMonitor]]:
    """(base URL, group, monitor): a uvicorn server with the lag router; the group has lag 9.

    The features topic gets 10 records (freshness 1..10 s) and the DLQ topic 2 dead letters.
    """
    topic = topic_factory("dash", partitions=2)
    features = topic_factory("dash-features", partitions=1)
    dlq = topic_factory("dash-dlq", partitions=1)
    group = group_factory("dash")
    producer = producer_factory()
    for i in range(15):
        producer.produce(topic, b"x", partition=i % 2)
    source = datetime.now(UTC) - timedelta(seconds=30)
    for seconds in range(1, 11):
        record = {
            "source_ts": source.isoformat(),
            "indexed_ts": (source + timedelta(seconds=seconds)).isoformat(),
        }
        producer.produce(features, json.dumps(record).encode(), partition=0)
    producer.produce(dlq, b"dead", partition=0)
    producer.produce(dlq, b"dead", partition=0)
    assert producer.flush(10) == 0
    consumer_factory(group).commit(
        offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 3)], asynchronous=False
    )  # lag: (8 - 3) + (7 - 3) = 9

    options = LagOptions(
        groups=[group],
        discover_groups=False,
        interval_s=0.5,
        features_topic=features,
        dlq_topic=dlq,
        freshness_lookback_s=300,
        freshness_bucket_s=10,
    )
    monitor = LagMonitor(LagSettings(kafka=stack.kafka, lag=options))
    monitor.start()
    app = FastAPI()
    app.include_router(lag_router(monitor))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", group, monitor
    finally:
        server.should_exit = True
        thread.join(10)
        monitor.close()


def test_http_routes(served: tuple[str, str, LagMonitor]) -> None:
    base, group, _ = served
    with httpx.Client(base_url=base, timeout=30) as client:
        lag = client.get("/v1/lag", params={"group": group}).json()
        assert [g["group"] for g in lag["groups"]] == [group]
        assert lag["groups"][0]["total_lag"] == 9
        fresh = client.get("/v1/freshness").json()
        assert fresh["overall"]["count"] == 10 and fresh["overall"]["p50_s"] == pytest.approx(5.5)
        assert fresh["dlq"]["depth"] == 2
        history = client.get("/v1/lag/history", params={"group": group}).json()
        assert history["groups"][0]["group"] == group and history["groups"][0]["points"]
        page = client.get("/dashboard")
        assert page.status_code == 200 and "<canvas" in page.text and "http" not in _script_srcs(page.text)
        assert client.get("/v1/lag", params={"group": ""}).status_code == 422


def _script_srcs(html: str) -> str:
    """Every external reference (src=/href=) of the page: must be empty, the page is offline-safe."""
    return " ".join(re.findall(r'(?:src|href)="([^"]*)"', html))


def _chromium(url: str, tmp: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--window-size=1200,900",
        "--virtual-time-budget=8000",
        *mode,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)"
)
def test_dashboard_draws_real_data_in_headless_chromium(
    served: tuple[str, str, LagMonitor], tmp_path: Path
) -> None:
    base, group, monitor = served
    # Let the monitor build some history so the first paint already has lines.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(len(g.points) for g in monitor.history(group).groups) < 3:
        time.sleep(0.2)

    png = tmp_path / "dashboard.png"
    shot = _chromium(f"{base}/dashboard", tmp_path, f"--screenshot={png}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 10_000
    width, height, colors = _png_colors(png.read_bytes())
    assert (width, height) == (1200, 900)
    assert colors > 50, f"screenshot looks blank: {colors} distinct colors"

    dom = _chromium(f"{base}/dashboard", tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    body = _attrs(html, r"<body\s[^>]*>")  # \s: not the "<body>" in the page comment
    assert body["data-error"] == ""
    assert int(body["data-polls"]) >= 2  # 8 s of virtual time, one poll per 2 s
    lag_chart = _attrs(html, r'<canvas id="chart-lag"[^>]*>')
    assert int(lag_chart["data-series"]) == 1 and int(lag_chart["data-points"]) >= 3
    assert float(lag_chart["data-ymax"]) >= 9  # the y axis reaches the real lag
    seconds_chart = _attrs(html, r'<canvas id="chart-lag-seconds"[^>]*>')
    assert int(seconds_chart["data-points"]) >= 3
    freshness_chart = _attrs(html, r'<canvas id="chart-freshness"[^>]*>')
    assert int(freshness_chart["data-series"]) == 2 and int(freshness_chart["data-points"]) >= 2
    assert float(freshness_chart["data-ymax"]) >= 9.9  # p99 of 1..10 s
    row = _attrs(html, rf'<tr data-group="{re.escape(group)}"[^>]*>')
    assert row["data-status"] == "OK"
    assert _attrs(html, r'<div id="dlq-body"[^>]*>')["data-depth"] == "2"


def _attrs(html: str, pattern: str) -> dict[str, str]:
    match = re.search(pattern, html)
    assert match is not None, f"{pattern} not in the page"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(0)))


def _png_colors(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct RGB colors) of an 8-bit RGB/RGBA non-interlaced PNG (no Pillow needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color_type in (2, 6) and interlace == 0, (depth, color_type, interlace)
    bpp = 3 if color_type == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    prev = bytearray(stride)
    colors: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, prev, bpp)
        colors.update(bytes(line[x : x + 3]) for x in range(0, stride, bpp))
        prev = line
    return width, height, len(colors)


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    if kind == 1:  # Sub
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        for i in range(len(line)):
            line[i] = (line[i] + prev[i]) & 0xFF
    elif kind == 3:  # Average
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
