"""What the gateway itself does, one function per use case: cities, partnerships and their themes, API keys and the
audit log. Everything else the API passes on to the service that owns it (api.py).

Each takes the directory (cities, partnerships), the key store or the audit log, and the key making the call where
it matters; api.py only parses, calls one of these, and answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import ValidationError

from gateway.audit import AuditLog
from gateway.keys import ApiKey, KeyStore
from gateway.repository import Directory
from gateway.themes import DEFAULT_THEMES
from services.tenancy import Caller
from services.web import Problem

MAX_KEY_LIFE = timedelta(days=10 * 365)  # the furthest expiry a key may be given


# --- cities and partnerships ------------------------------------------------------------------------------------

def add_city(directory: Directory, data: Mapping[str, Any]) -> dict[str, Any]:
    return directory.add_city(**data)


def list_cities(directory: Directory, who: Caller) -> list[dict[str, Any]]:
    return directory.list_cities(None if who.admin else who.visible_cities)


def add_partnership(directory: Directory, data: Mapping[str, Any]) -> dict[str, Any]:
    """Twin two cities; a partnership's own themes may not take a common theme's key."""
    clash = [t["key"] for t in data["themes"] if t["key"] in DEFAULT_THEMES]
    if clash:
        raise ValidationError({"themes": [f"{', '.join(clash)} is a common theme already"]})
    return partnership_view(directory.add_partnership(data["cities"], data["name"], data["themes"], data.get("id")))


def list_partnerships(directory: Directory, key: ApiKey) -> list[dict[str, Any]]:
    return [partnership_view(d) for d in directory.list_partnerships(None if key.admin else key.city)]


def partnership_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A partnership with all the themes its ideas may have: the common four, then its own."""
    themes = [{"key": k, "labels": v, "partnership": None} for k, v in DEFAULT_THEMES.items()]
    themes += [{"key": t["key"], "labels": t["labels"], "partnership": doc["_id"]} for t in doc.get("themes", [])]
    return {**doc, "themes": themes}


def themes(directory: Directory, who: Caller, wanted: str | None) -> list[dict[str, Any]]:
    """The common themes and the own themes of the caller's partnerships (of one, when `wanted` names it)."""
    if wanted and wanted not in {p.id for p in who.partnerships}:
        raise Problem(404, "Not Found", f"no partnership {wanted} visible to this key")
    items = [{"key": k, "labels": labels, "partnership": None} for k, labels in DEFAULT_THEMES.items()]
    for p in directory.list_partnerships(None if who.admin else who.city):
        if wanted is None or p["_id"] == wanted:
            items += [{"key": t["key"], "labels": t["labels"], "partnership": p["_id"]} for t in p.get("themes", [])]
    return items


# --- API keys ---------------------------------------------------------------------------------------------------

def add_key(directory: Directory, keys: KeyStore, data: Mapping[str, Any]) -> dict[str, Any]:
    """A new key (its secret in the answer, this once): of a known city, or an admin key of none."""
    if data["city"] is not None and directory.city(data["city"]) is None:
        raise ValidationError({"city": [f"unknown city {data['city']!r}"]})
    expires = _expiry(data.get("expires_at"))
    try:
        key, secret = keys.create(data["scopes"], data["city"], label=data["label"], expires_at=expires)
    except ValueError as exc:
        raise ValidationError({"scopes": [str(exc)]}) from None
    return {"id": key.id, "city": key.city, "scopes": list(key.scopes), "label": data["label"], "revoked": False,
            "expires_at": key.expires_at, "expired": False, "key": secret}


def _expiry(expires: datetime | None) -> datetime | None:
    if expires is None:
        return None
    if expires <= datetime.now(UTC):
        raise ValidationError({"expires_at": ["must lie in the future"]})
    if expires > datetime.now(UTC) + MAX_KEY_LIFE:
        raise ValidationError({"expires_at": [f"at most {MAX_KEY_LIFE.days // 365} years from now; leave it out "
                                              "for a key that works until revoked"]})
    return expires.astimezone(UTC)


def _not_this_key(caller: ApiKey, key_id: str, change: str, bootstrap_key: str | None) -> None:
    """The key making the call, and the configured TWINCITY_ADMIN_KEY, are not revoked or rotated here."""
    if key_id == caller.id:
        raise Problem(409, "Conflict", f"this is the key making the call: {change} it with another admin key, "
                      "so that one admin key always remains")
    if key_id == bootstrap_key:
        raise Problem(409, "Conflict", f"this key is configured as TWINCITY_ADMIN_KEY: the gateway would bring it "
                      f"back at its next start. To {change} it, give TWINCITY_ADMIN_KEY another value (or none) "
                      "and restart the gateway first")


def revoke_key(keys: KeyStore, caller: ApiKey, key_id: str, bootstrap_key: str | None) -> None:
    _not_this_key(caller, key_id, "revoke", bootstrap_key)
    target = keys.active(key_id)
    if target is not None and target.admin and not keys.other_admins(key_id):
        raise Problem(409, "Conflict", "this is the last active admin key: make another admin key first, so "
                      "that one always remains")
    if not keys.revoke(key_id):
        raise Problem(404, "Not Found", f"no API key {key_id}")


def rotate_key(keys: KeyStore, caller: ApiKey, key_id: str, bootstrap_key: str | None) -> dict[str, Any]:
    """A new secret for the key (in the answer, this once); the old one stops working at once."""
    _not_this_key(caller, key_id, "rotate", bootstrap_key)
    secret = keys.rotate(key_id)
    listed = {k["id"]: k for k in keys.list_keys()}
    if secret is None:
        if key_id in listed and listed[key_id]["expired"] and not listed[key_id]["revoked"]:
            raise Problem(409, "Conflict", f"API key {key_id} has expired: a new secret would not work either; "
                          "make a new key")
        raise Problem(404, "Not Found", f"no active API key {key_id}")
    return {**listed[key_id], "key": secret}


def list_keys(keys: KeyStore) -> Sequence[dict[str, Any]]:
    return keys.list_keys()


def read_audit(audit: AuditLog, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    return audit.page(limit, cursor)
