"""API keys: made once, shown once, stored only as a hash; scopes read, write, admin."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.store import DuplicateKeyError, Index

log = logging.getLogger(__name__)

PREFIX = "tcl_"
COLLECTION = "api_keys"
INDEXES = {COLLECTION: [Index(keys=[("hash", 1)], unique=True, name="api_keys_hash")]}


LAST_USED_EVERY = 60  # seconds


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    city: str | None
    scopes: tuple[str, ...]
    revoked: bool = False
    expires_at: datetime | None = None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def allows(self, scope: str) -> bool:
        return not self.revoked and (scope in self.scopes or self.admin)


class KeyStore:
    """The gateway's keys collection."""

    def __init__(self, db: Any) -> None:
        self.collection = db[COLLECTION]

    def create(self, scopes: Iterable[str], city: str | None = None, *, secret: str | None = None,
               label: str = "", expires_at: datetime | None = None) -> tuple[ApiKey, str]:
        """Store a new key (gateway.domain.new_key_terms says which may be made) and return it with its secret."""
        scopes = tuple(scopes)
        secret = secret or new_secret()
        key_id = "key_" + secrets.token_hex(8)
        self.collection.insert_one({
            "_id": key_id, "hash": hash_secret(secret), "city": city, "scopes": list(scopes),
            "label": label, "created_at": datetime.now(UTC), "revoked": False, "expires_at": expires_at,
        })
        return ApiKey(key_id, city, scopes, expires_at=expires_at), secret

    def ensure(self, secret: str, scopes: Iterable[str], city: str | None = None, label: str = "") -> ApiKey:
        """Make sure this exact secret is an active key with these scopes (TWINCITY_ADMIN_KEY, at every start).

        Whatever the store holds: a key with this secret that was revoked, has expired or lost a scope is the
        configured key all the same, so it is made active again with its scopes (and a warning, for an operator
        who thought it gone: the configuration says otherwise)."""
        doc = self.collection.find_one({"hash": hash_secret(secret)})
        if doc is None:
            try:
                key, _ = self.create(scopes, city, secret=secret, label=label)
                return key
            except DuplicateKeyError:  # another gunicorn worker or replica made it at the same moment
                doc = self.collection.find_one({"hash": hash_secret(secret)})
                assert doc is not None
        wanted = {"revoked": False, "expires_at": None, "scopes": list(dict.fromkeys(scopes)), "city": city}
        if any(doc.get(field) != value for field, value in wanted.items()):
            log.warning("the key %s is the configured %s but was %s in the store: it is active again", doc["_id"],
                        label or "key", "revoked" if doc.get("revoked") else "changed or expired")
            self.collection.update_one({"_id": doc["_id"]}, {"$set": wanted, "$unset": {"revoked_at": ""}})
            doc = {**doc, **wanted}
        return key_of(doc)

    def describe(self, key_id: str) -> dict[str, Any] | None:
        """One key as list_keys shows it (never its secret), or None."""
        doc = self.collection.find_one({"_id": key_id}, {"hash": 0})
        return None if doc is None else _described(doc)

    def list_keys(self) -> list[dict[str, Any]]:
        return [
            _described(d)
            for d in self.collection.find({}, {"hash": 0}).sort("created_at", 1)
        ]

    def id_of(self, secret: str) -> str | None:
        """The id of the key with this secret, whatever its state."""
        doc = self.collection.find_one({"hash": hash_secret(secret)}, {"_id": 1})
        return None if doc is None else doc["_id"]

    def rotate(self, key_id: str) -> str | None:
        """A new secret for the same key (id, city, scopes stay); the old secret stops working at once. None when
        there is no active key of that id (an expired key is not brought back by a new secret: make a new key)."""
        if self.active_document(key_id, {"expires_at": 1}) is None:
            return None
        secret = new_secret()
        result = self.collection.update_one({"_id": key_id, "revoked": False},
                                            {"$set": {"hash": hash_secret(secret), "rotated_at": datetime.now(UTC)}})
        return secret if result.matched_count == 1 else None

    def other_admins(self, key_id: str) -> int:
        """Active admin keys besides `key_id` (neither revoked nor expired)."""
        return sum(1 for d in self.collection.find({"_id": {"$ne": key_id}, "city": None, "revoked": False,
                                                     "scopes": "admin"}, {"expires_at": 1}) if not _expired(d))

    def revoke(self, key_id: str) -> bool:
        result = self.collection.update_one({"_id": key_id}, {"$set": {"revoked": True,
                                                                      "revoked_at": datetime.now(UTC)}})
        return result.matched_count == 1

    def restore(self, key_id: str) -> None:
        """Take a revocation back (see gateway.usecases.revoke_key: the last admin key stays)."""
        self.collection.update_one({"_id": key_id}, {"$set": {"revoked": False}, "$unset": {"revoked_at": ""}})

    def active(self, key_id: str) -> ApiKey | None:
        """The key with this id while it is neither revoked nor expired."""
        doc = self.active_document(key_id, {"hash": 0})
        return None if doc is None else key_of(doc)

    def active_document(self, key_id: str, projection: Mapping[str, int] | None = None) -> dict[str, Any] | None:
        """The stored key with this id while it is neither revoked nor expired (a coordinator's web session checks
        it on every page)."""
        if projection and any(projection.values()):  # an inclusive projection: the expiry is needed to decide
            projection = {**projection, "expires_at": 1}
        doc = self.collection.find_one({"_id": key_id, "revoked": False}, projection)
        return None if doc is None or _expired(doc) else doc

    def authenticate(self, secret: str) -> ApiKey | None:
        if not secret:
            return None
        wanted = hash_secret(secret)
        doc = self.collection.find_one({"hash": wanted})
        if doc is None or doc.get("revoked") or _expired(doc) or not hmac.compare_digest(doc["hash"], wanted):
            return None
        now = datetime.now(UTC)
        last = doc.get("last_used_at")
        if last is None or (now - _aware(last)).total_seconds() > LAST_USED_EVERY:
            # At most one write a minute per key: "last used" is for people, not for accounting.
            self.collection.update_one({"_id": doc["_id"]}, {"$set": {"last_used_at": now}})
        return key_of(doc)


def key_of(doc: dict[str, Any]) -> ApiKey:
    """The key a stored document grants. A city key never acts as an admin (keys made before that was refused
    may still carry the scope): admin keys belong to no city."""
    city = doc.get("city")
    scopes = tuple(s for s in doc.get("scopes", ()) if city is None or s != "admin")
    return ApiKey(doc["_id"], city, scopes, bool(doc.get("revoked")), doc.get("expires_at"))


def _described(d: dict[str, Any]) -> dict[str, Any]:
    return {"id": d["_id"], "city": d.get("city"), "scopes": list(key_of(d).scopes), "label": d.get("label", ""),
            "revoked": bool(d.get("revoked")), "created_at": d.get("created_at"),
            "last_used_at": d.get("last_used_at"), "rotated_at": d.get("rotated_at"),
            "expires_at": d.get("expires_at"), "expired": _expired(d)}


def _expired(doc: Mapping[str, Any]) -> bool:
    expires = doc.get("expires_at")
    return expires is not None and _aware(expires) <= datetime.now(UTC)
