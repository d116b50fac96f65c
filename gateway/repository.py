"""The only code that touches the gateway's collections: cities and partnerships (keys: gateway.keys)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.domain import City, Exists, Partnership
from services.aggregate import HIDDEN, DocumentRepository, retrying
from services.store import DuplicateKeyError, Index
from services.tenancy import Caller, PartnershipRef

PRODUCER = "gateway"
CITIES, PARTNERSHIPS = "cities", "partnerships"
INDEXES = {
    CITIES: [],
    PARTNERSHIPS: [
        Index(keys=[("pair", 1)], unique=True, name="partnerships_pair"),
        Index(keys=[("cities", 1)], name="partnerships_cities"),
    ],
}


class Directory:
    """Cities and partnerships: who exists, and who is twinned with whom. It loads and stores; gateway.domain
    decides (a City or Partnership comes with the event it causes, stored in the same write)."""

    # Who a key may see is asked on every API call and changes rarely: it is kept for a moment. A write through
    # any Directory of this process forgets it at once; other processes (gateway replicas, `twincity admin`)
    # see a new city or partnership within SCOPE_SECONDS.
    SCOPE_SECONDS = 2.0
    _generation = 0
    _generation_lock = threading.Lock()

    def __init__(self, db: Any, on_events: Callable[[], None] = lambda: None) -> None:
        self.cities = db[CITIES]
        self.partnerships = db[PARTNERSHIPS]
        self._stored_cities = DocumentRepository(self.cities, PRODUCER, City, "city", on_events)
        self._stored_partnerships = DocumentRepository(self.partnerships, PRODUCER, Partnership, "partnership",
                                                       on_events)
        self._scopes: dict[str | None, tuple[int, float, tuple[str, ...], tuple[PartnershipRef, ...]]] = {}

    @classmethod
    def _changed(cls) -> None:
        with cls._generation_lock:
            cls._generation += 1

    def add_city(self, city: City) -> dict[str, Any]:
        try:
            self._stored_cities.add(city)
        except DuplicateKeyError:
            raise Exists(f"a city with key {city.id!r} exists already") from None
        self._changed()
        return city.doc

    def change_city(self, key: str, change: Callable[[City], None]) -> dict[str, Any]:
        """Apply `change` to the stored city and store it with its events (retried on a concurrent change)."""
        # Cities stored before they had versions are at version 1, so that a change can be conditional on it.
        self.cities.update_one({"_id": key, "version": {"$exists": False}}, {"$set": {"version": 1}})

        def step() -> dict[str, Any]:
            city = self._stored_cities.get(key)
            change(city)
            self._stored_cities.save(city)
            return city.doc

        doc = retrying(step)
        self._changed()
        return doc

    def city(self, key: str) -> dict[str, Any] | None:
        return self.cities.find_one({"_id": key}, HIDDEN)

    def set_sign_up(self, key: str, mode: str) -> dict[str, Any]:
        """Whether people may sign up for the city by themselves (the gateway's own setting: no event)."""
        self.cities.update_one({"_id": key}, {"$set": {"sign_up": mode}})
        self._changed()
        return self.city(key) or {}

    def list_cities(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = {} if keys is None else {"_id": {"$in": list(keys)}}
        return list(self.cities.find(query, HIDDEN).sort("_id", 1))

    def add_partnership(self, partnership: Partnership) -> dict[str, Any]:
        try:
            self._stored_partnerships.add(partnership)
        except DuplicateKeyError:
            a, b = partnership.get("cities")
            raise Exists(f"{a} and {b} are twinned already, or the id {partnership.id!r} is taken") from None
        self._changed()
        return partnership.doc

    def partnership(self, pid: str) -> dict[str, Any] | None:
        return self.partnerships.find_one({"_id": pid}, HIDDEN)

    def list_partnerships(self, city: str | None = None) -> list[dict[str, Any]]:
        query = {} if city is None else {"cities": city}
        return list(self.partnerships.find(query, HIDDEN).sort("_id", 1))

    def caller(self, *, city: str | None, scopes: Sequence[str], key_id: str,
               default_themes: Sequence[str], participant: str | None = None) -> Caller:
        """What a key may see: its city and the partner cities, or everything for an admin key."""
        admin = "admin" in scopes
        visible, refs = self._scope(None if admin else city)
        return Caller(
            city=city,
            scopes=tuple(scopes),
            visible_cities=visible,
            partnerships=refs,
            default_themes=tuple(default_themes),
            key_id=key_id,
            participant=participant,
        )

    def _scope(self, city: str | None) -> tuple[tuple[str, ...], tuple[PartnershipRef, ...]]:
        """(visible cities, partnerships) of a city's keys, or of admin keys for None."""
        generation, now = Directory._generation, time.monotonic()
        kept = self._scopes.get(city)
        if kept is not None and kept[0] == generation and now - kept[1] < self.SCOPE_SECONDS:
            return kept[2], kept[3]
        partnerships = self.list_partnerships(city)
        if city is None:
            visible = tuple(c["_id"] for c in self.cities.find({}, {"_id": 1}))
        else:
            visible = tuple(sorted({city, *[c for p in partnerships for c in p["cities"]]}))
        refs = tuple(PartnershipRef(p["_id"], tuple(p["cities"]), tuple(t["key"] for t in p.get("themes", [])))
                     for p in partnerships)
        self._scopes[city] = (generation, now, visible, refs)
        return visible, refs
