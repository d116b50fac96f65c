"""The only code that touches the ideas service's collections: ideas and participants.

Every change is one single-document write that carries its events (the outbox); updates are
conditional on the document's `version`, so two concurrent edits never overwrite each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ideas import domain
from services import inbox, outbox
from services.contract import new_event
from services.store import DuplicateKeyError, Index, NotFound, new_id
from services.store import now as _now

PRODUCER = "ideas"
IDEAS, PARTICIPANTS = "ideas", "participants"

INDEXES = {
    IDEAS: [
        Index(keys=[("city", 1), ("_id", -1)], name="ideas_city"),
        Index(keys=[("author_id", 1)], name="ideas_author"),
        Index(keys=[("theme", 1), ("_id", -1)], name="ideas_theme"),
    ],
    PARTICIPANTS: [
        Index(keys=[("city", 1), ("_id", -1)], name="participants_city"),
        Index(keys=[("email_key", 1)], unique=True, sparse=True, name="participants_email"),
    ],
}

MAX_WRITE_TRIES = 5


class Conflict(Exception):
    """The document changed since the caller read it (its version moved on)."""


class DuplicateEmail(Exception):
    pass


class Repository:
    def __init__(self, db: Any, on_events: Callable[[], None] = lambda: None) -> None:
        self.ideas = db[IDEAS]
        self.participants = db[PARTICIPANTS]
        self._on_events = on_events  # wakes the relay after a write that stored events

    # --- ideas ----------------------------------------------------------------------------------------

    def add_idea(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        now = _now()
        doc = {
            "_id": new_id("idea"),
            **fields,
            "status": domain.OPEN,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        event = new_event("idea.submitted", domain.idea_payload(doc), producer=PRODUCER, city=doc["city"],
                          partnership=_first(doc.get("partnerships")))
        self.ideas.insert_one(outbox.with_events(doc, [event]))
        self._on_events()
        return doc

    def add_ideas(self, many: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Store a batch (a workshop's CSV): each idea with its own event, all in one ordered insert."""
        now = _now()
        docs = [{"_id": new_id("idea"), **fields, "status": domain.OPEN, "version": 1, "created_at": now,
                 "updated_at": now} for fields in many]
        events = [new_event("idea.submitted", domain.idea_payload(doc), producer=PRODUCER, city=doc["city"],
                            partnership=_first(doc.get("partnerships"))) for doc in docs]
        if docs:
            self.ideas.insert_many([outbox.with_events(doc, [event]) for doc, event in zip(docs, events, strict=True)])
            self._on_events()
        return docs

    def get_idea(self, idea_id: str) -> dict[str, Any]:
        doc = self.ideas.find_one({"_id": idea_id}, {outbox.FIELD: 0, inbox.FIELD: 0})
        if doc is None:
            raise NotFound("idea", idea_id)
        return doc

    def change_idea(
        self,
        idea_id: str,
        change: Callable[[dict[str, Any]], tuple[dict[str, Any], str, list[str]] | None],
        *,
        expected_version: int | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Read, apply `change` (-> new fields, event type, changed names; or None for no change), write.

        The write is conditional on the version read, and retried on a concurrent change unless the
        caller named the version it expects (then a concurrent change is a Conflict for the caller).
        With `event_id`, the change is applied at most once for that event (the inbox).
        """
        for _ in range(MAX_WRITE_TRIES):
            current = self.get_idea(idea_id)
            if expected_version is not None and current["version"] != expected_version:
                raise Conflict(f"idea {idea_id} is at version {current['version']}, not {expected_version}")
            result = change(current)
            if result is None:
                return current
            fields, event_type, changed = result
            updated = {**current, **fields, "version": current["version"] + 1, "updated_at": _now()}
            payload = domain.idea_payload(updated)
            if event_type == "idea.updated":
                payload["changed"] = changed
            elif event_type == "idea.withdrawn":
                payload = {"idea_id": idea_id, "city": updated["city"], "version": updated["version"]}
            event = new_event(event_type, payload, producer=PRODUCER, city=updated["city"],
                              partnership=_first(updated.get("partnerships")))
            update: dict[str, Any] = {"$set": {**fields, "version": updated["version"],
                                               "updated_at": updated["updated_at"]}}
            query: dict[str, Any] = {"_id": idea_id, "version": current["version"]}
            if event_id is not None:
                query.update(inbox.unseen(event_id))
                update = inbox.mark_seen(update, event_id)
            if self.ideas.update_one(query, outbox.push_events(update, [event])).matched_count == 1:
                self._on_events()
                return updated
            if event_id is not None and self.ideas.count_documents({"_id": idea_id, inbox.FIELD: event_id}):
                return self.get_idea(idea_id)  # this event was applied already
            if expected_version is not None:
                raise Conflict(f"idea {idea_id} changed while it was being updated")
        raise Conflict(f"idea {idea_id} kept changing; try again")

    def list_ideas(
        self,
        *,
        cities: Sequence[str] | None,
        filters: Mapping[str, Any],
        q: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; `cursor` is the last id of the previous page."""
        query: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if cities is not None:
            wanted = query.get("city")
            if wanted is not None and wanted not in cities:
                return [], None
            query.setdefault("city", {"$in": list(cities)})
        if cursor:
            query["_id"] = {"$lt": cursor}
        if q:
            pattern = {"$regex": re.escape(q), "$options": "i"}
            query["$or"] = [{"title": pattern}, {"description": pattern}, {"tags": pattern}]
        docs = list(
            self.ideas.find(query, {outbox.FIELD: 0, inbox.FIELD: 0}).sort("_id", -1).limit(limit + 1)
        )
        next_cursor = docs[limit - 1]["_id"] if len(docs) > limit else None
        return docs[:limit], next_cursor

    def anonymize_author(self, participant_id: str) -> int:
        """The author asked to be erased: their ideas stay, without a link to them (idempotent)."""
        result = self.ideas.update_many(
            {"author_id": participant_id}, {"$set": {"author_id": None, "author_erased": True}}
        )
        return result.modified_count

    # --- participants ------------------------------------------------------------------------------

    def add_participant(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        now = _now()
        doc = {"_id": new_id("prt"), **fields, "version": 1, "created_at": now, "updated_at": now}
        if doc.get("email"):
            doc["email_key"] = f"{doc['city']}:{doc['email'].lower()}"
        event = new_event("participant.registered", domain.participant_payload(doc), producer=PRODUCER,
                          city=doc["city"])
        try:
            self.participants.insert_one(outbox.with_events(doc, [event]))
        except DuplicateKeyError:
            raise DuplicateEmail(doc.get("email")) from None
        self._on_events()
        return doc

    def get_participant(self, participant_id: str) -> dict[str, Any]:
        doc = self.participant_or_none(participant_id)
        if doc is None:
            raise NotFound("participant", participant_id)
        return doc

    def participant_or_none(self, participant_id: str) -> dict[str, Any] | None:
        return self.participants.find_one({"_id": participant_id, "erased": {"$ne": True}},
                                          {outbox.FIELD: 0, inbox.FIELD: 0})

    def update_participant(self, participant_id: str, changes: Mapping[str, Any],
                           expected_version: int | None = None) -> dict[str, Any]:
        for _ in range(MAX_WRITE_TRIES):
            current = self.get_participant(participant_id)
            if expected_version is not None and current["version"] != expected_version:
                raise Conflict(f"participant {participant_id} is at version {current['version']}")
            fields = dict(changes)
            unset: dict[str, str] = {}
            if "email" in fields:
                if fields["email"]:
                    fields["email_key"] = f"{current['city']}:{fields['email'].lower()}"
                else:
                    unset["email_key"] = ""  # a null would collide in the sparse unique index
            updated = {**current, **fields, "version": current["version"] + 1, "updated_at": _now()}
            event = new_event("participant.updated", domain.participant_payload(updated), producer=PRODUCER,
                              city=updated["city"])
            update: dict[str, Any] = {
                "$set": {**fields, "version": updated["version"], "updated_at": updated["updated_at"]}
            }
            if unset:
                update["$unset"] = unset
            try:
                result = self.participants.update_one(
                    {"_id": participant_id, "version": current["version"]}, outbox.push_events(update, [event])
                )
            except DuplicateKeyError:
                raise DuplicateEmail(fields.get("email")) from None
            if result.matched_count == 1:
                self._on_events()
                return updated
            if expected_version is not None:
                raise Conflict(f"participant {participant_id} changed while it was being updated")
        raise Conflict(f"participant {participant_id} kept changing; try again")

    def erase_participant(self, participant_id: str) -> None:
        """Forget the person: the document becomes a tombstone that carries participant.erased."""
        current = self.participants.find_one({"_id": participant_id, "erased": {"$ne": True}})
        if current is None:
            raise NotFound("participant", participant_id)
        event = new_event("participant.erased", {"participant_id": participant_id, "city": current["city"]},
                          producer=PRODUCER, city=current["city"])
        kept = {"_id", "city", outbox.FIELD, inbox.FIELD}
        tombstone = {"erased": True, "erased_at": _now(), "version": current["version"] + 1}
        forgotten = {name: "" for name in current if name not in kept and name not in tombstone}
        # An update, not a replace: the relay may publish and pull the pending events between the read above and
        # this write (it does not change the version); a replace would put them back, to be published twice.
        update: dict[str, Any] = {"$set": tombstone}
        if forgotten:
            update["$unset"] = forgotten
        result = self.participants.update_one({"_id": participant_id, "version": current["version"]},
                                              outbox.push_events(update, [event]))
        if result.matched_count != 1:
            raise Conflict(f"participant {participant_id} changed while being erased; try again")
        self._on_events()

    def participants_by_email(self, email: str, cities: Sequence[str]) -> list[dict[str, Any]]:
        """The people with this e-mail address in the given cities (at most one a city: the unique key)."""
        keys = [f"{city}:{email.lower()}" for city in cities]
        query = {"email_key": {"$in": keys}, "erased": {"$ne": True}}
        return list(self.participants.find(query, {outbox.FIELD: 0, inbox.FIELD: 0}).sort("_id", 1))

    def participant_exists(self, participant_id: str, city: str) -> bool:
        return self.participants.count_documents(
            {"_id": participant_id, "city": city, "erased": {"$ne": True}}, limit=1
        ) == 1


def _first(values: Sequence[str] | None) -> str | None:
    return values[0] if values else None
