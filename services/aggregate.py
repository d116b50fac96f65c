"""Aggregates and the repositories that store them: a change and the events it causes, in one document write.

A domain object (an idea, a participant, a match...) is an `Aggregate` over its stored document: its methods
decide, change fields with `set` and `record` the events the change causes. A `DocumentRepository` only loads and
stores: `add` inserts a new aggregate with its events (the outbox), `save` writes the changed fields and the events
in one update that is conditional on the version it read (and, for a change an event caused, on that event not
having been applied yet: the inbox). Nothing here knows ideas or matches; the services' domain modules do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from services import inbox, outbox
from services.contract import new_event
from services.store import NotFound

HIDDEN = {outbox.FIELD: 0, inbox.FIELD: 0}  # the outbox and inbox are the store's business, never the reader's
MAX_TRIES = 5  # reads and writes of one change before a concurrent writer wins (Conflict)


class Conflict(Exception):
    """The document changed since it was read (its version moved on), or it never was what the caller expected."""


@dataclass(frozen=True)
class Recorded:
    """An event an aggregate decided on; the repository makes it an envelope (services.contract) when storing."""

    type: str
    payload: dict[str, Any]
    city: str | None = None
    partnership: str | None = None


class Aggregate:
    """A domain object over its stored document. Subclasses decide; `set` and `record` note what they decided."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc: dict[str, Any] = dict(doc)
        self.read_version: int = int(self.doc.get("version", 0))
        self.changes: dict[str, Any] = {}
        self.removed: set[str] = set()
        self.events: list[Recorded] = []

    @property
    def id(self) -> str:
        return self.doc["_id"]

    @property
    def version(self) -> int:
        return int(self.doc.get("version", 0))

    def get(self, name: str, default: Any = None) -> Any:
        return self.doc.get(name, default)

    def set(self, **fields: Any) -> None:
        self.doc.update(fields)
        self.changes.update(fields)
        self.removed.difference_update(fields)

    def remove(self, *names: str) -> None:
        for name in names:
            self.doc.pop(name, None)
            self.changes.pop(name, None)
        self.removed.update(names)

    def next_version(self, at: datetime) -> None:
        """A change: one version on from the one read, at `at`."""
        self.set(version=self.read_version + 1, updated_at=at)

    def record(self, event_type: str, payload: Mapping[str, Any], *, city: str | None = None,
               partnership: str | None = None) -> None:
        self.events.append(Recorded(event_type, dict(payload), city, partnership))

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.removed or self.events)


A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


@dataclass
class DocumentRepository(Generic[A]):
    """Loads and stores the aggregates of one collection (see the module's docstring)."""

    collection: Any
    producer: str
    make: Callable[[Mapping[str, Any]], A]
    kind: str = "document"
    on_events: Callable[[], None] = field(default=lambda: None)  # wakes the relay after a write with events

    def get(self, key: str, **where: Any) -> A:
        doc = self.collection.find_one({"_id": key, **where}, HIDDEN)
        if doc is None:
            raise NotFound(self.kind, key)
        return self.make(doc)

    def find(self, query: Mapping[str, Any], *, sort: Sequence[tuple[str, int]] = (("_id", 1),),
             limit: int = 0) -> list[A]:
        cursor = self.collection.find(dict(query), HIDDEN).sort(list(sort))
        return [self.make(doc) for doc in (cursor.limit(limit) if limit else cursor)]

    def envelopes(self, aggregate: Aggregate) -> list[dict[str, Any]]:
        return [new_event(e.type, e.payload, producer=self.producer, city=e.city, partnership=e.partnership)
                for e in aggregate.events]

    def add(self, aggregate: A) -> A:
        """Insert a new aggregate with its events (a duplicate `_id` raises the store's DuplicateKeyError)."""
        self.collection.insert_one(outbox.with_events(aggregate.doc, self.envelopes(aggregate)))
        self._stored(aggregate)
        return aggregate

    def add_many(self, aggregates: Sequence[A]) -> list[A]:
        """Insert several in one ordered write, each with its own events."""
        if aggregates:
            self.collection.insert_many([outbox.with_events(a.doc, self.envelopes(a)) for a in aggregates])
            for aggregate in aggregates:
                self._stored(aggregate)
        return list(aggregates)

    def save(self, aggregate: A, *, because_of: str | None = None) -> bool:
        """Write what changed, with its events, if the document is still at the version read (else Conflict).

        `because_of`: the id of the event that caused the change; the write is then also conditional on that
        event not having been applied to the document yet, and False (nothing written) when it had been."""
        if not aggregate.changed:
            return True
        update: dict[str, Any] = {}
        if aggregate.changes:
            update["$set"] = dict(aggregate.changes)
        if aggregate.removed:
            update["$unset"] = {name: "" for name in aggregate.removed}
        query: dict[str, Any] = {"_id": aggregate.id, "version": aggregate.read_version}
        if because_of is not None:
            query.update(inbox.unseen(because_of))
            update = inbox.mark_seen(update, because_of)
        if aggregate.events:
            update = outbox.push_events(update, self.envelopes(aggregate))
        if self.collection.update_one(query, update).matched_count == 1:
            self._stored(aggregate)
            return True
        if because_of is not None and self.collection.count_documents({"_id": aggregate.id, inbox.FIELD: because_of},
                                                                       limit=1):
            return False  # applied before: a redelivered event changes nothing
        raise Conflict(f"{self.kind} {aggregate.id} changed while it was being updated")

    def _stored(self, aggregate: Aggregate) -> None:
        had_events = bool(aggregate.events)
        aggregate.read_version = aggregate.version
        aggregate.changes, aggregate.removed, aggregate.events = {}, set(), []
        if had_events:
            self.on_events()


def retrying(step: Callable[[], T], tries: int = MAX_TRIES) -> T:
    """Run `step` (read, decide, write) again when a concurrent writer got there first: `tries` times in all, then
    the Conflict is the caller's. A change the caller made on a version it names is not retried: it calls `step`
    once."""
    for attempt in range(tries):
        try:
            return step()
        except Conflict:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def page(collection: Any, query: Mapping[str, Any], limit: int, cursor: str | None,
         projection: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a list, newest first by `_id` (ids sort by creation time): the items and the cursor of the next
    page (the last id shown), or None at the end."""
    where = dict(query)
    if cursor:
        where["_id"] = {"$lt": cursor}
    docs = list(collection.find(where, HIDDEN if projection is None else projection).sort("_id", -1)
                .limit(limit + 1))
    return docs[:limit], (docs[limit - 1]["_id"] if len(docs) > limit else None)
