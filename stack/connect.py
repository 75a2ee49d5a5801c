"""Kafka Connect (distributed mode, one worker) with the Debezium PostgreSQL connector plugin.

The worker runs exactly like the docker-compose Connect service; the connector is registered
through the Connect REST API (:mod:`producers.cdc.connector`), as a user would.
"""

from __future__ import annotations

import httpx

from stack.kafka import java_command
from stack.maven import jars_dir
from stack.settings import StackSettings
from streamrag.process import Managed, answers_200, port_open, wait_until


def managed(settings: StackSettings) -> Managed:
    return Managed("connect", settings.run_dir / "connect.pid", settings.log_dir / "connect.log")


def _host_port(settings: StackSettings) -> tuple[str, int]:
    url = httpx.URL(settings.connect_url)
    return url.host, url.port or 8083


def write_config(settings: StackSettings) -> str:
    host, port = _host_port(settings)
    path = settings.data_dir / "connect" / "worker.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    plugin_path = jars_dir(settings, "debezium").parent
    path.write_text(
        "\n".join(
            [
                "# Written by `streamrag stack up`; edits are overwritten.",
                f"bootstrap.servers={settings.kafka.bootstrap_servers}",
                "group.id=streamrag-connect",
                "config.storage.topic=streamrag.connect.configs",
                "offset.storage.topic=streamrag.connect.offsets",
                "status.storage.topic=streamrag.connect.status",
                "config.storage.replication.factor=1",
                "offset.storage.replication.factor=1",
                "status.storage.replication.factor=1",
                "offset.flush.interval.ms=1000",
                "key.converter=org.apache.kafka.connect.json.JsonConverter",
                "value.converter=org.apache.kafka.connect.json.JsonConverter",
                f"listeners=http://{host}:{port}",
                f"rest.advertised.host.name={host}",
                f"rest.advertised.port={port}",
                f"plugin.path={plugin_path}",
                "connector.client.config.override.policy=All",
                "",
            ]
        )
    )
    return str(path)


def healthy(settings: StackSettings) -> bool:
    host, port = _host_port(settings)
    if not port_open(host, port):
        return False
    return answers_200(f"{settings.connect_url}/connectors", timeout_s=3)


def start(settings: StackSettings) -> str:
    proc = managed(settings)
    if proc.pid() is not None and healthy(settings):
        return "already running"
    if proc.pid() is None:
        config = write_config(settings)
        proc.start(
            java_command(
                settings,
                "org.apache.kafka.connect.cli.ConnectDistributed",
                config,
                heap=settings.connect_heap,
                log_file=proc.log_file,
            )
        )
    wait_until(lambda: healthy(settings), "Kafka Connect's REST API", settings.start_timeout_s, proc)
    return "started"


def stop(settings: StackSettings) -> bool:
    return managed(settings).stop(timeout_s=60)
