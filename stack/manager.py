"""``streamrag stack up | down | status``: the whole local stack, in dependency order, idempotent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from producers.cdc.connector import ConnectorError, connector_config, connector_status, register
from stack import connect, kafka, postgres
from stack import qdrant as qdrant_server
from stack.errors import StackError
from stack.maven import artifact_sets, ensure_jars, jars_present, require_binary
from stack.settings import StackSettings
from streamrag.contracts import Topics


@dataclass
class ComponentStatus:
    name: str
    address: str
    healthy: bool
    detail: str


def preflight(settings: StackSettings, kafka_only: bool = False) -> None:
    """Fail early, with the install command, when a binary the stack needs is missing.

    Maven is needed only while jars are missing from the cache, so a machine given a filled
    ``.cache/lib`` (and a JRE) can run Kafka without it.
    """
    require_binary(settings.java, "Java (17 or newer)", "apt-get install -y default-jdk-headless")
    if not all(jars_present(settings, s) for s in artifact_sets(kafka_only)):
        require_binary(settings.mvn, "Apache Maven", "apt-get install -y maven")
    if not kafka_only:
        postgres.bin_dir()


def up(settings: StackSettings, log: Callable[[str], None] = print, kafka_only: bool = False) -> None:
    """Start what is not running, in dependency order; ``kafka_only``: the broker and topics alone
    (for publishing documents yourself, with no CDC from PostgreSQL)."""
    preflight(settings, kafka_only)
    ensure_jars(settings, log=log, sets=artifact_sets(kafka_only))
    log(f"kafka      {kafka.start(settings)}")
    created = kafka.ensure_topics(settings)
    if created:
        log(f"topics     created {', '.join(sorted(created))}")
    if kafka_only:
        return
    log(f"postgres   {postgres.start(settings)}")
    log(f"connect    {connect.start(settings)}")
    try:
        register(settings.connect_url, settings.connector_name, connector_config(settings.postgres))
    except ConnectorError as exc:
        raise StackError(str(exc)) from None
    log(f"debezium   connector {settings.connector_name} RUNNING -> {Topics.CDC_DOCUMENTS}")
    if settings.qdrant_nodes:
        group = qdrant_server.start(
            settings.data_dir, settings.qdrant_base_port, settings.qdrant_nodes, settings.start_timeout_s, log
        )
        extra = (
            " STREAMRAG_QDRANT__REPLICATION_FACTOR=3 STREAMRAG_QDRANT__WRITE_CONSISTENCY_FACTOR=2"
            if len(group) > 1
            else ""
        )
        log(f"qdrant     {len(group)} node(s) ready: export STREAMRAG_QDRANT_URL={group[0].url}{extra}")
    else:
        qdrant = settings.qdrant
        log(f"qdrant     {qdrant.url or f'embedded (Qdrant Edge) at {qdrant.resolved_path()}'}")


def down(settings: StackSettings, log: Callable[[str], None] = print) -> None:
    """Stop in reverse order; data stays (``rm -rf .data`` to start over)."""
    for i, stopped in enumerate(qdrant_server.stop(settings.data_dir, settings.qdrant_base_port)):
        if stopped:
            log(f"qdrant{i}    stopped")
    for name, stop in (("connect", connect.stop), ("postgres", postgres.stop), ("kafka", kafka.stop)):
        log(f"{name:<10} {'stopped' if stop(settings) else 'not running'}")


def status(settings: StackSettings) -> list[ComponentStatus]:
    host, port = settings.kafka_host_port
    pg = settings.postgres
    out = [
        ComponentStatus("kafka", f"{host}:{port}", kafka.healthy(settings), "KRaft single node"),
        ComponentStatus("postgres", f"{pg.host}:{pg.port}", postgres.healthy(settings), "wal_level=logical"),
        ComponentStatus("connect", settings.connect_url, connect.healthy(settings), "distributed worker"),
    ]
    state = "not registered"
    ok = False
    if out[-1].healthy:
        try:
            st = connector_status(settings.connect_url, settings.connector_name)
        except Exception as exc:  # a half-started worker answers 5xx; report, do not crash status
            st, state = {}, f"error: {exc}"
        if st:
            states = [st.get("connector", {}).get("state")] + [t.get("state") for t in st.get("tasks", [])]
            ok = bool(st.get("tasks")) and all(s == "RUNNING" for s in states)
            state = "/".join(str(s) for s in states)
    out.append(ComponentStatus("debezium", settings.connector_name, ok, state))
    for node in qdrant_server.running(settings.data_dir, settings.qdrant_base_port):
        out.append(
            ComponentStatus(
                f"qdrant{node.index}", node.url, node.ready(), f"local Qdrant {qdrant_server.VERSION} node"
            )
        )
    q = settings.qdrant
    out.append(_qdrant_status(q.url, str(q.resolved_path())))
    return out


def _qdrant_status(url: str | None, path: str) -> ComponentStatus:
    if url:
        from streamrag.process import answers_200

        healthy = answers_200(f"{url.rstrip('/')}/readyz", timeout_s=3)
        return ComponentStatus("qdrant", url, healthy, "server (STREAMRAG_QDRANT_URL)")
    # Embedded mode has nothing to be down: it is opened in-process by whoever uses it.
    return ComponentStatus("qdrant", path, True, "embedded (Qdrant Edge, in-process)")


def status_dicts(settings: StackSettings) -> list[dict[str, object]]:
    return [asdict(s) for s in status(settings)]
