"""The inbox: a handler's effect happens once per event id, however often the event arrives.

Two tools, both writing the proof of processing in the same single-document write as the effect
(no transactions needed):

- `apply_once(collection, filter, update, event_id)`: an update of one existing document. The document
  keeps the ids of the events it has absorbed (`_inbox`, the latest `KEEP`); the update's filter says
  "not yet absorbed", so a redelivered event matches nothing and changes nothing.
- `insert_once(collection, document)`: a document whose `_id` is derived from the event (see
  `derived_id`); a second insert hits the unique `_id` and is reported as a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from services import metrics
from services.store import DuplicateKeyError

FIELD = "_inbox"
KEEP = 200  # the ids a document remembers; far more than can be in flight for one document at once


def derived_id(*parts: str) -> str:
    """A stable id for a document created by an event (e.g. derived_id(event.id, "notification", who))."""
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


def unseen(event_id: str) -> dict[str, Any]:
    return {FIELD: {"$ne": event_id}}


def mark_seen(update: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    merged = {op: dict(spec) for op, spec in update.items()}
    merged.setdefault("$push", {})[FIELD] = {"$each": [event_id], "$slice": -KEEP}
    return merged


def apply_once(collection: Any, filter: Mapping[str, Any], update: Mapping[str, Any], event_id: str,
               *, service: str = "") -> bool:
    """Apply `update` to the document matched by `filter` unless it absorbed `event_id` already.

    Returns True when the effect happened now, False when it had happened before (or nothing matched).
    """
    result = collection.update_one({**filter, **unseen(event_id)}, mark_seen(update, event_id))
    if result.matched_count == 0 and service:
        metrics.EVENTS_DUPLICATE.labels(service).inc()
    return result.matched_count == 1


def insert_once(collection: Any, document: Mapping[str, Any], *, service: str = "") -> bool:
    """Insert a document whose `_id` comes from the event; False when it exists already."""
    try:
        collection.insert_one(dict(document))
    except DuplicateKeyError:
        if service:
            metrics.EVENTS_DUPLICATE.labels(service).inc()
        return False
    return True
