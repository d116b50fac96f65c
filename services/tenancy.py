"""Who is calling: the gateway authenticates, then tells a service the caller's city and what it may see.

The gateway sends `X-Twincity-Caller` (JSON, ASCII) on every internal call; services read it with
`caller()` and check it again: reads are limited to `visible_cities`, writes to the caller's own `city`.
Services are reachable only from the gateway (internal network), so they trust this header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flask import request
from marshmallow import ValidationError

from services.errors import Forbidden
from services.web import Problem

HEADER = "X-Twincity-Caller"


@dataclass(frozen=True)
class PartnershipRef:
    id: str
    cities: tuple[str, ...]
    themes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Caller:
    """The authenticated caller as the gateway saw it. `city` is None for an admin key."""

    city: str | None
    scopes: tuple[str, ...]
    visible_cities: tuple[str, ...] = ()
    partnerships: tuple[PartnershipRef, ...] = field(default_factory=tuple)
    default_themes: tuple[str, ...] = ()
    key_id: str | None = None
    # The person acting, when a signed-in participant uses the pages: they act for themselves only (their own
    # ideas, answers in their own name, the projects they are a member of). None for an API key.
    participant: str | None = None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def can_see(self, city: str | None) -> bool:
        return self.admin or (city is not None and city in self.visible_cities)

    @property
    def may_write(self) -> bool:
        return self.admin or "write" in self.scopes

    @property
    def may_read(self) -> bool:
        return self.admin or "read" in self.scopes

    def can_change(self, city: str | None) -> bool:
        """`city` is the caller's own (or the caller an admin): its objects are the caller's to change, with the
        `write` scope, which caller() checks for every request that may change something."""
        return self.admin or (city is not None and city == self.city)

    def acts_for(self, participant_id: str | None) -> bool:
        """A key acts for anyone of its city; a signed-in participant only for themselves."""
        return self.participant is None or participant_id == self.participant

    def acting_city(self, asked: str | None) -> str:
        """The city a change is made for: a city key's own (it may name it, not another), or the city an admin key
        names (it must). Raises ValidationError (422) for a missing or unknown city, Forbidden for another's."""
        if self.admin:
            if not asked:
                raise ValidationError({"city": ["an admin key must say which city this belongs to"]})
            if asked not in self.visible_cities:
                raise ValidationError({"city": [f"unknown city {asked!r}"]})
            return asked
        if asked and asked != self.city:
            raise Forbidden(f"your key belongs to {self.city}; it cannot act for {asked}")
        if self.city is None:
            raise Forbidden("this key belongs to no city")
        return self.city

    def partnerships_of(self, city: str) -> list[PartnershipRef]:
        return [p for p in self.partnerships if city in p.cities]

    def themes_of(self, city: str) -> set[str]:
        """Theme keys an idea of `city` may use: the common ones and its partnerships' own."""
        return set(self.default_themes).union(*(p.themes for p in self.partnerships_of(city)))

    def encode(self) -> str:
        # What json.dumps(dataclasses.asdict(self)) gives, without asdict's deep copy of every field (the gateway
        # encodes a caller on every call it passes on).
        return json.dumps({
            "city": self.city, "scopes": self.scopes, "visible_cities": self.visible_cities,
            "partnerships": [{"id": p.id, "cities": p.cities, "themes": p.themes} for p in self.partnerships],
            "default_themes": self.default_themes, "key_id": self.key_id, "participant": self.participant,
        }, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def decode(cls, raw: str) -> Caller:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            city=data.get("city"),
            scopes=tuple(data.get("scopes", ())),
            visible_cities=tuple(data.get("visible_cities", ())),
            partnerships=tuple(
                PartnershipRef(p["id"], tuple(p["cities"]), tuple(p.get("themes", ())))
                for p in data.get("partnerships", ())
            ),
            default_themes=tuple(data.get("default_themes", ())),
            key_id=data.get("key_id"),
            participant=data.get("participant"),
        )


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def caller() -> Caller:
    """The caller of the current internal request (401 when the gateway did not say who it is).

    Every request that may change something (any method but GET, HEAD, OPTIONS) needs the `write` scope, and every
    other one the `read` scope, checked here, by the service that answers: whichever way the call came (the API, a
    web page, a tool), a key that may only read changes nothing and one that may only write reads nothing."""
    raw = request.headers.get(HEADER)
    if not raw:
        raise Problem(401, "Unauthorized", "internal call without a caller; go through the gateway")
    try:
        who = Caller.decode(raw)
    except (ValueError, KeyError, TypeError):
        raise Problem(400, "Bad Request", f"malformed {HEADER} header") from None
    if request.method not in SAFE_METHODS and not who.may_write:
        raise Problem(403, "Forbidden", "this key may only read: a change needs a key with the 'write' scope")
    if request.method in SAFE_METHODS and not who.may_read:
        raise Problem(403, "Forbidden", "this key may not read: reading needs a key with the 'read' scope")
    return who
