"""What the gateway itself does, one function per use case: cities, partnerships and their themes, API keys and the
audit log. Everything else the API passes on to the service that owns it (api.py).

Each takes the directory (cities, partnerships), the key store or the audit log, and the key making the call where
it matters; api.py only parses, calls one of these, and answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway import domain
from gateway.audit import AuditLog
from gateway.domain import City, Invalid, Partnership
from gateway.keys import KeyStore
from gateway.repository import Directory
from services.store import NotFound, now
from services.tenancy import Caller

Clock = Callable[[], datetime]


# --- cities and partnerships ------------------------------------------------------------------------------------

def add_city(directory: Directory, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    return directory.add_city(City.register(**data, at=clock()))


def list_cities(directory: Directory, who: Caller) -> list[dict[str, Any]]:
    return directory.list_cities(None if who.admin else who.visible_cities)


def add_partnership(directory: Directory, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    """Twin two cities (gateway.domain.Partnership.form has the rules)."""
    partnership = Partnership.form(data["cities"], data["name"], data.get("themes", ()), at=clock(),
                                   known=lambda city: directory.city(city) is not None,
                                   partnership_id=data.get("id"))
    return partnership_view(directory.add_partnership(partnership))


def list_partnerships(directory: Directory, who: Caller) -> list[dict[str, Any]]:
    """Every partnership for an admin key; a city's key, those of its city."""
    return [partnership_view(d) for d in directory.list_partnerships(None if who.admin else who.city)]


def partnership_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A partnership with all the themes its ideas may have: the common four, then its own."""
    return {**doc, "themes": domain.common_themes() + domain.own_themes(doc)}


def themes(directory: Directory, who: Caller, wanted: str | None) -> list[dict[str, Any]]:
    """The common themes and the own themes of the caller's partnerships (of one, when `wanted` names it)."""
    if wanted and wanted not in {p.id for p in who.partnerships}:
        raise NotFound("partnership", wanted)
    items = domain.common_themes()
    for p in directory.list_partnerships(None if who.admin else who.city):
        if wanted is None or p["_id"] == wanted:
            items += domain.own_themes(p)
    return items


# --- API keys ---------------------------------------------------------------------------------------------------

def add_key(directory: Directory, keys: KeyStore, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    """A new key (its secret in the answer, this once): of a known city, or an admin key of none."""
    city = data.get("city")
    if city is not None and directory.city(city) is None:
        raise Invalid("city", f"unknown city {city!r}")
    scopes, expires = domain.new_key_terms(data["scopes"], city, data.get("expires_at"), clock())
    label = data.get("label", "")
    key, secret = keys.create(scopes, city, label=label, expires_at=expires)
    return {"id": key.id, "city": key.city, "scopes": list(key.scopes), "label": label, "revoked": False,
            "expires_at": key.expires_at, "expired": False, "key": secret}


def revoke_key(keys: KeyStore, key_id: str, *, caller_id: str | None, configured_id: str | None) -> None:
    """Revoke a key (it gets 401 from now on). `caller_id`: the key making the call (None from the CLI);
    `configured_id`: the key TWINCITY_ADMIN_KEY configures."""
    domain.check_key_change(key_id, "revoke", caller_id=caller_id, configured_id=configured_id)
    target = keys.active(key_id)
    if target is not None:
        domain.check_revoke(admin=target.admin, other_admins=keys.other_admins(key_id))
    if not keys.revoke(key_id):
        raise NotFound("API key", key_id)


def rotate_key(keys: KeyStore, key_id: str, *, caller_id: str | None, configured_id: str | None) -> dict[str, Any]:
    """A new secret for the key (in the answer, this once); the old one stops working at once."""
    domain.check_key_change(key_id, "rotate", caller_id=caller_id, configured_id=configured_id)
    secret = keys.rotate(key_id)
    listed = {k["id"]: k for k in keys.list_keys()}
    if secret is None:
        if key_id in listed and listed[key_id]["expired"] and not listed[key_id]["revoked"]:
            raise domain.RuleViolation(f"API key {key_id} has expired: a new secret would not work either; make a "
                                       "new key")
        raise NotFound("active API key", key_id)
    return {**listed[key_id], "key": secret}


def list_keys(keys: KeyStore) -> Sequence[dict[str, Any]]:
    return keys.list_keys()


def read_audit(audit: AuditLog, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    return audit.page(limit, cursor)
