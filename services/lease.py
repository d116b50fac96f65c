"""A lock shared by the processes of one service, kept in the service's store.

For short critical sections that span processes (notify's web processes and workers changing one queue's
bindings). One holder at a time: taken with an atomic update of an expired lock or the insert of a new one
(the unique `_id` settles a tie), given back by deleting it; a holder that dies frees it when its lease runs out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from services.store import DuplicateKeyError, new_id

COLLECTION = "locks"


class LockBusy(TimeoutError):
    """Another process held the lock for longer than the caller would wait."""


@contextlib.contextmanager
def held(db: Any, name: str, *, lease: float = 30.0, wait: float = 10.0) -> Iterator[None]:
    locks = db[COLLECTION]
    owner = new_id("lock")
    deadline = time.monotonic() + wait
    while True:
        now = datetime.now(UTC)
        until = now + timedelta(seconds=lease)
        try:
            if locks.update_one({"_id": name, "until": {"$lt": now}},
                                {"$set": {"owner": owner, "until": until}}).matched_count:
                break
            locks.insert_one({"_id": name, "owner": owner, "until": until})
            break
        except DuplicateKeyError:
            pass  # held by another process
        if time.monotonic() > deadline:
            raise LockBusy(f"the lock {name!r} was held by another process for more than {wait:g} s")
        time.sleep(0.005)
    try:
        yield
    finally:
        locks.delete_one({"_id": name, "owner": owner})
