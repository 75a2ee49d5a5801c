"""A single-node Apache Kafka broker in KRaft mode, run from the Maven-resolved jars."""

from __future__ import annotations

import base64
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stack.errors import StackError
from stack.maven import classpath
from stack.settings import StackSettings
from streamrag.contracts import Topics
from streamrag.process import Managed, port_open, wait_until

#: Topic -> extra topic configs. Source topics are the system of record: compacted, kept forever.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    Topics.DOCUMENTS: {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    Topics.CDC_DOCUMENTS: {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    Topics.DEAD_LETTER: {"retention.ms": str(30 * 24 * 3600 * 1000)},
    Topics.FEATURES: {"retention.ms": str(7 * 24 * 3600 * 1000)},
    Topics.QUERIES: {"retention.ms": str(7 * 24 * 3600 * 1000)},
    Topics.DRIFT: {},
    Topics.MODELS: {"cleanup.policy": "compact"},
    # Keyed by request id: compaction keeps one trace / the last rating per request.
    Topics.TRACES: {"cleanup.policy": "compact,delete", "retention.ms": str(30 * 24 * 3600 * 1000)},
    Topics.FEEDBACK: {"cleanup.policy": "compact"},
}


def managed(settings: StackSettings) -> Managed:
    return Managed("kafka", settings.run_dir / "kafka.pid", settings.log_dir / "kafka.log")


def _dirs(settings: StackSettings) -> tuple[Path, Path]:
    root = settings.data_dir / "kafka"
    return root / "server.properties", root / "logs"


def _listener(settings: StackSettings) -> tuple[str, list[str]]:
    """The client listener's name and the broker lines it needs: PLAINTEXT, or SASL_PLAINTEXT with
    the PLAIN mechanism and the configured user (the broker accepts that one user, and uses it for
    its own connections too)."""
    k = settings.kafka
    if k.security_protocol == "PLAINTEXT":
        return "PLAINTEXT", []
    if k.security_protocol != "SASL_PLAINTEXT" or (k.sasl_mechanism or "PLAIN") != "PLAIN":
        raise StackError(
            f"the local stack runs Kafka with PLAINTEXT or SASL_PLAINTEXT + PLAIN, not {k.security_protocol} "
            f"{k.sasl_mechanism or ''}; point STREAMRAG_KAFKA__BOOTSTRAP_SERVERS at your own cluster for that"
        )
    if not k.sasl_username or k.sasl_password is None:
        raise StackError("SASL needs STREAMRAG_KAFKA__SASL_USERNAME and STREAMRAG_KAFKA__SASL_PASSWORD")
    user, password = k.sasl_username, k.sasl_password.get_secret_value()
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}" user_{user}="{password}";'
    )
    return "SASL_PLAINTEXT", [
        "sasl.enabled.mechanisms=PLAIN",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
    ]


def write_config(settings: StackSettings) -> Path:
    config, log_dirs = _dirs(settings)
    host, port = settings.kafka_host_port
    cport = settings.kafka_controller_port
    name, sasl = _listener(settings)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "\n".join(
            [
                "# Written by `streamrag stack up`; edits are overwritten.",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{host}:{cport}",
                f"listeners={name}://{host}:{port},CONTROLLER://{host}:{cport}",
                f"advertised.listeners={name}://{host}:{port}",
                "controller.listener.names=CONTROLLER",
                f"inter.broker.listener.name={name}",
                f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{name}:{name}",
                *sasl,
                f"log.dirs={log_dirs}",
                f"num.partitions={settings.kafka.partitions}",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.cleaner.backoff.ms=5000",
                "",
            ]
        )
    )
    return config


def java_command(
    settings: StackSettings, main: str, *args: str, heap: str = "-Xmx256m", log_file: Path | None = None
) -> list[str]:
    """``java`` running ``main`` from the Kafka classpath, logging with the stack's log4j2 config."""
    log4j = resources.files("stack") / "conf" / "log4j2.properties"
    return [
        settings.java,
        *heap.split(),
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dstreamrag.log.file={log_file or settings.log_dir / 'kafka-tools.log'}",
        "-cp",
        classpath(settings),
        main,
        *args,
    ]


def format_storage(settings: StackSettings) -> None:
    """Format the KRaft storage once; a formatted log dir (meta.properties) is left as it is."""
    config, log_dirs = _dirs(settings)
    if (log_dirs / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    cmd = java_command(settings, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def admin(settings: StackSettings) -> AdminClient:
    return AdminClient(settings.kafka.librdkafka())


def healthy(settings: StackSettings) -> bool:
    host, port = settings.kafka_host_port
    if not port_open(host, port):
        return False
    try:
        md = admin(settings).list_topics(timeout=3)
    except KafkaException:
        return False
    return bool(md.brokers)


def start(settings: StackSettings) -> str:
    proc = managed(settings)
    if proc.pid() is not None and healthy(settings):
        return "already running"
    host, port = settings.kafka_host_port
    if proc.pid() is None and port_open(host, port):
        raise StackError(
            f"port {host}:{port} is taken by another program; set STREAMRAG_KAFKA__BOOTSTRAP_SERVERS"
        )
    config = write_config(settings)
    format_storage(settings)
    if proc.pid() is None:
        proc.start(
            java_command(
                settings, "kafka.Kafka", str(config), heap=settings.kafka_heap, log_file=proc.log_file
            )
        )
    wait_until(lambda: healthy(settings), "Kafka to accept connections", settings.start_timeout_s, proc)
    return "started"


def stop(settings: StackSettings) -> bool:
    return managed(settings).stop(timeout_s=60)


def ensure_topics(settings: StackSettings, topics: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Create missing topics with the configured partitions; returns the names it created."""
    client = admin(settings)
    wanted = TOPIC_CONFIGS if topics is None else topics
    existing = set(client.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            name,
            num_partitions=settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            config=conf,
        )
        for name, conf in wanted.items()
        if name not in existing
    ]
    if not new:
        return []
    for name, future in client.create_topics(new, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create topic {name}: {exc}") from None
    return [t.topic for t in new]


def describe_configs(settings: StackSettings, topic: str) -> dict[str, str]:
    client = admin(settings)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = client.describe_configs([res])[res].result()
    return {k: v.value for k, v in configs.items()}
