"""The gateway's in-memory rate-limit storage: the same answers as limits' own, without a thread a request."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from gateway import ratelimit
from gateway.ratelimit import SweptMemoryStorage


def test_the_scheme_names_the_swept_storage():
    assert isinstance(storage_from_string("twincity-memory://"), SweptMemoryStorage)


def test_a_moving_window_limits_as_before_and_starts_no_thread_a_hit(monkeypatch: pytest.MonkeyPatch):
    storage = SweptMemoryStorage()
    started: list[str] = []
    original = threading.Thread.start

    def counted(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", counted)
    limiter = MovingWindowRateLimiter(storage)
    three = RateLimitItemPerSecond(3)
    allowed = [limiter.hit(three, "key-a") for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    assert limiter.hit(three, "key-b"), "each key has its own window"
    for _ in range(200):
        limiter.hit(RateLimitItemPerSecond(1000), "key-c")
        time.sleep(0.0002)
    assert started == [], f"threads started while hitting: {started}"


def test_expired_entries_are_swept_and_the_window_opens_again(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ratelimit, "SWEEP_SECONDS", 0.05)
    storage = SweptMemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    one = RateLimitItemPerSecond(1)
    assert limiter.hit(one, "key") and not limiter.hit(one, "key")
    deadline = time.monotonic() + 3
    while any(storage.events.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(storage.events.values()), "expired entries dropped"
    assert limiter.hit(one, "key"), "a new window once the old one has passed"


def test_the_sweeper_ends_with_its_storage(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ratelimit, "SWEEP_SECONDS", 0.02)
    storage = SweptMemoryStorage()
    sweeper = storage.timer
    assert sweeper.is_alive()
    del storage
    gc.collect()
    sweeper.join(2)
    assert not sweeper.is_alive()
