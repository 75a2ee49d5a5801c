"""A real Qdrant server for the local stack: one node, or a 3-node cluster (Raft consensus).

The binary is found through ``STREAMRAG_QDRANT_BIN``, then ``qdrant`` on PATH, then a copy unpacked
once per machine into ``~/.cache/streamrag/qdrant/<version>/`` from the xz archive these machines
carry beside the checkout (``../shared/qdrant/bin/``, checked against its SHA-256). Users get the
server from Docker (``qdrant/qdrant``), Qdrant's release downloads or ``cargo build --release``.

Every node binds 127.0.0.1 and keeps its storage under the data dir. Node ``i`` listens on
``base + 10*i`` (HTTP), ``+1`` (gRPC) and ``+2`` (cluster peer-to-peer); node 0 bootstraps the
cluster and the others join it.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from stack.errors import StackError
from streamrag.config import project_root
from streamrag.process import Managed, answers_200, wait_until

VERSION = "1.18.3"
ARCHIVE = f"qdrant-{VERSION}-x86_64-linux.xz"
SHA256 = "35e13781041eb29d0cf6e84728836f30e79813eca0a619fa8038b0f7bf1c1dcc"

HOW_TO_GET = (
    "no Qdrant server binary found. Get one of: (1) Docker: `docker run -p 6333:6333 qdrant/qdrant:v"
    f"{VERSION}` and set STREAMRAG_QDRANT_URL=http://127.0.0.1:6333; (2) Qdrant's release download "
    "(github.com/qdrant/qdrant/releases) on PATH as `qdrant` or in STREAMRAG_QDRANT_BIN; (3) "
    "`cargo build --release --bin qdrant` from Qdrant's source, then the same."
)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streamrag" / "qdrant" / VERSION


def shared_archive() -> Path:
    return project_root().parent / "shared" / "qdrant" / "bin" / ARCHIVE


def find_binary() -> Path | None:
    """The server binary without unpacking anything (``None``: see :func:`ensure_binary`)."""
    env = os.environ.get("STREAMRAG_QDRANT_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    on_path = shutil.which("qdrant")
    if on_path:
        return Path(on_path)
    unpacked = cache_dir() / "qdrant"
    return unpacked if unpacked.is_file() else None


def available() -> bool:
    """A binary is here or can be unpacked here."""
    return find_binary() is not None or shared_archive().is_file()


def ensure_binary(log: Callable[[str], None] = print) -> Path:
    """The server binary, unpacking the shared archive into the cache the first time."""
    found = find_binary()
    if found is not None:
        return found
    archive = shared_archive()
    if not archive.is_file():
        raise StackError(HOW_TO_GET)
    target = cache_dir() / "qdrant"
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"qdrant     unpacking the Qdrant {VERSION} server from {archive} into {target.parent} (once)")
    partial = target.with_suffix(f".{os.getpid()}.partial")  # two processes may unpack at once
    digest = hashlib.sha256()
    with lzma.open(archive) as src, open(partial, "wb") as dst:
        while block := src.read(1 << 20):
            digest.update(block)
            dst.write(block)
    if digest.hexdigest() != SHA256:
        partial.unlink()
        raise StackError(
            f"{archive} unpacked to SHA-256 {digest.hexdigest()}, expected {SHA256}: not using it"
        )
    partial.chmod(0o755)
    if target.exists():  # another process unpacked it meanwhile (and may be running it)
        partial.unlink()
    else:
        partial.rename(target)
    return target


@dataclass(frozen=True)
class Node:
    """One Qdrant process of the local stack (or of a test)."""

    index: int
    http_port: int
    root: Path
    run_dir: Path
    log_dir: Path

    @property
    def grpc_port(self) -> int:
        return self.http_port + 1

    @property
    def p2p_port(self) -> int:
        return self.http_port + 2

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def managed(self) -> Managed:
        return Managed(
            f"qdrant{self.index}",
            self.run_dir / f"qdrant{self.index}.pid",
            self.log_dir / f"qdrant{self.index}.log",
        )

    def env(self, cluster: bool) -> dict[str, str]:
        return {
            "QDRANT__SERVICE__HOST": "127.0.0.1",
            "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
            "QDRANT__STORAGE__STORAGE_PATH": str(self.root / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.root / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
            "QDRANT__CLUSTER__ENABLED": "true" if cluster else "false",
            "QDRANT__CLUSTER__P2P__PORT": str(self.p2p_port),
            "QDRANT__LOG_LEVEL": "INFO",
        }

    def ready(self) -> bool:
        return answers_200(f"{self.url}/readyz")


def ports_span(count: int) -> int:
    """How many consecutive ports ``count`` nodes take from the base port."""
    return 10 * (count - 1) + 3


def nodes(data_dir: Path, base_port: int, count: int) -> list[Node]:
    return [
        Node(
            i,
            base_port + 10 * i,
            data_dir / "qdrant-server" / f"node{i}",
            data_dir / "run",
            data_dir / "logs",
        )
        for i in range(count)
    ]


def start_node(node: Node, binary: Path, cluster: bool, bootstrap: Node | None, timeout_s: float) -> str:
    """Start ``node`` unless it runs; wait for ``/readyz``. Returns a line for the stack's log."""
    m = node.managed
    if m.pid() is not None and node.ready():
        return f"already running at {node.url}"
    node.root.mkdir(parents=True, exist_ok=True)
    argv = [str(binary)]
    if cluster:
        argv += ["--uri", f"http://127.0.0.1:{node.p2p_port}"]
        if bootstrap is not None and bootstrap is not node:
            argv += ["--bootstrap", f"http://127.0.0.1:{bootstrap.p2p_port}"]
    m.start(argv, env=node.env(cluster), cwd=node.root)
    wait_until(node.ready, f"Qdrant node {node.index} at {node.url}/readyz", timeout_s, m, every_s=0.2)
    return f"started at {node.url} (pid {m.pid()})"


def start(
    data_dir: Path, base_port: int, count: int, timeout_s: float = 60.0, log: Callable[[str], None] = print
) -> list[Node]:
    """Start ``count`` nodes (1: a single server; 3: a cluster) and wait until every one is ready."""
    binary = ensure_binary(log)
    group = nodes(data_dir, base_port, count)
    cluster = count > 1
    for node in group:
        line = start_node(node, binary, cluster, group[0], timeout_s)
        log(f"qdrant{node.index}    {line}")
    if cluster:
        wait_until(
            lambda: _peers(group[0]) >= count, f"{count} Qdrant peers in the cluster", timeout_s, every_s=0.3
        )
    return group


def stop(data_dir: Path, base_port: int, count: int = 3, timeout_s: float = 30.0) -> list[bool]:
    return [n.managed.stop(timeout_s) for n in nodes(data_dir, base_port, count)]


def running(data_dir: Path, base_port: int, count: int = 3) -> list[Node]:
    return [n for n in nodes(data_dir, base_port, count) if n.managed.pid() is not None]


def _peers(node: Node) -> int:
    try:
        info = httpx.get(f"{node.url}/cluster", timeout=2).json()
        return len(info.get("result", {}).get("peers", {}))
    except (httpx.HTTPError, ValueError):
        return 0
