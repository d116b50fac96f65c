"""The store: one factory that gives pymongo for mongodb:// and mongomock for mongomock://.

Each service gets its own database. mongomock is made safe for the threads of the embedded mode by one
lock per in-memory server: a conditional update (`update_one({"_id": x, "version": 3}, ...)`) must be
atomic as it is in MongoDB, and mongomock alone does not promise that across threads.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mongomock
import pymongo
from mongomock.collection import Cursor as _MockCursor
from pymongo.errors import DuplicateKeyError, PyMongoError

from services import memindex
from services.config import Settings

__all__ = [
    "DuplicateKeyError", "Index", "StoreError", "client_for", "database", "ensure_indexes", "new_id", "ping"
]

StoreError = PyMongoError

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


class _Locked:
    """Proxy that runs every call on a mongomock object under one lock and wraps what it returns."""

    __slots__ = ("_target", "_lock")

    def __init__(self, target: Any, lock: threading.RLock) -> None:
        self._target = target
        self._lock = lock

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, mongomock.Database | mongomock.Collection | _MockCursor):
            return _Locked(value, self._lock)
        return value

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or isinstance(value, mongomock.Collection | mongomock.Database):
            return self._wrap(value)  # collections are callable (like pymongo's) but are no methods

        def locked_call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return self._wrap(value(*args, **kwargs))

        return locked_call

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self._wrap(self._target[name])

    def __iter__(self) -> _Locked:
        return self

    def __next__(self) -> Any:
        with self._lock:
            return next(self._target)

    def __repr__(self) -> str:
        return f"Locked({self._target!r})"


memindex.install()  # mongomock answers indexed queries without scanning every document


_id_lock = threading.Lock()
_id_last = [0, 0]  # the last millisecond and the sequence number within it
ID_PATTERN = r"^[a-z]+_[0-9a-f]{23}$"  # what new_id makes: prefix, 11 + 4 + 8 hex digits


class NotFound(Exception):
    """No such object here, or none this caller may see: str() is e.g. "match match_0a1b"."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key}")


def now() -> datetime:
    """This moment in UTC, to the millisecond: what MongoDB keeps of a date, so that the answer to the write that
    stored it and every later read show the same time."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_id(prefix: str) -> str:
    """A unique id that sorts by creation time, so `_id` order is creation order for cursors.

    Milliseconds, then a sequence within the millisecond (ids of one process never tie), then
    randomness (ids of different processes never collide).
    """
    with _id_lock:
        now = max(time.time_ns() // 1_000_000, _id_last[0])
        _id_last[1] = _id_last[1] + 1 if now == _id_last[0] else 0
        _id_last[0] = now
        seq = _id_last[1]
    return f"{prefix}_{now:011x}{seq:04x}{secrets.token_hex(4)}"


def client_for(url: str) -> Any:
    """One client per URL and process. `mongomock://<name>` names an in-memory server of this process."""
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            if url.startswith("mongomock://"):
                client = _Locked(mongomock.MongoClient(tz_aware=True), threading.RLock())
            else:
                client = pymongo.MongoClient(
                    url, tz_aware=True, serverSelectionTimeoutMS=5000, connect=False, appname="twincity"
                )
            _clients[url] = client
        return client


def forget(url: str) -> None:
    """Drop a cached client (tests use it to throw an in-memory server away)."""
    with _clients_lock:
        client = _clients.pop(url, None)
    if client is not None and not url.startswith("mongomock://"):
        client.close()


def database(settings: Settings, service: str) -> Any:
    return client_for(settings.mongo_url)[settings.database_name(service)]


def ping(db: Any) -> None:
    """Raise when the store does not answer."""
    db.command("ping")


@dataclass(frozen=True)
class Index:
    """An index a service needs; created at start (idempotent)."""

    keys: Sequence[tuple[str, int]]
    unique: bool = False
    sparse: bool = False
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def ensure_indexes(db: Any, indexes: Mapping[str, Iterable[Index]]) -> None:
    for collection, wanted in indexes.items():
        for index in wanted:
            kwargs: dict[str, Any] = {"unique": index.unique, **index.options}
            if index.sparse:
                kwargs["sparse"] = True
            if index.name:
                kwargs["name"] = index.name
            db[collection].create_index(list(index.keys), **kwargs)
