"""The only code that touches the gateway's collections: cities and partnerships (keys: gateway.keys)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.themes import DEFAULT_THEMES
from services import outbox
from services.contract import new_event
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


class Exists(Exception):
    pass


class Unknown(Exception):
    pass


class Directory:
    """Cities and partnerships: who exists, and who is twinned with whom."""

    # Who a key may see is asked on every API call and changes rarely: it is kept for a moment. A write through
    # any Directory of this process forgets it at once; other processes (gateway replicas, `twincity admin`)
    # see a new city or partnership within SCOPE_SECONDS.
    SCOPE_SECONDS = 2.0
    _generation = 0
    _generation_lock = threading.Lock()

    def __init__(self, db: Any, on_events: Callable[[], None] = lambda: None) -> None:
        self.cities = db[CITIES]
        self.partnerships = db[PARTNERSHIPS]
        self._on_events = on_events
        self._scopes: dict[str | None, tuple[int, float, tuple[str, ...], tuple[PartnershipRef, ...]]] = {}

    @classmethod
    def _changed(cls) -> None:
        with cls._generation_lock:
            cls._generation += 1

    def add_city(self, key: str, name: str, country: str, language: str) -> dict[str, Any]:
        doc = {"_id": key, "name": name, "country": country, "language": language,
               "created_at": datetime.now(UTC)}
        event = new_event("city.registered", {"city": key, "name": name, "country": country,
                                              "language": language}, producer=PRODUCER, city=key)
        try:
            self.cities.insert_one(outbox.with_events(doc, [event]))
        except DuplicateKeyError:
            raise Exists(f"a city with key {key!r} exists already") from None
        self._changed()
        self._on_events()
        return doc

    def city(self, key: str) -> dict[str, Any] | None:
        return self.cities.find_one({"_id": key}, {outbox.FIELD: 0})

    def list_cities(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = {} if keys is None else {"_id": {"$in": list(keys)}}
        return list(self.cities.find(query, {outbox.FIELD: 0}).sort("_id", 1))

    def add_partnership(self, cities: Sequence[str], name: str, themes: Sequence[Mapping[str, Any]],
                        partnership_id: str | None = None) -> dict[str, Any]:
        a, b = sorted(cities)
        if a == b:
            raise Unknown("a partnership twins two different cities")
        missing = [c for c in (a, b) if self.city(c) is None]
        if missing:
            raise Unknown(f"unknown {'city' if len(missing) == 1 else 'cities'}: {', '.join(missing)}")
        pid = partnership_id or f"{a}-{b}"
        doc = {"_id": pid, "name": name, "cities": [a, b], "pair": f"{a}|{b}",
               "themes": [dict(t) for t in themes], "created_at": datetime.now(UTC)}
        # The event names every theme with its labels (the common ones too), so that services can say
        # "same theme: Ökologie & Gesundheit" without knowing the gateway's list.
        all_themes = [{"key": k, "labels": v} for k, v in DEFAULT_THEMES.items()] + doc["themes"]
        event = new_event("partnership.formed", {"partnership_id": pid, "name": name, "cities": [a, b],
                                                 "themes": all_themes}, producer=PRODUCER, partnership=pid)
        try:
            self.partnerships.insert_one(outbox.with_events(doc, [event]))
        except DuplicateKeyError:
            raise Exists(f"{a} and {b} are twinned already, or the id {pid!r} is taken") from None
        self._changed()
        self._on_events()
        return doc

    def partnership(self, pid: str) -> dict[str, Any] | None:
        return self.partnerships.find_one({"_id": pid}, {outbox.FIELD: 0})

    def list_partnerships(self, city: str | None = None) -> list[dict[str, Any]]:
        query = {} if city is None else {"cities": city}
        return list(self.partnerships.find(query, {outbox.FIELD: 0}).sort("_id", 1))

    def caller(self, *, city: str | None, scopes: Sequence[str], key_id: str,
               default_themes: Sequence[str]) -> Caller:
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
