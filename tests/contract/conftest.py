"""The store adapters the contract runs against: mongomock always, a real MongoDB when MONGO_URL names one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services import store

MONGO_URL = os.environ.get("MONGO_URL", "")


@pytest.fixture(scope="session")
def mongodb_url() -> str:
    """The real MongoDB's URL; skips without one, fails with a clear message when it does not answer."""
    if not MONGO_URL.startswith("mongodb://"):
        pytest.skip("no real MongoDB: set MONGO_URL=mongodb://host:27017 to run the store contract on it")
    try:
        store.ping(store.client_for(MONGO_URL)["admin"])
    except store.StoreError as exc:
        pytest.fail(f"MongoDB does not answer on MONGO_URL ({exc!r})")
    return MONGO_URL


@pytest.fixture(params=["mongomock", pytest.param("mongodb", marks=pytest.mark.mongo)])
def db(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh, empty database on one adapter; thrown away after the test."""
    name = f"contract-{uuid.uuid4().hex[:12]}"
    url = request.getfixturevalue("mongodb_url") if request.param == "mongodb" else f"mongomock://{name}"
    client = store.client_for(url)
    yield client[name]
    client.drop_database(name)
    if url.startswith("mongomock://"):
        store.forget(url)  # the real client stays cached: one per URL and process, as in production
