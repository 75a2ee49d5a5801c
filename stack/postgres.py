"""The operational PostgreSQL: a private cluster with logical WAL, from Debian's binaries.

PostgreSQL refuses to run as root, so when the stack runs as root the cluster belongs to the
unprivileged ``postgres`` user the Debian package creates, and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import psycopg

from stack.errors import StackError
from stack.settings import StackSettings
from streamrag.process import Managed, port_open, wait_until

INSTALL_HINT = "apt-get install -y postgresql  (Debian/Ubuntu), then run the command again"


def bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin dir (Debian keeps them per major version)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError(
        f"PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with: {INSTALL_HINT}"
    )


def _run_as() -> list[str]:
    """Prefix that runs a command as the cluster's owner (``postgres`` when we are root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            "running as root, and there is no 'postgres' user to own the cluster "
            f"(PostgreSQL refuses to run as root). {INSTALL_HINT}"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


def _owner_chown(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def data_dir(settings: StackSettings) -> Path:
    return settings.data_dir / "postgres"


def managed(settings: StackSettings) -> Managed:
    return Managed("postgres", data_dir(settings) / "postmaster.pid", settings.log_dir / "postgres.log")


def _pg(
    settings: StackSettings, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [*_run_as(), str(bin_dir() / tool), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise StackError(f"{tool} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def init_cluster(settings: StackSettings) -> None:
    """initdb once, with logical decoding on; an initialised data dir is left as it is."""
    pgdata = data_dir(settings)
    if (pgdata / "PG_VERSION").exists():
        return
    pgdata.mkdir(parents=True, exist_ok=True)
    _owner_chown(pgdata)
    pgdata.chmod(0o700)
    _pg(
        settings,
        "initdb",
        "-D",
        str(pgdata),
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
    )
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# streamrag: logical decoding for Debezium, private port and socket\n"
            f"listen_addresses = '{settings.postgres.host}'\n"
            f"port = {settings.postgres.port}\n"
            f"unix_socket_directories = '{pgdata}'\n"
            "wal_level = logical\n"
            "max_wal_senders = 10\n"
            "max_replication_slots = 10\n"
            "fsync = on\n"
        )


def healthy(settings: StackSettings) -> bool:
    pg = settings.postgres
    if not port_open(pg.host, pg.port):
        return False
    try:
        with psycopg.connect(pg.dsn(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _superuser_sql(settings: StackSettings, sql: str) -> str:
    pgdata = data_dir(settings)
    result = _pg(
        settings,
        "psql",
        "-h",
        str(pgdata),
        "-p",
        str(settings.postgres.port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-tA",
        "-c",
        sql,
    )
    return result.stdout.strip()


def bootstrap(settings: StackSettings) -> None:
    """Create the application role (with REPLICATION, for Debezium), its database and schema."""
    pg = settings.postgres
    password = pg.password.get_secret_value().replace("'", "''")
    if _superuser_sql(settings, f"SELECT 1 FROM pg_roles WHERE rolname = '{pg.user}'") != "1":
        _superuser_sql(settings, f"CREATE ROLE \"{pg.user}\" LOGIN REPLICATION PASSWORD '{password}'")
    if _superuser_sql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{pg.database}'") != "1":
        _superuser_sql(settings, f'CREATE DATABASE "{pg.database}" OWNER "{pg.user}"')
    schema = (resources.files("producers") / "cdc" / "schema.sql").read_text()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(schema)  # a trusted file of ours, several statements


def start(settings: StackSettings) -> str:
    proc = managed(settings)
    if proc.pid() is not None and healthy(settings):
        return "already running"
    pg = settings.postgres
    if proc.pid() is None and port_open(pg.host, pg.port):
        raise StackError(
            f"port {pg.host}:{pg.port} is taken by another program; set STREAMRAG_POSTGRES__PORT"
        )
    init_cluster(settings)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = proc.log_file
    log.touch()
    _owner_chown(log)
    if proc.pid() is None:
        _pg(settings, "pg_ctl", "-D", str(data_dir(settings)), "-l", str(log), "-w", "-t", "60", "start")
    wait_until(lambda: port_open(pg.host, pg.port), "PostgreSQL to listen", settings.start_timeout_s, proc)
    bootstrap(settings)
    wait_until(lambda: healthy(settings), "PostgreSQL to accept the application user", 30, proc)
    return "started"


def stop(settings: StackSettings) -> bool:
    if managed(settings).pid() is None:
        return False
    _pg(settings, "pg_ctl", "-D", str(data_dir(settings)), "-m", "fast", "-w", "stop", check=False)
    return True
