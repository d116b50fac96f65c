"""The rules of ideas and participants: statuses, what may change, the events a change causes, language detection.

`Idea` and `Participant` decide and record their events (services.aggregate); repository.py stores them. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.aggregate import Aggregate
from services.store import new_id

OPEN, MATCHED, IN_PROJECT, WITHDRAWN = "open", "matched", "in_project", "withdrawn"
STATUSES = (OPEN, MATCHED, IN_PROJECT, WITHDRAWN)

# What an author may edit; status moves only through withdraw and the matching workflow's events.
EDITABLE = ("title", "description", "theme", "tags", "seeks", "offers", "language", "round_id", "partnerships")
# Status moves caused by events of the matching service: (from, to).
TRANSITIONS = {
    (OPEN, MATCHED),
    (OPEN, IN_PROJECT),
    (MATCHED, IN_PROJECT),
    (OPEN, WITHDRAWN),
    (MATCHED, WITHDRAWN),
}


class RuleViolation(Exception):
    """A request that the rules forbid (rendered as 409 Conflict)."""


def check_editable(status: str) -> None:
    if status in (WITHDRAWN, IN_PROJECT):
        raise RuleViolation(f"an idea that is {status.replace('_', ' ')} can no longer be edited")


def check_transition(current: str, wanted: str) -> None:
    if (current, wanted) not in TRANSITIONS:
        raise RuleViolation(f"an idea cannot go from {current} to {wanted}")


def changed_fields(current: Mapping[str, Any], changes: Mapping[str, Any]) -> list[str]:
    return [k for k in EDITABLE if k in changes and changes[k] != current.get(k)]


# --- language detection ---------------------------------------------------------------------------
# Ideas come in a handful of European languages; script and the commonest short words decide it well
# enough for a default (the author can always say the language explicitly).

_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_UKRAINIAN = re.compile(r"[іїєґІЇЄҐ]")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_STOPWORDS = {
    "de": {"und", "der", "die", "das", "mit", "für", "ein", "eine", "ist", "von", "zu", "im", "den", "auf",
           "nicht", "auch", "wir", "sich", "dem", "des", "zwischen", "unsere", "über", "werden", "oder"},
    "en": {"and", "the", "with", "for", "a", "an", "is", "of", "to", "in", "on", "we", "our", "between",
           "are", "this", "that", "from", "by", "be", "people", "young"},
    "fr": {"et", "le", "la", "les", "avec", "pour", "un", "une", "est", "des", "du", "de", "en", "dans",
           "nous", "entre", "sur", "au", "aux", "jeunes", "ville"},
    "it": {"e", "il", "la", "con", "per", "un", "una", "è", "di", "che", "nel", "della", "tra"},
    "es": {"y", "el", "la", "con", "para", "un", "una", "es", "de", "que", "en", "los", "las", "entre"},
    "pl": {"i", "w", "z", "na", "do", "dla", "się", "jest", "nie", "oraz", "między", "miasta"},
}
_LETTER_HINTS = {"de": "äöüß", "fr": "éèêàçœù", "pl": "ąęłńśźż", "es": "ñ¿¡", "tr": "ğış"}


def detect_language(text: str, default: str = "en") -> str:
    """Best guess of the language of a short text, as an ISO 639-1 code."""
    if not text or not text.strip():
        return default
    cyrillic = len(_CYRILLIC.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    if letters and cyrillic / letters > 0.3:
        return "uk" if _UKRAINIAN.search(text) else "ru"
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    lowered = text.lower()
    for lang, hints in _LETTER_HINTS.items():
        scores[lang] = scores.get(lang, 0) + 2 * sum(lowered.count(ch) for ch in hints)
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else default


def idea_payload(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The full snapshot an idea event carries."""
    return {
        "idea_id": doc["_id"],
        "city": doc["city"],
        "partnerships": list(doc.get("partnerships", [])),
        "round_id": doc.get("round_id"),
        "title": doc["title"],
        "description": doc.get("description", ""),
        "theme": doc["theme"],
        "tags": list(doc.get("tags", [])),
        "seeks": list(doc.get("seeks", [])),
        "offers": list(doc.get("offers", [])),
        "language": doc["language"],
        "author_id": doc.get("author_id"),
        "status": doc["status"],
        "version": doc["version"],
    }


def participant_payload(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "participant_id": doc["_id"],
        "city": doc["city"],
        "name": doc["name"],
        "email": doc.get("email"),
        "language": doc["language"],
        "languages": list(doc.get("languages", [])),
        "interests": doc.get("interests", ""),
        "preferences": dict(doc.get("preferences", {})),
        "version": doc["version"],
    }


def _first(values: Sequence[str] | None) -> str | None:
    return values[0] if values else None


class Idea(Aggregate):
    """An idea of one city: submitted open, edited by its city, withdrawn, moved on by the matching workflow."""

    @classmethod
    def submit(cls, fields: Mapping[str, Any], *, at: datetime) -> Idea:
        idea = cls({"_id": new_id("idea"), **fields, "status": OPEN, "version": 1, "created_at": at,
                    "updated_at": at})
        idea._record("idea.submitted", idea_payload(idea.doc))
        return idea

    def edit(self, changes: Mapping[str, Any], *, at: datetime) -> list[str]:
        """Change what an author may change; the names that changed (none: nothing happens)."""
        check_editable(self.doc["status"])
        changed = changed_fields(self.doc, changes)
        if changed:
            self.set(**{name: changes[name] for name in changed})
            self.next_version(at)
            self._record("idea.updated", {**idea_payload(self.doc), "changed": changed})
        return changed

    def withdraw(self, *, at: datetime) -> None:
        check_transition(self.doc["status"], WITHDRAWN)
        self.set(status=WITHDRAWN)
        self.next_version(at)
        self._record("idea.withdrawn", {"idea_id": self.id, "city": self.doc["city"], "version": self.version})

    def move_to(self, status: str, *, at: datetime) -> bool:
        """A move the matching workflow causes (matched, in a project); False when it is no move from here."""
        if self.doc["status"] == status or (self.doc["status"], status) not in TRANSITIONS:
            return False
        self.set(status=status)
        self.next_version(at)
        self._record("idea.updated", {**idea_payload(self.doc), "changed": ["status"]})
        return True

    def _record(self, event_type: str, payload: Mapping[str, Any]) -> None:
        self.record(event_type, payload, city=self.doc["city"], partnership=_first(self.doc.get("partnerships")))


def email_key(city: str, email: str) -> str:
    """What makes an e-mail address unique: once per city, whatever its case."""
    return f"{city}:{email.lower()}"


class Participant(Aggregate):
    """A person of one city; erasing leaves a tombstone that says so to every service."""

    @classmethod
    def register(cls, fields: Mapping[str, Any], *, at: datetime) -> Participant:
        doc = {"_id": new_id("prt"), **fields, "version": 1, "created_at": at, "updated_at": at}
        if doc.get("email"):
            doc["email_key"] = email_key(doc["city"], doc["email"])
        person = cls(doc)
        person.record("participant.registered", participant_payload(doc), city=doc["city"])
        return person

    def update(self, changes: Mapping[str, Any], *, at: datetime) -> None:
        self.set(**changes)
        if "email" in changes:
            if changes["email"]:
                self.set(email_key=email_key(self.doc["city"], changes["email"]))
            else:
                self.remove("email_key")  # a null would collide in the sparse unique index
        self.next_version(at)
        self.record("participant.updated", participant_payload(self.doc), city=self.doc["city"])

    def erase(self, *, at: datetime) -> None:
        """Forget the person: only the id and the city stay, with the fact of the erasure."""
        self.remove(*[name for name in self.doc if name not in ("_id", "city", "version")])
        self.set(erased=True, erased_at=at, version=self.read_version + 1)
        self.record("participant.erased", {"participant_id": self.id, "city": self.doc["city"]}, city=self.doc["city"])


def shown_to(idea: Mapping[str, Any], city: str | None, partnerships: Sequence[Any], *, admin: bool) -> bool:
    """Whether a caller of `city` (in `partnerships`, each with its `id` and `cities`) sees an idea: its own city's,
    or a partner city's in one of the partnerships the idea is shown in (an idea may be limited to some)."""
    if admin or idea.get("city") == city:
        return True
    shown_in = set(idea.get("partnerships") or [])
    return any(p.id in shown_in and city in p.cities and idea.get("city") in p.cities for p in partnerships)


def partnerships_shown(shown: dict[str, Any], *, admin: bool, callers_partnerships: set[str]) -> dict[str, Any]:
    """An idea names only the partnerships the caller is in (all of them to an admin): Nancy must not learn
    Karlsruhe's other twins."""
    if not admin:
        shown["partnerships"] = [p for p in shown.get("partnerships", []) if p in callers_partnerships]
    return shown


# --- rounds of a partnership's lab ---------------------------------------------------------------------------

COLLECTING, MATCHING, PROJECTS, CLOSED = "collecting", "matching", "projects", "closed"
PHASES = (COLLECTING, MATCHING, PROJECTS, CLOSED)
REMIND_BEFORE = timedelta(days=2)  # people are reminded this long before a round stops collecting ideas


class RoundRefused(ValueError):
    """A round's dates that cannot be (the field, and why): rendered as 422."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def day_boundary(day: date, zone: str, *, end: bool) -> datetime:
    """The first moment of `day` (or of the day after it: its end) in `zone`, in UTC."""
    moment = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)


def round_dates(collect_until: date, workshop_at: datetime, projects_from: date, zone: str) -> dict[str, Any]:
    """A round's dates as stored, with the moments its phases change (RoundRefused: dates out of order)."""
    collect_ends = day_boundary(collect_until, zone, end=True)
    projects_start = day_boundary(projects_from, zone, end=False)
    if workshop_at < collect_ends:
        raise RoundRefused("workshop_at", "the bilateral workshop comes after collecting ends "
                                          f"({collect_until.isoformat()})")
    if projects_start < workshop_at:
        raise RoundRefused("projects_from", "projects start on or after the day of the workshop")
    return {"collect_until": collect_until.isoformat(), "workshop_at": workshop_at.astimezone(UTC),
            "projects_from": projects_from.isoformat(), "timezone": zone, "collect_ends_at": collect_ends,
            "projects_start_at": projects_start}


class Round(Aggregate):
    """A round of a partnership's lab: its ideas are collected until a day, matched at the bilateral workshop,
    then become projects from a day on; a coordinator may move it on earlier (`advance`), and close it.

    The phase follows the dates (read in the round's time zone: `collect_until` is collecting to its end,
    `projects_from` is projects from its start), or the phase a coordinator moved it to, whichever is further.
    """

    @classmethod
    def open(cls, *, partnership: str, cities: Sequence[str], name: str, collect_until: date, workshop_at: datetime,
             projects_from: date, zone: str, at: datetime) -> Round:
        doc = {"_id": new_id("round"), "partnership": partnership, "cities": list(cities), "name": name,
               **round_dates(collect_until, workshop_at, projects_from, zone), "moved_to": None, "created_at": at,
               "version": 1}
        found = cls(doc)
        found.set(phase=found.phase_at(at))
        found.record("round.opened", found.payload(), partnership=partnership)
        return found

    def change(self, *, name: str, collect_until: date, workshop_at: datetime, projects_from: date, zone: str,
               at: datetime) -> None:
        """Another name or other dates (a typo, a workshop moved), checked as when it was opened: round.updated,
        and the phase the new dates give (collecting again, when its last day moved later; a round moved on by
        hand stays where it was moved). Once its projects started (its people heard the results), no date takes
        it back; a new last day of collecting brings a new reminder."""
        before = self.phase_at(at)
        if before == CLOSED:
            raise RuleViolation(f"round {self.doc['name']!r} is closed: its name and dates stay as they were")
        dates = round_dates(collect_until, workshop_at, projects_from, zone)
        if before == PROJECTS and Round({**self.doc, **dates}).phase_at(at) != PROJECTS:
            raise RuleViolation(f"the projects of round {self.doc['name']!r} have started: its dates can no longer "
                                "take it back")
        if dates["collect_until"] != self.doc["collect_until"]:
            self.remove("reminded")
        self.set(name=name, **dates)
        self.next_version(at)
        self.record("round.updated", self.payload(), partnership=self.doc["partnership"])
        self.follow(at=at)

    def phase_at(self, at: datetime) -> str:
        d = self.doc
        by_dates = COLLECTING if at < d["collect_ends_at"] else MATCHING if at < d["projects_start_at"] else PROJECTS
        moved = d.get("moved_to") or COLLECTING
        return max(by_dates, moved, key=PHASES.index)

    def collecting(self, at: datetime) -> bool:
        return self.phase_at(at) == COLLECTING

    def advance(self, *, at: datetime) -> str:
        """On to the next phase now (a workshop held early, a round closed); the phase it is in then."""
        current = self.phase_at(at)
        if current == CLOSED:
            raise RuleViolation(f"round {self.doc['name']!r} is closed")
        self.set(moved_to=PHASES[PHASES.index(current) + 1])
        self.follow(at=at)
        return self.doc["phase"]

    def follow(self, *, at: datetime) -> bool:
        """The stored phase brought to what the dates and moves say now, with its events (the periodic sweep and
        every change call it); False when it was so already."""
        before, now_in = self.doc.get("phase"), self.phase_at(at)
        if before == now_in:
            return False
        self.set(phase=now_in)
        self.next_version(at)
        self.record("round.phase_changed", {**self.payload(), "previous_phase": before},
                    partnership=self.doc["partnership"])
        if now_in == CLOSED:
            self.record("round.closed", self.payload(), partnership=self.doc["partnership"])
        return True

    def remind(self, *, at: datetime) -> bool:
        """Two days before collecting ends, once: round.closing_soon (its cities' people are told)."""
        d = self.doc
        if d.get("reminded") or self.phase_at(at) != COLLECTING or at < d["collect_ends_at"] - REMIND_BEFORE:
            return False
        self.set(reminded=at)
        self.next_version(at)
        self.record("round.closing_soon", self.payload(), partnership=d["partnership"])
        return True

    def payload(self) -> dict[str, Any]:
        d = self.doc
        return {"round_id": self.id, "partnership": d["partnership"], "cities": list(d["cities"]), "name": d["name"],
                "collect_until": d["collect_until"], "workshop_at": d["workshop_at"].isoformat(),
                "projects_from": d["projects_from"], "timezone": d["timezone"], "phase": d.get("phase")}

    def late(self, at: datetime) -> str:
        """Why an idea can no longer join it, naming it and its dates."""
        d = self.doc
        workshop = f"{d['workshop_at'].astimezone(ZoneInfo(d['timezone'])):%Y-%m-%d %H:%M} {d['timezone']}"
        if at < d["collect_ends_at"]:  # moved on before its day
            return (f"round {d['name']!r} stopped collecting ideas early (planned until {d['collect_until']}; "
                    f"its workshop: {workshop}); it takes no new ideas")
        return f"round {d['name']!r} collected ideas until {d['collect_until']} (its workshop: {workshop}); " \
               "it takes no new ideas"


def check_beside(new: Round, other: Round, *, at: datetime) -> None:
    """A new (or changed) round beside a partnership's others: a name of its own, and not collecting while another
    collects (new ideas join the one round that collects)."""
    if new.id == other.id:
        return
    if new.get("name", "").casefold() == other.get("name", "").casefold():
        raise RuleViolation(f"the partnership has a round named {other.get('name')!r} already")
    if other.collecting(at) and new.collecting(at):
        raise RuleViolation(f"round {other.get('name')!r} still collects ideas (until {other.get('collect_until')}):"
                            " open the next round once it has stopped (or move it on)")
