"""The only code that touches the notify service's collections.

people (read model of participants: language, e-mail, channels, digest), cities, notifications (one per
event, recipient and channel: the id derives from the three, so a redelivered event makes none anew),
subscriptions (webhooks of a city) and deliveries (one per event and subscription, with every attempt).
Sending claims a document with a lease, sends, then records the outcome with its event in one write.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from services import inbox, outbox
from services.aggregate import HIDDEN, Recorded, page
from services.contract import ContractError, new_event
from services.store import DuplicateKeyError, Index, NotFound, new_id, now

log = logging.getLogger(__name__)

PRODUCER = "notify"
PEOPLE, CITIES, NOTIFICATIONS, SUBSCRIPTIONS, DELIVERIES = (
    "people", "cities", "notifications", "subscriptions", "deliveries")
LEASE = timedelta(seconds=60)

INDEXES = {
    PEOPLE: [Index(keys=[("city", 1)], name="people_city")],
    CITIES: [],
    NOTIFICATIONS: [
        # `key` derives from (event, recipient, channel): the unique index makes each notification once.
        Index(keys=[("key", 1)], unique=True, name="notifications_key"),
        Index(keys=[("recipient", 1), ("_id", -1)], name="notifications_recipient"),
        Index(keys=[("status", 1), ("next_attempt_at", 1)], name="notifications_due"),
        Index(keys=[("status", 1), ("day", 1)], name="notifications_digest"),
        # The people a notification names or quotes besides its recipient (a message's author...): erased with them.
        Index(keys=[("about", 1)], sparse=True, name="notifications_about"),
    ],
    SUBSCRIPTIONS: [Index(keys=[("city", 1)], name="subscriptions_city")],
    DELIVERIES: [
        Index(keys=[("key", 1)], unique=True, name="deliveries_key"),  # (event, subscription): once
        Index(keys=[("status", 1), ("next_attempt_at", 1)], name="deliveries_due"),
        Index(keys=[("subscription_id", 1), ("_id", -1)], name="deliveries_subscription"),
    ],
}


class Repository:
    def __init__(self, db: Any, on_events: Callable[[], None] = lambda: None,
                 on_work: Callable[[], None] = lambda: None) -> None:
        self.people = db[PEOPLE]
        self.cities = db[CITIES]
        self.notifications = db[NOTIFICATIONS]
        self.subscriptions = db[SUBSCRIPTIONS]
        self.deliveries = db[DELIVERIES]
        self._on_events = on_events  # wakes the relay
        self._on_work = on_work  # wakes the sender

    # --- read models --------------------------------------------------------------------------------------

    def put_person(self, pid: str, version: int, fields: Mapping[str, Any]) -> None:
        with contextlib.suppress(DuplicateKeyError):  # a newer version is stored: a stale event changes nothing
            self.people.update_one(
                {"_id": pid, "$or": [{"version": {"$lt": version}}, {"version": {"$exists": False}}]},
                {"$set": {**fields, "version": version}}, upsert=True)

    def person(self, pid: str) -> dict[str, Any] | None:
        return self.people.find_one({"_id": pid})

    def people_in(self, cities: Sequence[str]) -> list[str]:
        """The ids of the (not erased) people of these cities."""
        return [d["_id"] for d in self.people.find({"city": {"$in": list(cities)}, "erased": {"$ne": True}},
                                                    {"_id": 1})] if cities else []

    def erase_person(self, pid: str) -> None:
        """Forget the person: their profile, every notification addressed to them, and every notification that names
        or quotes them to others (their messages to a project, their request to join...)."""
        self.people.update_one({"_id": pid}, {"$set": {"erased": True, "name": "", "email": None},
                                              "$unset": {"interests": ""}}, upsert=True)
        self.notifications.delete_many({"recipient": pid})
        self.notifications.delete_many({"about": pid})

    def unsubscribe(self, pid: str) -> bool:
        return self.people.update_one({"_id": pid}, {"$set": {"unsubscribed": True}}).matched_count == 1

    def put_city(self, key: str, name: str, language: str, names: Mapping[str, str] | None = None,
                 timezone: str | None = None) -> None:
        """A city's names and language; its time zone when the event names one (older events name none)."""
        fields: dict[str, Any] = {"name": name, "language": language, "names": dict(names or {})}
        if timezone:
            fields["timezone"] = timezone
        self.cities.update_one({"_id": key}, {"$set": fields}, upsert=True)

    def city_zone(self, key: str) -> str | None:
        """A city's time zone (IANA name), None when it named none."""
        doc = self.cities.find_one({"_id": key}, {"timezone": 1})
        return (doc or {}).get("timezone")

    def city_name(self, key: str, language: str | None = None) -> str:
        """A city's name in a reader's language where it has one (Карлсруэ), else its own."""
        doc = self.cities.find_one({"_id": key})
        if doc is None:
            return key.capitalize()
        return (doc.get("names") or {}).get(language or "") or doc["name"]

    # --- notifications --------------------------------------------------------------------------------------

    def add_notification(self, doc: Mapping[str, Any]) -> bool:
        """Store a notification once (its `key` derives from event, recipient and channel)."""
        created = inbox.insert_once(self.notifications, {"_id": new_id("ntf"), **doc, "created_at": now(),
                                                         "attempts": 0,
                                                         "next_attempt_at": now(), "log": []}, service=PRODUCER)
        if created and doc.get("status") == "pending":
            self._on_work()
        return created

    def inbox_of(self, pid: str, limit: int, cursor: str | None, unread: bool) -> tuple[list[dict], str | None]:
        query: dict[str, Any] = {"recipient": pid, "channel": "inbox"}
        if unread:
            query["read_at"] = None
        return page(self.notifications, query, limit, cursor)

    def mark_read(self, pid: str, nid: str) -> dict[str, Any]:
        doc = self.notifications.find_one_and_update(
            {"_id": nid, "recipient": pid, "channel": "inbox"},
            {"$set": {"read_at": now()}}, projection=HIDDEN, return_document=True)
        if doc is None:
            raise NotFound("notification", nid)
        return doc

    def claim(self, collection: Any, ready: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Take one due document for sending: pending and due, or left `sending` by a crash (lease over)."""
        at = now()
        return collection.find_one_and_update(
            {**_due(at), **(ready or {})}, {"$set": {"status": "sending", "lease_until": at + LEASE}},
            sort=[("next_attempt_at", 1)], return_document=True)

    def due_cities(self, collection: Any, ready: Mapping[str, Any] | None = None) -> list[Any]:
        """The cities with documents due for sending (None for a document of no city), in a stable order."""
        return sorted(collection.distinct("city", {**_due(now()), **(ready or {})}), key=lambda c: (c is None, c))

    def sent(self, collection: Any, doc: Mapping[str, Any], record: Mapping[str, Any],
             events: Sequence[Recorded]) -> None:
        update: dict[str, Any] = {"$set": {"status": "delivered", "delivered_at": now()},
                                  "$inc": {"attempts": 1}, "$push": {"log": dict(record)}}
        collection.update_one({"_id": doc["_id"], "status": "sending"}, _with_events(update, events, doc))
        self._on_events()

    def failed(self, collection: Any, doc: Mapping[str, Any], record: Mapping[str, Any], *, retry_in: float | None,
               events: Sequence[Recorded]) -> None:
        """A try failed: due again after `retry_in` seconds, or given up (None) with its events."""
        fields: dict[str, Any] = ({"status": "pending", "next_attempt_at": now() + timedelta(seconds=retry_in)}
                                  if retry_in is not None else {"status": "failed", "failed_at": now()})
        update: dict[str, Any] = {"$set": fields, "$inc": {"attempts": 1}, "$push": {"log": dict(record)}}
        collection.update_one({"_id": doc["_id"], "status": "sending"}, _with_events(update, events, doc))
        self._on_events()

    def digest_items(self, day: str) -> dict[str, list[dict[str, Any]]]:
        """Per recipient: the e-mails of `day` that wait for the daily digest."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for doc in self.notifications.find({"status": "digest", "day": day}, HIDDEN).sort("_id", 1):
            grouped.setdefault(doc["recipient"], []).append(doc)
        return grouped

    def fold_into_digest(self, ids: Sequence[str], digest_id: str) -> None:
        self.notifications.update_many({"_id": {"$in": list(ids)}, "status": "digest"},
                                       {"$set": {"status": "in_digest", "digest_id": digest_id}})

    # --- webhooks -----------------------------------------------------------------------------------------------

    def add_subscription(self, city: str, url: str, events: Sequence[str], secret: str) -> dict[str, Any]:
        doc = {"_id": new_id("whk"), "city": city, "url": url, "events": list(events), "secret": secret,
               "status": "active", "consecutive_failures": 0, "created_at": now()}
        self.subscriptions.insert_one(doc)
        return doc

    def subscription(self, sid: str) -> dict[str, Any]:
        doc = self.subscriptions.find_one({"_id": sid})
        if doc is None:
            raise NotFound("webhook", sid)
        return doc

    def subscriptions_of(self, city: str | None) -> list[dict[str, Any]]:
        return list(self.subscriptions.find({} if city is None else {"city": city}).sort("_id", 1))

    def subscribed_events(self) -> set[str]:
        """Every event type some subscription (active or paused) names."""
        return set(self.subscriptions.distinct("events"))

    def listeners(self, cities: Sequence[str], event_type: str) -> list[dict[str, Any]]:
        """The subscriptions that hear of this event: active ones, and paused ones (their deliveries are held)."""
        return list(self.subscriptions.find({"city": {"$in": list(cities)}, "events": event_type,
                                             "status": {"$in": ["active", "paused"]}}))

    def delete_subscription(self, sid: str) -> None:
        self.subscriptions.delete_one({"_id": sid})
        self.deliveries.update_many({"subscription_id": sid, "status": {"$in": ["pending", "sending", "held"]}},
                                    {"$set": {"status": "cancelled"}})

    def set_subscription(self, sid: str, **fields: Any) -> None:
        self.subscriptions.update_one({"_id": sid}, {"$set": fields})

    def count_failure(self, sid: str, pause_after: int) -> bool:
        """One more failure in a row; pause the subscription after `pause_after`. True when it was paused."""
        doc = self.subscriptions.find_one_and_update({"_id": sid}, {"$inc": {"consecutive_failures": 1}},
                                                     return_document=True)
        if doc and doc["consecutive_failures"] >= pause_after and doc["status"] == "active":
            self.subscriptions.update_one({"_id": sid, "status": "active"},
                                          {"$set": {"status": "paused", "paused_at": now()}})
            return True
        return False

    def hold(self, doc: Mapping[str, Any]) -> None:
        """A delivery claimed for a paused subscription: kept, untried, until the subscription is resumed."""
        self.deliveries.update_one({"_id": doc["_id"], "status": "sending"}, {"$set": {"status": "held"}})

    def resume_subscription(self, sid: str) -> None:
        """Active again, its failures forgotten, and what was held while it was paused due now."""
        self.subscriptions.update_one({"_id": sid}, {"$set": {"status": "active", "consecutive_failures": 0}})
        self.release_held(sid)

    def release_held(self, sid: str) -> None:
        released = self.deliveries.update_many({"subscription_id": sid, "status": "held"},
                                               {"$set": {"status": "pending", "next_attempt_at": now()}})
        if released.modified_count:
            self._on_work()

    def add_delivery(self, doc: Mapping[str, Any], *, held: bool = False) -> bool:
        """A delivery due now, or `held` (its subscription is paused) until the subscription is resumed."""
        created = inbox.insert_once(self.deliveries, {"_id": new_id("dlv"), **doc,
                                                      "status": "held" if held else "pending",
                                                      "attempts": 0,
                                                      "next_attempt_at": now(), "created_at": now(), "log": []},
                                    service=PRODUCER)
        if created and not held:
            self._on_work()
        return created

    def deliveries_of(self, sid: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        return page(self.deliveries, {"subscription_id": sid}, limit, cursor)


def _due(at: Any) -> dict[str, Any]:
    """Due for sending: pending and due, or left `sending` by a crash (its lease is over)."""
    return {"$or": [{"status": "pending", "next_attempt_at": {"$lte": at}},
                    {"status": "sending", "lease_until": {"$lt": at}}]}


def _with_events(update: dict[str, Any], events: Sequence[Recorded], doc: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome of a send with its events. An item stored by an older version or another producer may make no
    valid event (a cause that is no event id): the outcome is recorded all the same, for a mail that went out must
    not be sent again because its event could not be told."""
    envelopes = []
    for recorded in events:
        try:
            envelopes.append(new_event(recorded.type, recorded.payload, producer=PRODUCER, city=recorded.city))
        except ContractError as exc:
            log.warning("%s of %s is recorded without its event: %s", recorded.type, doc.get("_id"), exc)
    return outbox.push_events(update, envelopes) if envelopes else update
