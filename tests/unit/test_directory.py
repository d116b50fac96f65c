"""The gateway's directory: who a key may see, kept for a moment and forgotten on every write."""

from __future__ import annotations

import mongomock

from gateway import usecases
from gateway.repository import Directory


def scope(directory: Directory, city: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    caller = directory.caller(city=city, scopes=("admin",) if city is None else ("read",), key_id="k",
                              default_themes=())
    return caller.visible_cities, tuple(p.id for p in caller.partnerships)


def test_a_new_city_or_partnership_is_seen_at_once_through_any_directory_of_the_process(monkeypatch):
    db = mongomock.MongoClient()["gateway"]
    gateway, cli = Directory(db), Directory(db)  # the web app's, and one `twincity admin` would make
    for key in ("karlsruhe", "krasnodar", "nancy"):
        usecases.add_city(cli, {"key": key, "name": key.title(), "country": "DE", "language": "de"})
    assert scope(gateway, "karlsruhe") == (("karlsruhe",), ())
    usecases.add_partnership(cli, {"cities": ["karlsruhe", "krasnodar"], "name": "KA-KR", "themes": []})
    assert scope(gateway, "karlsruhe") == (("karlsruhe", "krasnodar"), ("karlsruhe-krasnodar",))
    assert scope(gateway, None) == (("karlsruhe", "krasnodar", "nancy"), ("karlsruhe-krasnodar",))
    # A write this process did not see (another replica) shows within SCOPE_SECONDS.
    db["partnerships"].insert_one({"_id": "karlsruhe-nancy", "cities": ["karlsruhe", "nancy"], "themes": []})
    assert scope(gateway, "karlsruhe")[1] == ("karlsruhe-krasnodar",), "kept for a moment"
    monkeypatch.setattr(Directory, "SCOPE_SECONDS", 0.0)
    assert scope(gateway, "karlsruhe")[1] == ("karlsruhe-krasnodar", "karlsruhe-nancy")
