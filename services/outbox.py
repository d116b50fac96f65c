"""The outbox: events ride inside the document whose change caused them, and a relay publishes them.

A repository adds its events to the same single-document write as the state change (`with_events` for
an insert, `push_events` for an update), so the change and its events are stored together or not at
all. The relay publishes pending events with publisher confirms and removes them only afterwards:
a crash between the two publishes them again (consumers are idempotent by event id), never loses them.

Each process that writes runs a relay: `kick()` after a write publishes at once; a periodic sweep picks
up whatever another (crashed) process left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services import metrics
from services.bus import Publisher, PublishError
from services.store import Index

log = logging.getLogger(__name__)

FIELD = "_outbox"
# A multikey index over the pending events' ids lets the relay find pending documents without a scan.
INDEX = Index(keys=[(f"{FIELD}.id", 1)], name="outbox_pending")


def with_events(document: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A new document carrying its pending events (for insert_one)."""
    return {**document, FIELD: [dict(e) for e in events]}


def push_events(update: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Add pending events to an update document (for update_one / find_one_and_update)."""
    merged = {op: dict(spec) for op, spec in update.items()}
    merged.setdefault("$push", {})[FIELD] = {"$each": [dict(e) for e in events]}
    return merged


def pending_filter() -> dict[str, Any]:
    return {f"{FIELD}.id": {"$exists": True}}


class Relay:
    """Publishes the pending events of some collections of one database.

    One relay per process and database; it owns its publisher (and so its broker connection).
    """

    def __init__(
        self,
        service: str,
        db: Any,
        collections: Sequence[str],
        publisher_factory: Callable[[], Publisher],
        *,
        batch: int = 500,
        poll_interval: float = 2.0,
        grace: float = 5.0,
    ) -> None:
        self.service = service
        self.db = db
        self.collections = tuple(collections)
        self._publisher_factory = publisher_factory
        self._publisher: Publisher | None = None
        self.batch = batch
        self.poll_interval = poll_interval
        self.grace = grace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time (kick and sweep share the publisher)
        self.published_total = 0  # events confirmed by the broker since start (tests wait for their delivery)

    def kick(self) -> None:
        """Ask for a pass now (called after a write that stored events)."""
        self._wake.set()

    def relay_once(self, *, older_than: float = 0.0) -> int:
        """Publish pending events (only those at least `older_than` seconds old); return how many."""
        with self._lock:
            cutoff = datetime.now(UTC) - timedelta(seconds=older_than) if older_than else None
            found = []
            for name in self.collections:
                docs = list(self.db[name].find(pending_filter(), {FIELD: 1}).limit(self.batch))
                found.append((self.db[name], docs, len(docs) >= self.batch))
            # What waits in the store, counted before publishing: the gauge is right while the broker is down too
            # (a pass that cannot publish raises below, and the count stays).
            backlog = sum(self._count(c) if more else sum(len(d.get(FIELD) or []) for d in docs)
                          for c, docs, more in found)
            metrics.OUTBOX_BACKLOG.labels(self.service).set(backlog)
            # One publish for the pass, every collection's events in the order they happened: a participant's
            # registration goes out before the idea they submitted a moment later, though the two wait in
            # different collections (a consumer hears of the author before the idea that names them).
            taken: list[tuple[Any, list[Any], list[dict[str, Any]]]] = []
            for collection, docs, _more in found:
                batch = [(doc["_id"], [e for e in doc.get(FIELD) or [] if cutoff is None or _occurred(e) <= cutoff])
                         for doc in docs]
                batch = [(doc_id, events) for doc_id, events in batch if events]
                if batch:
                    taken.append((collection, [doc_id for doc_id, _ in batch], [e for _, ev in batch for e in ev]))
            envelopes = sorted((e for _, _, events in taken for e in events), key=_occurred)
            published = len(envelopes)
            if envelopes:
                if self._publisher is None:
                    self._publisher = self._publisher_factory()
                self._publisher.publish(envelopes)  # raises PublishError: nothing is removed
            for collection, doc_ids, events in taken:
                # One write removes a collection's part of the batch (event ids are unique: the $in is exact).
                collection.update_many({"_id": {"$in": doc_ids}},
                                       {"$pull": {FIELD: {"id": {"$in": [e["id"] for e in events]}}}})
            self.published_total += published
            metrics.OUTBOX_PUBLISHED.labels(self.service).inc(published)
            metrics.OUTBOX_BACKLOG.labels(self.service).set(max(backlog - published, 0))
            return published

    def backlog(self) -> int:
        return sum(self._count(self.db[name]) for name in self.collections)

    @staticmethod
    def _count(collection: Any) -> int:
        return sum(len(doc.get(FIELD) or []) for doc in collection.find(pending_filter(), {FIELD: 1}))

    # The background loop -------------------------------------------------------------------------------

    def start(self) -> Relay:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"{self.service}-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    def _run(self) -> None:
        backoff = 0.2
        first = True
        while not self._stop.is_set():
            kicked = self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                # After a kick: everything (this process just wrote it). On a sweep: only what has been
                # pending for a while, so that another live process's fresh events are left to it.
                # The first pass after start takes everything a crashed process left behind.
                while self.relay_once(older_than=0.0 if (kicked or first) else self.grace) >= self.batch:
                    pass
                first = False
                backoff = 0.2
                if self._publisher is not None:
                    self._publisher.heartbeat()
            except PublishError as exc:
                metrics.OUTBOX_FAILURES.labels(self.service).inc()
                log.warning("outbox relay could not publish (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()
            except Exception:
                metrics.OUTBOX_FAILURES.labels(self.service).inc()
                log.exception("outbox relay pass failed; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()


def _occurred(event: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(event["occurred_at"])
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
