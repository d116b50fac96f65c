"""The gateway's own rules: cities, the partnerships that twin them, and which API keys may be made or changed.

`City` and `Partnership` are aggregates (services.aggregate): made here with the event they cause, stored by the
Directory (repository.py), which only loads and stores. The key rules are plain functions the use cases call
before the KeyStore writes. Nothing here knows HTTP or the store: api.py and the CLI turn the exceptions below
into answers.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.themes import DEFAULT_THEMES
from services.aggregate import Aggregate

SCOPES = ("read", "write", "admin")
MAX_KEY_LIFE = timedelta(days=10 * 365)  # the furthest expiry a key may be given


class Exists(Exception):
    """The key or id is taken already (409)."""


class Unknown(Exception):
    """The request names a city that does not exist, or twins a city with itself (422)."""


class Invalid(Exception):
    """One field of the request breaks a rule (422, with the field's message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class RuleViolation(Exception):
    """A change the rules forbid in the present state (409)."""


# --- cities and partnerships --------------------------------------------------------------------------------------

# A city's time zone when it names none: the zone of most of its country's people (Russia: Moscow time, as in
# Krasnodar; a city elsewhere in Russia says its own). Other countries: UTC until the city names its zone.
COUNTRY_ZONES = {
    "DE": "Europe/Berlin", "RU": "Europe/Moscow", "FR": "Europe/Paris", "AT": "Europe/Vienna", "CH": "Europe/Zurich",
    "PL": "Europe/Warsaw", "IT": "Europe/Rome", "UA": "Europe/Kyiv", "TR": "Europe/Istanbul", "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels", "CZ": "Europe/Prague", "GB": "Europe/London", "ES": "Europe/Madrid",
    "HU": "Europe/Budapest", "RO": "Europe/Bucharest", "BY": "Europe/Minsk", "GE": "Asia/Tbilisi",
}


def default_zone(country: str) -> str:
    return COUNTRY_ZONES.get(country, "UTC")


class City(Aggregate):
    @classmethod
    def register(cls, *, key: str, name: str, country: str, language: str, at: datetime,
                 names: Mapping[str, str] | None = None, timezone: str | None = None) -> City:
        names = dict(names or {})
        city = cls({"_id": key, "name": name, "country": country, "language": language, "names": names,
                    "timezone": timezone or default_zone(country), "created_at": at, "version": 1})
        city.record("city.registered", city._payload(), city=key)
        return city

    def rename(self, *, at: datetime, name: str | None = None, names: Mapping[str, str] | None = None,
               timezone: str | None = None) -> None:
        """A new name, its names in other languages (replacing them all) or its time zone; city.updated when
        anything changed."""
        changes = {k: v for k, v in (("name", name), ("names", None if names is None else dict(names)),
                                     ("timezone", timezone))
                   if v is not None and v != self.doc.get(k)}
        if changes:
            self.set(**changes)
            self.next_version(at)
            self.record("city.updated", self._payload(), city=self.id)

    def _payload(self) -> dict[str, Any]:
        d = self.doc
        return {"city": d["_id"], "name": d["name"], "country": d["country"], "language": d["language"],
                "names": dict(d.get("names") or {}), "timezone": zone_of(d)}


def zone_of(city: Mapping[str, Any]) -> str:
    """A city's time zone (cities stored before they had one: their country's)."""
    return city.get("timezone") or default_zone(city.get("country", ""))


class Partnership(Aggregate):
    @classmethod
    def form(cls, cities: Sequence[str], name: str, themes: Sequence[Mapping[str, Any]], *, at: datetime,
             known: Callable[[str], bool], partnership_id: str | None = None) -> Partnership:
        """Twin two known, different cities. Its own themes may not take a common theme's key; the event names
        every theme with its labels (the common ones too), so that services can say "same theme: Ökologie &
        Gesundheit" without knowing the gateway's list."""
        a, b = sorted(cities)
        if a == b:
            raise Unknown("a partnership twins two different cities")
        missing = [c for c in (a, b) if not known(c)]
        if missing:
            raise Unknown(f"unknown {'city' if len(missing) == 1 else 'cities'}: {', '.join(missing)}")
        clash = [t["key"] for t in themes if t["key"] in DEFAULT_THEMES]
        if clash:
            raise Invalid("themes", f"{', '.join(clash)} is a common theme already")
        pid = partnership_id or f"{a}-{b}"
        own = [dict(t) for t in themes]
        partnership = cls({"_id": pid, "name": name, "cities": [a, b], "pair": f"{a}|{b}", "themes": own,
                           "created_at": at})
        every_theme = [{"key": k, "labels": v} for k, v in DEFAULT_THEMES.items()] + own
        partnership.record("partnership.formed", {"partnership_id": pid, "name": name, "cities": [a, b],
                                                  "themes": every_theme}, partnership=pid)
        return partnership


def common_themes() -> list[dict[str, Any]]:
    """The themes every partnership has (partnership None)."""
    return [{"key": k, "labels": labels, "partnership": None} for k, labels in DEFAULT_THEMES.items()]


def own_themes(partnership: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A partnership's own themes, each saying whose it is."""
    return [{"key": t["key"], "labels": t["labels"], "partnership": partnership["_id"]}
            for t in partnership.get("themes", [])]


# --- API keys -----------------------------------------------------------------------------------------------------

def new_key_terms(scopes: Sequence[str], city: str | None, expires_at: datetime | None,
                  now: datetime) -> tuple[tuple[str, ...], datetime | None]:
    """The scopes (each once, in order) and the expiry (UTC) of a key that may be made, or Invalid."""
    wanted = tuple(dict.fromkeys(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise Invalid("scopes", f"must be some of {', '.join(SCOPES)}; got {', '.join(wanted) or 'none'}")
    if city is None and "admin" not in wanted:
        raise Invalid("scopes", "a key without a city must be an admin key")
    if city is not None and "admin" in wanted:
        raise Invalid("scopes", "an admin key belongs to no city: leave out the city, or the admin scope")
    if expires_at is None:
        return wanted, None
    expires = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    if expires <= now:
        raise Invalid("expires_at", "must lie in the future")
    if expires > now + MAX_KEY_LIFE:  # compared before converting: 9999-12-31T23:59-14:00 has no UTC datetime
        raise Invalid("expires_at", f"at most {MAX_KEY_LIFE.days // 365} years from now; leave it out for a key "
                                    "that works until revoked")
    return wanted, expires.astimezone(UTC)


def check_key_change(key_id: str, change: str, *, caller_id: str | None, configured_id: str | None) -> None:
    """The key making the call, and the key TWINCITY_ADMIN_KEY configures, are not revoked or rotated."""
    if key_id == caller_id:
        raise RuleViolation(f"this is the key making the call: {change} it with another admin key, so that one "
                            "admin key always remains")
    if key_id == configured_id:
        raise RuleViolation(f"this key is configured as TWINCITY_ADMIN_KEY: the gateway would bring it back at its "
                            f"next start. To {change} it, give TWINCITY_ADMIN_KEY another value (or none) and "
                            "restart the gateway first")


def check_revoke(*, admin: bool, other_admins: int) -> None:
    """One active admin key always remains."""
    if admin and not other_admins:
        raise RuleViolation("this is the last active admin key: make another admin key first, so that one always "
                            "remains")


# --- a round's report: what the ideas and matching services know of it, as figures ------------------------------

def round_report(ideas_part: Mapping[str, Any], matching_part: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a round from its two halves (services' /internal/... answers): ideas by theme and city, by
    language and status; matches by status and kind; projects by status; participants per city; how long ideas
    waited for their first proposal (hours)."""
    ideas = ideas_part.get("ideas", [])
    by_theme: dict[str, dict[str, int]] = {}
    for idea in ideas:
        by_theme.setdefault(idea["theme"], {}).setdefault(idea["city"], 0)
        by_theme[idea["theme"]][idea["city"]] += 1
    first = {k: _moment(v) for k, v in (matching_part.get("first_proposed_at") or {}).items()}
    waits = sorted((first[i["id"]] - _moment(i["created_at"])).total_seconds() / 3600
                   for i in ideas if i["id"] in first)
    by_status = matching_part.get("matches_by_status") or {}
    projects = matching_part.get("projects_by_status") or {}
    return {
        "round": ideas_part.get("round"),
        "ideas": {"total": len(ideas), "by_theme_and_city": by_theme, "by_city": _tally(i["city"] for i in ideas),
                  "by_language": _tally(i["language"] for i in ideas), "by_status": _tally(i["status"] for i in ideas)},
        "matches": {"total": sum(by_status.values()), "by_status": dict(by_status),
                    "by_kind": dict(matching_part.get("matches_by_kind") or {})},
        "projects": {"total": sum(projects.values()), "by_status": dict(projects)},
        "participants": {"authors_by_city": dict(ideas_part.get("authors_by_city") or {}),
                         "registered_by_city": dict(ideas_part.get("registered_by_city") or {})},
        "first_proposal": {"ideas_proposed": len(waits), "ideas_waiting": len(ideas) - len(waits),
                           "median_hours": round(statistics.median(waits), 2) if waits else None,
                           "p90_hours": round(_quantile(waits, 0.9), 2) if waits else None,
                           "max_hours": round(waits[-1], 2) if waits else None},
    }


def _tally(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank: a value that occurred)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def report_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str, Any]]:
    """Every figure of a round's report as a row (figure, what, of which city or kind, value): its CSV."""
    rows: list[tuple[str, str, str, Any]] = []
    ideas, matches, projects = report["ideas"], report["matches"], report["projects"]
    rows.append(("ideas", "total", "", ideas["total"]))
    rows += [("ideas by theme and city", theme, city, n) for theme, cities in sorted(ideas["by_theme_and_city"].items())
             for city, n in sorted(cities.items())]
    rows += [("ideas by city", city, "", n) for city, n in ideas["by_city"].items()]
    rows += [("ideas by language", lang, "", n) for lang, n in ideas["by_language"].items()]
    rows += [("ideas by status", status, "", n) for status, n in ideas["by_status"].items()]
    rows.append(("matches", "total", "", matches["total"]))
    rows += [("matches by status", status, "", n) for status, n in sorted(matches["by_status"].items())]
    rows += [("matches by kind", kind, "", n) for kind, n in sorted(matches["by_kind"].items())]
    rows.append(("projects", "total", "", projects["total"]))
    rows += [("projects by status", status, "", n) for status, n in sorted(projects["by_status"].items())]
    for name in ("authors_by_city", "registered_by_city"):
        rows += [(f"participants: {name.replace('_by_city', '')}", city, "", n)
                 for city, n in sorted(report["participants"][name].items())]
    rows += [("first proposal", key, "", value) for key, value in report["first_proposal"].items()]
    return rows
