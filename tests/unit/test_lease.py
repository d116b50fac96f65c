"""services.lease: one holder at a time across processes (threads here), freed by its holder or its lease."""

from __future__ import annotations

import threading
import time

import mongomock
import pytest

from services import (
    lease,
    store,  # noqa: F401  (mongomock as the services use it)
)


def test_one_holder_at_a_time():
    db = mongomock.MongoClient(tz_aware=True).db
    inside: list[int] = []
    overlaps: list[int] = []

    def worker(n: int) -> None:
        for _ in range(20):
            with lease.held(db, "bindings"):
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.001)
                inside.remove(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not overlaps
    assert db[lease.COLLECTION].count_documents({}) == 0, "given back"


def test_a_held_lock_makes_others_wait_then_give_up_and_a_dead_holders_lease_runs_out():
    db = mongomock.MongoClient(tz_aware=True).db
    with lease.held(db, "bindings", lease=0.3):
        started = time.monotonic()
        with pytest.raises(lease.LockBusy), lease.held(db, "bindings", wait=0.1):
            pass
        assert time.monotonic() - started >= 0.1
    # A holder that never gave it back (a process that died): free once its lease has run out.
    held = lease.held(db, "bindings", lease=0.2)
    held.__enter__()  # never exited
    with pytest.raises(lease.LockBusy), lease.held(db, "bindings", wait=0.05):
        pass
    with lease.held(db, "bindings", wait=2.0):
        assert db[lease.COLLECTION].count_documents({}) == 1
