"""Registering the Debezium PostgreSQL connector through the Kafka Connect REST API.

The connector's config is ``connector.json`` beside this file with ``${VAR}`` placeholders for
the database coordinates, so the same file serves the local stack and docker-compose.
"""

from __future__ import annotations

import json
import string
import time
from importlib import resources
from typing import Any

import httpx

from streamrag.config import PostgresSettings


class ConnectorError(RuntimeError):
    """The connector could not be registered or did not reach RUNNING."""


def connector_config(pg: PostgresSettings, host_override: str | None = None) -> dict[str, str]:
    template = (resources.files("producers") / "cdc" / "connector.json").read_text()
    filled = string.Template(template).substitute(
        POSTGRES_HOST=host_override or pg.host,
        POSTGRES_PORT=str(pg.port),
        POSTGRES_USER=pg.user,
        POSTGRES_PASSWORD=pg.password.get_secret_value(),
        POSTGRES_DB=pg.database,
    )
    config: dict[str, str] = json.loads(filled)
    return config


def register(connect_url: str, name: str, config: dict[str, str], timeout_s: float = 90.0) -> dict[str, Any]:
    """PUT the config (create or update: idempotent), then wait until connector and task RUN."""
    resp = httpx.put(f"{connect_url}/connectors/{name}/config", json=config, timeout=30)
    if resp.status_code not in (200, 201):
        raise ConnectorError(f"Connect refused connector {name!r} ({resp.status_code}): {resp.text}")
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = connector_status(connect_url, name)
        tasks = status.get("tasks", [])
        states = [status.get("connector", {}).get("state")] + [t.get("state") for t in tasks]
        if "FAILED" in states:
            trace = next((t.get("trace", "") for t in tasks if t.get("state") == "FAILED"), "")
            raise ConnectorError(f"connector {name!r} FAILED: {trace[:2000]}")
        if tasks and all(s == "RUNNING" for s in states):
            return status
        time.sleep(1)
    raise ConnectorError(f"connector {name!r} did not reach RUNNING in {timeout_s:.0f}s: {status}")


def connector_status(connect_url: str, name: str) -> dict[str, Any]:
    resp = httpx.get(f"{connect_url}/connectors/{name}/status", timeout=10)
    if resp.status_code == 404:
        return {}
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result
