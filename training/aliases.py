"""Switching the API's alias between collections atomically, with a history to roll back through.

Queries read the alias (``qdrant.collection``); each physical collection holds the vectors of one
embedding model. :meth:`AliasSwitcher.switch` repoints the alias atomically through the store
(:meth:`streamrag.store.VectorStore.point_alias`: one alias request on a server, a renamed alias
file in the embedded store): a query resolves the alias either before (old collection, old model)
or after (new collection, new model), never to a missing or half-built collection.

Every switch is recorded in the collection ``<alias>.switches`` (one point a switch, beside the
collections it names, so the history lives wherever Qdrant lives). :meth:`AliasSwitcher.rollback`
undoes the most recent switch not undone yet, so repeated rollbacks walk back through history.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from streamrag.contracts import utcnow
from streamrag.store import CollectionSpec, Point, VectorStore

log = logging.getLogger("streamrag.training")

_NAMESPACE = uuid.UUID("0b7d3c52-6a1e-4f7e-9d2b-5c8e1a4f3b69")


@dataclass(frozen=True)
class Switch:
    seq: int
    alias: str
    source: str | None
    """The collection the alias pointed at before (``None``: the alias did not exist)."""
    target: str
    action: Literal["switch", "rollback"]
    at: str
    undoes: int | None = None
    reason: str = ""


class AliasSwitcher:
    """Repoints ``alias`` in ``store`` (in embedded mode, the process's one store)."""

    def __init__(self, store: VectorStore, alias: str) -> None:
        self.store = store
        self.alias = alias
        self.history_collection = f"{alias}.switches"

    def current(self) -> str | None:
        """The collection the alias points at now (``None`` when there is no such alias)."""
        return self.store.resolve(self.alias)

    def history(self) -> list[Switch]:
        """Every recorded switch and rollback, oldest first."""
        if not self.store.exists(self.history_collection):
            return []
        return sorted(
            (Switch(**pl) for _, pl in self.store.scroll(self.history_collection)), key=lambda s: s.seq
        )

    def switch(self, target: str, reason: str = "") -> Switch:
        """Point the alias at ``target`` (an existing collection) atomically and record it."""
        return self._apply(target, "switch", None, reason)

    def rollback(self, reason: str = "") -> Switch:
        """Undo the latest switch not yet undone: the alias goes back to that switch's source.

        Raises ``LookupError`` when there is nothing to undo or the source collection is gone.
        """
        history = self.history()
        undone = {s.undoes for s in history if s.action == "rollback"}
        for record in reversed(history):
            if record.action == "switch" and record.seq not in undone:
                if record.source is None:
                    raise LookupError(
                        f"switch {record.seq} created the alias {self.alias!r}: nothing before it"
                    )
                now = self.current()
                if now != record.target:
                    log.warning(
                        "alias %s points at %s, not %s as switch %d left it; rolling back anyway",
                        self.alias,
                        now,
                        record.target,
                        record.seq,
                    )
                return self._apply(record.source, "rollback", record.seq, reason)
        raise LookupError(f"no switch of alias {self.alias!r} to roll back")

    def _apply(
        self, target: str, action: Literal["switch", "rollback"], undoes: int | None, reason: str
    ) -> Switch:
        if not self.store.exists(target):
            raise LookupError(f"collection {target!r} does not exist")
        source = self.current()
        self.store.point_alias(self.alias, target)  # atomic
        seq = max((s.seq for s in self.history()), default=0) + 1
        record = Switch(seq, self.alias, source, target, action, utcnow().isoformat(), undoes, reason)
        self._record(record)
        log.info("alias %s: %s -> %s (%s %d)", self.alias, source, target, action, seq)
        return record

    def _record(self, record: Switch) -> None:
        self.store.ensure_collection(self.history_collection, CollectionSpec())
        point_id = str(uuid.uuid5(_NAMESPACE, f"{self.alias}\x1f{record.seq}"))
        payload = {k: getattr(record, k) for k in Switch.__dataclass_fields__}
        self.store.upsert(self.history_collection, [Point(point_id, {}, payload)])
