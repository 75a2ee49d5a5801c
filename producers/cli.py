"""``streamrag publish`` and ``streamrag db``: the two ways users put documents into streamrag."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from streamrag.contracts import DocumentEvent, EventValidationError, Op, Topics, utcnow


def _event_from_json(line: str, where: str) -> DocumentEvent:
    data = json.loads(line) if line.strip() else None
    if not isinstance(data, dict):
        raise EventValidationError("<root>", f"{where}: expected a JSON object per line")
    data.setdefault("source_ts", utcnow().isoformat())
    return DocumentEvent.from_json(json.dumps(data))


@click.command("publish")
@click.option("--tenant", help="Tenant of the document.")
@click.option("--doc-id", help="Document id (unique per tenant).")
@click.option("--version", type=int, help="Monotonic document version; larger wins.")
@click.option("--op", type=click.Choice([o.value for o in Op]), default="upsert", show_default=True)
@click.option("--title", default="", help="Title.")
@click.option("--body", default=None, help="Body text; '-' reads it from stdin.")
@click.option("--metadata", default="{}", help="Metadata as a JSON object.")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="JSON lines of DocumentEvent objects ('-' for stdin) instead of the options above.",
)
@click.option("--json", "as_json", is_flag=True, help="Print deliveries as JSON lines.")
@click.option("--topic", default=Topics.DOCUMENTS, show_default=True, help="Topic to publish to.")
def publish(
    topic: str,
    tenant: str | None,
    doc_id: str | None,
    version: int | None,
    op: str,
    title: str,
    body: str | None,
    metadata: str,
    path: str | None,
    as_json: bool,
) -> None:
    """Publish document events to the documents topic and wait until Kafka acknowledges them.

    \b
    One event from options:
      streamrag publish --tenant acme --doc-id faq-7 --version 3 --title "Reset" --body "Hold the button..."
      streamrag publish --tenant acme --doc-id faq-7 --version 4 --op delete
    Many from JSON lines (file or stdin):
      streamrag publish --file events.jsonl
      cat events.jsonl | streamrag publish --file -
    Each line printed is where an event landed: key, topic, partition, offset. Give the offset to
    the API's read-your-writes parameter to wait until that event is searchable.
    """
    from producers.publisher import Publisher, PublishError
    from producers.settings import PublisherSettings

    settings = PublisherSettings()
    try:
        if path:
            with click.open_file(path) as stream:
                events = [
                    _event_from_json(line, f"line {n}") for n, line in enumerate(stream, 1) if line.strip()
                ]
        else:
            missing = [
                n
                for n, v in (("--tenant", tenant), ("--doc-id", doc_id), ("--version", version))
                if v is None
            ]
            if missing:
                raise click.UsageError(f"missing {', '.join(missing)} (or use --file)")
            text = sys.stdin.read() if body == "-" else (body or "")
            events = [
                DocumentEvent(
                    tenant=tenant,
                    doc_id=doc_id,
                    version=version,
                    op=Op(op),
                    title=title,
                    body=text,
                    metadata=json.loads(metadata),
                    source_ts=utcnow(),
                )
            ]
    except EventValidationError as exc:
        raise click.ClickException(f"invalid event: {exc}") from None
    except ValueError as exc:  # pydantic ValidationError and JSON errors are ValueErrors
        raise click.ClickException(f"invalid event: {str(exc).splitlines()[0]} ({exc})") from None
    try:
        with Publisher(settings.kafka, topic=topic) as publisher:
            deliveries = publisher.publish_many(events)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from None
    for d in deliveries:
        if as_json:
            click.echo(json.dumps(d.as_dict()))
        else:
            click.echo(f"{d.key} -> {d.topic} partition {d.partition} offset {d.offset}")


@click.group("db")
def db() -> None:
    """Change rows of the local PostgreSQL `documents` table, to watch CDC happen.

    Every INSERT/UPDATE gets a new version from the database; Debezium turns each change into an
    event on the CDC topic, which the pipeline indexes.
    """


def _connect() -> Any:
    import psycopg

    from producers.settings import PublisherSettings

    return psycopg.connect(PublisherSettings().postgres.dsn(), autocommit=True)


@db.command("upsert")
@click.argument("doc_id")
@click.option("--tenant", default="default", show_default=True)
@click.option("--title", default="")
@click.option("--body", required=True, help="Body text; '-' reads stdin.")
@click.option("--metadata", default="{}", help="JSON object.")
def db_upsert(doc_id: str, tenant: str, title: str, body: str, metadata: str) -> None:
    """INSERT a row, or UPDATE it if (tenant, DOC_ID) exists. Prints the new version."""
    text = sys.stdin.read() if body == "-" else body
    with _connect() as conn:
        row = conn.execute(
            "INSERT INTO documents (id, tenant, title, body, metadata) VALUES (%s, %s, %s, %s, %s::jsonb) "
            "ON CONFLICT (tenant, id) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body, "
            "metadata = EXCLUDED.metadata RETURNING version",
            (doc_id, tenant, title, text, json.dumps(json.loads(metadata))),
        ).fetchone()
    click.echo(f"{tenant}/{doc_id} version {row[0]}")


@db.command("delete")
@click.argument("doc_id")
@click.option("--tenant", default="default", show_default=True)
def db_delete(doc_id: str, tenant: str) -> None:
    """DELETE a row (Debezium emits a delete event and a tombstone)."""
    with _connect() as conn:
        n = conn.execute("DELETE FROM documents WHERE tenant = %s AND id = %s", (tenant, doc_id)).rowcount
    click.echo(f"{tenant}/{doc_id} {'deleted' if n else 'not found'}")


@db.command("list")
@click.option("--tenant", default=None)
def db_list(tenant: str | None) -> None:
    """List rows: tenant/id, version, updated_at, title."""
    with _connect() as conn:
        rows = conn.execute(
            "SELECT tenant, id, version, updated_at, title FROM documents "
            "WHERE %s::text IS NULL OR tenant = %s ORDER BY tenant, id",
            (tenant, tenant),
        ).fetchall()
    for t, i, v, ts, title in rows:
        click.echo(f"{t}/{i}\tv{v}\t{datetime.isoformat(ts)}\t{title}")
