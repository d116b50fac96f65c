"""The gateway's own use cases (gateway.usecases) on in-memory fakes of the directory and the key store: cities,
partnerships and their events, which themes a key sees, and the rules of making, revoking and rotating API keys."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway import domain, usecases
from gateway.domain import City, Exists, Invalid, Partnership, RuleViolation, Unknown
from gateway.keys import ApiKey
from services.aggregate import Recorded
from services.store import NotFound
from services.tenancy import Caller, PartnershipRef
from tests.unit.fakes import Clock

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class FakeDirectory:
    """Cities and partnerships in dictionaries; what the Directory would publish lands in `published`."""

    def __init__(self) -> None:
        self.cities: dict[str, dict[str, Any]] = {}
        self.partnerships: dict[str, dict[str, Any]] = {}
        self.published: list[Recorded] = []

    def add_city(self, city: City) -> dict[str, Any]:
        if city.id in self.cities:
            raise Exists(f"a city with key {city.id!r} exists already")
        self.cities[city.id] = copy.deepcopy(city.doc)
        self.published += city.events
        return city.doc

    def change_city(self, key: str, change: Any) -> dict[str, Any]:
        if key not in self.cities:
            raise NotFound("city", key)
        city = City(copy.deepcopy(self.cities[key]))
        change(city)
        self.cities[key] = copy.deepcopy(city.doc)
        self.published += city.events
        return city.doc

    def city(self, key: str) -> dict[str, Any] | None:
        return self.cities.get(key)

    def list_cities(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [c for k, c in sorted(self.cities.items()) if keys is None or k in keys]

    def add_partnership(self, partnership: Partnership) -> dict[str, Any]:
        pair = partnership.get("pair")
        if partnership.id in self.partnerships or any(p["pair"] == pair for p in self.partnerships.values()):
            raise Exists("twinned already")
        self.partnerships[partnership.id] = copy.deepcopy(partnership.doc)
        self.published += partnership.events
        return partnership.doc

    def list_partnerships(self, city: str | None = None) -> list[dict[str, Any]]:
        return [p for _, p in sorted(self.partnerships.items()) if city is None or city in p["cities"]]


class FakeKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}

    def create(self, scopes: Iterable[str], city: str | None = None, *, secret: str | None = None,
               label: str = "", expires_at: datetime | None = None) -> tuple[ApiKey, str]:
        key_id = f"key_{len(self.keys) + 1}"
        self.keys[key_id] = {"id": key_id, "city": city, "scopes": list(scopes), "label": label, "revoked": False,
                             "expires_at": expires_at, "expired": False, "secret": f"tcl_secret{len(self.keys)}"}
        return ApiKey(key_id, city, tuple(scopes), expires_at=expires_at), self.keys[key_id]["secret"]

    def active(self, key_id: str) -> ApiKey | None:
        k = self.keys.get(key_id)
        if k is None or k["revoked"] or k["expired"]:
            return None
        return ApiKey(key_id, k["city"], tuple(k["scopes"]), expires_at=k["expires_at"])

    def other_admins(self, key_id: str) -> int:
        return sum(1 for i in self.keys if i != key_id and (k := self.active(i)) is not None and k.admin)

    def revoke(self, key_id: str) -> bool:
        if key_id not in self.keys:
            return False
        self.keys[key_id]["revoked"] = True
        return True

    def restore(self, key_id: str) -> None:
        self.keys[key_id]["revoked"] = False

    def rotate(self, key_id: str) -> str | None:
        if self.active(key_id) is None:
            return None
        self.keys[key_id]["secret"] += "-rotated"
        return self.keys[key_id]["secret"]

    def list_keys(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in doc.items() if k != "secret"} for doc in self.keys.values()]

    def describe(self, key_id: str) -> dict[str, Any] | None:
        return next((k for k in self.list_keys() if k["id"] == key_id), None)


CITY = {"key": "karlsruhe", "name": "Karlsruhe", "country": "DE", "language": "de"}
PARTNER = {"key": "krasnodar", "name": "Краснодар", "country": "RU", "language": "ru"}
OWN_THEME = {"key": "sister-schools", "labels": {"de": "Schulpartnerschaften", "ru": "Школы-побратимы"}}


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture
def twinned(directory: FakeDirectory) -> FakeDirectory:
    usecases.add_city(directory, CITY, clock=Clock())
    usecases.add_city(directory, PARTNER, clock=Clock())
    usecases.add_partnership(directory, {"cities": ["krasnodar", "karlsruhe"], "name": "Twin City Lab",
                                         "themes": [OWN_THEME]}, clock=Clock())
    return directory


def caller(city: str | None, partnerships: Sequence[Mapping[str, Any]] = ()) -> Caller:
    refs = tuple(PartnershipRef(p["_id"], tuple(p["cities"]), ()) for p in partnerships)
    return Caller(city=city, scopes=("admin",) if city is None else ("read",),
                  visible_cities=tuple(sorted({c for p in partnerships for c in p["cities"]} | ({city} - {None}))),
                  partnerships=refs, key_id="key_x")


# --- cities and partnerships ----------------------------------------------------------------------------------

def test_a_city_is_registered_with_its_event(directory):
    doc = usecases.add_city(directory, {**CITY, "names": {"ru": "Карлсруэ"}}, clock=Clock())
    assert doc == {"_id": "karlsruhe", "name": "Karlsruhe", "country": "DE", "language": "de",
                   "names": {"ru": "Карлсруэ"}, "timezone": "Europe/Berlin", "created_at": T0, "version": 1}
    assert directory.published == [Recorded("city.registered", {"city": "karlsruhe", "name": "Karlsruhe",
                                                                "country": "DE", "language": "de",
                                                                "names": {"ru": "Карлсруэ"},
                                                                "timezone": "Europe/Berlin"}, "karlsruhe")]
    with pytest.raises(Exists):
        usecases.add_city(directory, CITY)


def test_a_partnership_twins_two_known_cities_and_names_every_theme_in_its_event(twinned):
    (pid,) = twinned.partnerships
    assert pid == "karlsruhe-krasnodar" and twinned.partnerships[pid]["cities"] == ["karlsruhe", "krasnodar"]
    formed = twinned.published[-1]
    assert formed.type == "partnership.formed" and formed.partnership == pid
    keys = [t["key"] for t in formed.payload["themes"]]
    assert keys[:4] == ["ecology-health", "innovation-economy", "leisure-youth-social", "city-admin-development"]
    assert keys[4:] == ["sister-schools"], "the common themes with their labels, then the partnership's own"
    assert formed.payload["themes"][0]["labels"]["ru"] == "Экология и здоровье"


@pytest.mark.parametrize(("cities", "themes", "error", "words"), [
    (["karlsruhe", "karlsruhe"], [], Unknown, "two different cities"),
    (["karlsruhe", "nancy"], [], Unknown, "unknown city: nancy"),
    (["lyon", "nancy"], [], Unknown, "unknown cities: lyon, nancy"),
    (["karlsruhe", "krasnodar"], [{"key": "ecology-health", "labels": {"de": "Öko"}}], Invalid, "common theme"),
])
def test_a_partnership_that_breaks_a_rule_is_refused_and_publishes_nothing(directory, cities, themes, error, words):
    usecases.add_city(directory, CITY)
    usecases.add_city(directory, PARTNER)
    published = list(directory.published)
    with pytest.raises(error, match=words):
        usecases.add_partnership(directory, {"cities": cities, "name": "X", "themes": themes})
    assert directory.published == published and not directory.partnerships


def test_the_same_two_cities_are_twinned_once(twinned):
    with pytest.raises(Exists):
        usecases.add_partnership(twinned, {"cities": ["karlsruhe", "krasnodar"], "name": "Again", "id": "other"})


def test_a_city_key_sees_its_partnerships_themes_and_no_other(twinned):
    usecases.add_city(twinned, {"key": "nancy", "name": "Nancy", "country": "FR", "language": "fr"})
    usecases.add_partnership(twinned, {"cities": ["karlsruhe", "nancy"], "name": "KA-NC",
                                       "themes": [{"key": "wine", "labels": {"fr": "Vin"}}]})
    ka_kr = twinned.partnerships["karlsruhe-krasnodar"]
    krasnodar = caller("krasnodar", [ka_kr])
    seen = [(t["key"], t["partnership"]) for t in usecases.themes(twinned, krasnodar, None)]
    assert seen[-1] == ("sister-schools", "karlsruhe-krasnodar") and ("wine", "karlsruhe-nancy") not in seen
    with pytest.raises(NotFound):
        usecases.themes(twinned, krasnodar, "karlsruhe-nancy")
    every = [t["key"] for t in usecases.themes(twinned, caller(None), None)]
    assert {"sister-schools", "wine"} <= set(every)
    assert [c["_id"] for c in usecases.list_cities(twinned, krasnodar)] == ["karlsruhe", "krasnodar"]
    nancy = caller("nancy", [twinned.partnerships["karlsruhe-nancy"]])
    assert [p["_id"] for p in usecases.list_partnerships(twinned, nancy)] == ["karlsruhe-nancy"]
    assert len(usecases.list_partnerships(twinned, caller(None))) == 2


# --- API keys ---------------------------------------------------------------------------------------------------

def test_a_city_key_is_made_for_a_known_city_and_its_secret_shown_once(twinned):
    keys = FakeKeyStore()
    made = usecases.add_key(twinned, keys, {"scopes": ["read", "write", "read"], "city": "krasnodar",
                                            "label": "website"}, clock=Clock())
    assert made["scopes"] == ["read", "write"] and made["key"].startswith("tcl_") and made["city"] == "krasnodar"
    with pytest.raises(Invalid) as unknown:
        usecases.add_key(twinned, keys, {"scopes": ["read"], "city": "atlantis", "label": ""})
    assert unknown.value.field == "city"


@pytest.mark.parametrize(("expires", "words"), [(T0 - timedelta(seconds=1), "future"),
                                                (T0 + timedelta(days=11 * 365), "at most 10 years")])
def test_a_key_expires_in_the_future_and_within_ten_years(twinned, expires, words):
    with pytest.raises(Invalid, match=words) as refused:
        usecases.add_key(twinned, FakeKeyStore(), {"scopes": ["admin"], "city": None, "expires_at": expires},
                         clock=Clock())
    assert refused.value.field == "expires_at"


def test_an_expiry_in_another_zone_is_kept_in_utc():
    plus3 = datetime(2027, 3, 31, 12, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Moscow"))
    scopes, expires = domain.new_key_terms(["read"], "krasnodar", plus3, T0)
    assert expires is not None and expires.tzinfo == UTC and expires.hour == 12


def test_the_calling_key_the_configured_key_and_the_last_admin_key_stay(twinned):
    keys = FakeKeyStore()
    first = usecases.add_key(twinned, keys, {"scopes": ["admin"], "city": None})["id"]
    configured = usecases.add_key(twinned, keys, {"scopes": ["admin"], "city": None})["id"]
    with pytest.raises(RuleViolation, match="making the call"):
        usecases.revoke_key(keys, first, caller_id=first, configured_id=configured)
    with pytest.raises(RuleViolation, match="TWINCITY_ADMIN_KEY"):
        usecases.rotate_key(keys, configured, caller_id=first, configured_id=configured)
    usecases.revoke_key(keys, configured, caller_id=None, configured_id=None)  # the CLI, nothing configured
    with pytest.raises(RuleViolation, match="last active admin key"):
        usecases.revoke_key(keys, first, caller_id=None, configured_id=None)
    with pytest.raises(NotFound):
        usecases.revoke_key(keys, "key_nope", caller_id=first, configured_id=None)


def test_two_admins_revoking_the_last_two_admin_keys_at_once_leave_one(twinned):
    class Racing(FakeKeyStore):
        """Another admin's revocation of `other` lands between this one's check and its write."""

        other = ""

        def revoke(self, key_id: str) -> bool:
            if self.other and key_id != self.other:
                self.keys[self.other]["revoked"] = True
            return super().revoke(key_id)

    keys = Racing()
    first = usecases.add_key(twinned, keys, {"scopes": ["admin"], "city": None})["id"]
    keys.other = usecases.add_key(twinned, keys, {"scopes": ["admin"], "city": None})["id"]
    with pytest.raises(RuleViolation, match="last active admin key"):
        usecases.revoke_key(keys, first, caller_id=None, configured_id=None)
    assert keys.active(first) is not None, "the revocation that found no admin left afterwards was taken back"


def test_a_rotated_key_gets_a_new_secret_and_an_expired_one_is_told_to_make_a_new_key(twinned):
    keys = FakeKeyStore()
    admin = usecases.add_key(twinned, keys, {"scopes": ["admin"], "city": None})["id"]
    city = usecases.add_key(twinned, keys, {"scopes": ["read"], "city": "karlsruhe"})
    rotated = usecases.rotate_key(keys, city["id"], caller_id=admin, configured_id=None)
    assert rotated["key"] != city["key"] and "secret" not in rotated
    keys.keys[city["id"]]["expired"] = True
    with pytest.raises(RuleViolation, match="has expired"):
        usecases.rotate_key(keys, city["id"], caller_id=admin, configured_id=None)
    usecases.revoke_key(keys, city["id"], caller_id=admin, configured_id=None)
    with pytest.raises(NotFound):
        usecases.rotate_key(keys, city["id"], caller_id=admin, configured_id=None)


def test_the_last_moment_of_the_calendar_in_the_furthest_zone_is_refused_not_an_overflow():
    with pytest.raises(Invalid, match="at most 10 years"):
        domain.new_key_terms(["read"], "krasnodar", datetime.fromisoformat("9999-12-31T23:59:59-14:00"), T0)


def test_a_city_is_named_in_other_languages_later_and_says_so_once(directory):
    usecases.add_city(directory, CITY, clock=Clock())
    renamed = usecases.change_city(directory, "karlsruhe", {"names": {"ru": "Карлсруэ"}}, clock=Clock())
    assert renamed["names"] == {"ru": "Карлсруэ"} and renamed["name"] == "Karlsruhe" and renamed["version"] == 2
    assert directory.published[-1] == Recorded("city.updated", {"city": "karlsruhe", "name": "Karlsruhe",
                                                                "country": "DE", "language": "de",
                                                                "names": {"ru": "Карлсруэ"},
                                                                "timezone": "Europe/Berlin"}, "karlsruhe")
    usecases.change_city(directory, "karlsruhe", {"names": {"ru": "Карлсруэ"}}, clock=Clock())
    assert len(directory.published) == 2, "nothing changed: no event"
    moved = usecases.change_city(directory, "karlsruhe", {"timezone": "Europe/Paris"}, clock=Clock())
    assert moved["timezone"] == "Europe/Paris" and moved["names"] == {"ru": "Карлсруэ"}, "names kept"
    assert directory.published[-1].payload["timezone"] == "Europe/Paris"
    with pytest.raises(NotFound):
        usecases.change_city(directory, "atlantis", {"name": "Atlantis"})
