"""In-memory stand-ins for the services' repositories and units of work (in the manner of cosmicpython's fakes):
use cases and handlers run against these in unit tests, fast, without a store or a broker.

`FakeDocuments` behaves as services.aggregate.DocumentRepository does where the use cases can tell: `add` refuses a
second document of an id, `save` writes only on the version read (else Conflict) and once per causing event, and
every stored event lands in `published` (what the relay would publish), in order.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from services.aggregate import Aggregate, Conflict, Recorded
from services.store import DuplicateKeyError, NotFound

A = TypeVar("A", bound=Aggregate)


def _matches(doc: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for name, wanted in where.items():
        if isinstance(wanted, dict) and "$ne" in wanted:
            if doc.get(name) == wanted["$ne"]:
                return False
        elif isinstance(wanted, dict) and "$in" in wanted:
            if doc.get(name) not in wanted["$in"]:
                return False
        elif doc.get(name) != wanted:
            return False
    return True


class FakeDocuments(Generic[A]):
    def __init__(self, make: Callable[[Mapping[str, Any]], A], kind: str) -> None:
        self.make, self.kind = make, kind
        self.docs: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, set[str]] = {}
        self.published: list[Recorded] = []
        self.order = itertools.count()

    # what the use cases call -----------------------------------------------------------------------------

    def get(self, key: str, **where: Any) -> A:
        doc = self.docs.get(key)
        if doc is None or not _matches(doc, where):
            raise NotFound(self.kind, key)
        return self.make(copy.deepcopy(doc))

    def find(self, query: Mapping[str, Any], *, sort: Sequence[tuple[str, int]] = (("_id", 1),),
             limit: int = 0) -> list[A]:
        found = [self.make(copy.deepcopy(d)) for d in self.docs.values() if _matches(d, query)]
        return found[:limit] if limit else found

    def add(self, aggregate: A) -> A:
        if aggregate.id in self.docs:
            raise DuplicateKeyError(f"{self.kind} {aggregate.id} exists")
        self.docs[aggregate.id] = copy.deepcopy(aggregate.doc)
        self._stored(aggregate)
        return aggregate

    def add_many(self, aggregates: Sequence[A]) -> list[A]:
        return [self.add(a) for a in aggregates]

    def save(self, aggregate: A, *, because_of: str | None = None) -> bool:
        if not aggregate.changed:
            return True
        stored = self.docs.get(aggregate.id)
        if because_of is not None and because_of in self.seen.get(aggregate.id, set()):
            return False
        if stored is None or stored.get("version", 0) != aggregate.read_version:
            raise Conflict(f"{self.kind} {aggregate.id} changed while it was being updated")
        stored.update(copy.deepcopy(aggregate.changes))
        for name in aggregate.removed:
            stored.pop(name, None)
        if because_of is not None:
            self.seen.setdefault(aggregate.id, set()).add(because_of)
        self._stored(aggregate)
        return True

    # what tests look at ---------------------------------------------------------------------------------

    def events(self, event_type: str | None = None) -> list[Recorded]:
        return [e for e in self.published if event_type is None or e.type == event_type]

    def _stored(self, aggregate: Aggregate) -> None:
        self.published.extend(aggregate.events)
        aggregate.read_version = aggregate.version
        aggregate.changes, aggregate.removed, aggregate.events = {}, set(), []


class Clock:
    """A clock a test sets: every call gives the same moment until the test moves it on."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.at = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> Any:
        return self.at

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.at += timedelta(**delta)
