"""The only code that touches the matching service's collections. It loads and stores; domain.py decides.

Read models (from events): ideas (with their vectors), participants' interests, cities, partnerships.
Own data: matches (unique per pair) and projects (one per confirmed match). Every change of a match or
project is one single-document write that carries its events (the outbox; services.aggregate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from matching import domain
from matching.domain import Match, MatchingRun, Project, ProjectMessage
from services import lease, metrics
from services.aggregate import DocumentRepository, page
from services.store import DuplicateKeyError, Index, NotFound, now

PRODUCER = "matching"
IDEAS, PARTICIPANTS, CITIES, PARTNERSHIPS = "ideas", "participants", "cities", "partnerships"
MATCHES, PROJECTS, RUNS = "matches", "projects", "matching_runs"
MESSAGES = "project_messages"

INDEXES = {
    IDEAS: [Index(keys=[("synced_at", 1)], name="ideas_synced"), Index(keys=[("author_id", 1)], name="ideas_author"),
            Index(keys=[("round_id", 1)], name="ideas_round")],
    PARTICIPANTS: [Index(keys=[("synced_at", 1)], name="participants_synced")],
    CITIES: [],
    PARTNERSHIPS: [Index(keys=[("cities", 1)], name="partnerships_cities")],
    MATCHES: [
        Index(keys=[("pair", 1)], unique=True, name="matches_pair"),
        Index(keys=[("sides.idea_id", 1)], name="matches_idea"),
        Index(keys=[("sides.participant_id", 1)], name="matches_participant"),
        Index(keys=[("partnership", 1), ("_id", -1)], name="matches_partnership"),
        Index(keys=[("status", 1), ("expires_at", 1)], name="matches_expiry"),
    ],
    RUNS: [Index(keys=[("partnership", 1), ("requested_at", -1)], name="runs_partnership")],
    PROJECTS: [
        Index(keys=[("match_id", 1)], unique=True, name="projects_match"),
        Index(keys=[("partnership", 1), ("_id", -1)], name="projects_partnership"),
        Index(keys=[("idea_ids", 1)], name="projects_idea"),
        Index(keys=[("members.participant_id", 1)], name="projects_member"),
        Index(keys=[("meetings.id", 1)], name="projects_meeting"),
        Index(keys=[("join_requests.id", 1)], name="projects_join_request"),
    ],
    MESSAGES: [Index(keys=[("project_id", 1), ("_id", 1)], name="messages_project"),
               Index(keys=[("author_id", 1)], name="messages_author")],
}


class ReadModels:
    """What this service knows of the others' objects, from their events: kept, never decided on."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.ideas = db[IDEAS]
        self.participants = db[PARTICIPANTS]
        self.cities = db[CITIES]
        self.partnerships = db[PARTNERSHIPS]

    def put_versioned(self, collection: Any, key: str, version: int, fields: Mapping[str, Any]) -> bool:
        """Store a snapshot unless a newer version is stored (a stale event changes nothing).

        True when this version is what the store holds now: newly written, or written before by an
        earlier delivery of the same event (whose follow-up work may not have finished).
        """
        try:
            result = collection.update_one(
                {"_id": key, "$or": [{"version": {"$lt": version}}, {"version": {"$exists": False}}]},
                {"$set": {**fields, "version": version, "synced_at": now()}},
                upsert=True,
            )
            if result.matched_count == 1 or result.upserted_id is not None:
                return True
        except DuplicateKeyError:
            pass  # the document exists with this or a newer version
        stored = collection.find_one({"_id": key}, {"version": 1})
        return stored is not None and stored.get("version") == version

    def idea(self, idea_id: str) -> dict[str, Any] | None:
        return self.ideas.find_one({"_id": idea_id})

    def open_ideas_of(self, partnership: str, batch: int = 200) -> Iterator[list[dict[str, Any]]]:
        """A partnership's ideas that can get proposals, with their vectors, a batch at a time."""
        found: list[dict[str, Any]] = []
        for doc in self.ideas.find({"partnerships": partnership, "status": {"$in": list(domain.MATCHABLE)}}):
            found.append(doc)
            if len(found) == batch:
                yield found
                found = []
        if found:
            yield found

    def ideas_of_round(self, partnership: str, round_id: str) -> list[str]:
        """The ids of a round's ideas (in a partnership) that this service has heard of."""
        return [d["_id"] for d in self.ideas.find({"round_id": round_id, "partnerships": partnership}, {"_id": 1})]

    def ideas_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.ideas.find({"_id": {"$in": list(ids)}})}

    def set_idea_status(self, idea_id: str, status: str, version: int) -> bool:
        result = self.ideas.update_one(
            {"_id": idea_id, "version": {"$lt": version}},
            {"$set": {"status": status, "version": version, "synced_at": now()}},
        )
        return result.matched_count == 1

    def changed_since(self, collection: Any, since: datetime | None,
                      projection: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        query = {} if since is None else {"synced_at": {"$gte": since}}
        return list(collection.find(query, projection))

    def by_ids(self, collection: Any, ids: Sequence[str]) -> list[dict[str, Any]]:
        return list(collection.find({"_id": {"$in": list(ids)}})) if ids else []

    def participant(self, pid: str) -> dict[str, Any] | None:
        return self.participants.find_one({"_id": pid})

    def erase_participant(self, pid: str) -> None:
        """Forget the person here too: their interests, vector, name and address, and that they wrote ideas."""
        self.ideas.update_many({"author_id": pid}, {"$set": {"author_id": None}})
        self.participants.update_one(
            {"_id": pid},
            {"$set": {"erased": True, "interests": "", "vec": None, "name": "", "email": None, "synced_at": now(),
                      "version": 1 << 30}},
            upsert=True,
        )

    def put_city(self, key: str, name: str, language: str, names: Mapping[str, str] | None = None,
                 timezone: str | None = None) -> None:
        fields = {"name": name, "language": language, "names": dict(names or {}),
                  **({"timezone": timezone} if timezone else {})}
        self.cities.update_one({"_id": key}, {"$set": fields}, upsert=True)

    def city_zone(self, key: str) -> str:
        """A city's IANA time zone (UTC while it has said none)."""
        return (self.cities.find_one({"_id": key}, {"timezone": 1}) or {}).get("timezone") or "UTC"

    def erased_among(self, ids: Iterable[str]) -> set[str]:
        """Which of these people were erased."""
        wanted = list(ids)
        return {d["_id"] for d in self.participants.find({"_id": {"$in": wanted}, "erased": True}, {"_id": 1})} \
            if wanted else set()

    def people_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Names, e-mail addresses and languages of people, by id (what a project shows of its members)."""
        fields = {"name": 1, "email": 1, "language": 1, "city": 1, "erased": 1}
        return {d["_id"]: d for d in self.participants.find({"_id": {"$in": list(ids)}}, fields)} if ids else {}

    def city_names(self, key: str, languages: Sequence[str] = ("de", "ru", "en")) -> dict[str, str]:
        """A city's name in each language of the reasons: its name in that language where it has one."""
        doc = self.cities.find_one({"_id": key}) or {}
        name = doc.get("name") or key.capitalize()
        return {lang: (doc.get("names") or {}).get(lang) or name for lang in languages}

    def city_name_forms(self) -> list[str]:
        """Every name of every city known here (key, name, and its names in other languages): taken out of the
        texts that are compared (domain.TopicFilter)."""
        forms: list[str] = []
        for doc in self.cities.find({}, {"name": 1, "names": 1}):
            forms += [doc["_id"], doc.get("name") or "", *(doc.get("names") or {}).values()]
        return sorted({f for f in forms if f})

    def city_name(self, key: str) -> str:
        doc = self.cities.find_one({"_id": key})
        return doc["name"] if doc else key.capitalize()

    def put_partnership(self, pid: str, name: str, cities: Sequence[str],
                        themes: Sequence[Mapping[str, Any]]) -> None:
        self.partnerships.update_one(
            {"_id": pid},
            {"$set": {"name": name, "cities": list(cities), "themes": {t["key"]: t["labels"] for t in themes}},
             "$setOnInsert": {"settings": domain.MatchPolicy().as_doc()}},
            upsert=True,
        )

    def partnership(self, pid: str) -> dict[str, Any] | None:
        return self.partnerships.find_one({"_id": pid})

    def settings(self, pid: str) -> domain.MatchPolicy:
        doc = self.partnership(pid)
        return domain.MatchPolicy.from_doc(doc.get("settings") if doc else None)

    def put_settings(self, pid: str, settings: domain.MatchPolicy) -> None:
        # Upsert: the settings may come before this service has heard of the partnership.
        self.partnerships.update_one({"_id": pid}, {"$set": {"settings": settings.as_doc()}}, upsert=True)

    def theme_labels(self, pid: str, theme: str) -> dict[str, str] | None:
        doc = self.partnership(pid)
        return (doc or {}).get("themes", {}).get(theme)


def _forget(collection: Any, pid: str) -> None:
    """The person's id off the sides of matches or projects (their names stay with their city, not with them)."""
    named = {"$or": [{"sides.participant_id": pid}, {"sides.author_id": pid}]}
    for doc in collection.find(named, {"sides": 1}):
        sides = [{**s, **{k: None for k in ("participant_id", "author_id") if s.get(k) == pid}} for s in doc["sides"]]
        collection.update_one({"_id": doc["_id"]}, {"$set": {"sides": sides}})


class MatchRepository(DocumentRepository[Match]):
    def propose(self, match: Match) -> bool:
        """Store a proposal with its match.proposed event; False when this pair was proposed before."""
        try:
            self.add(match)
        except DuplicateKeyError:
            return False
        return True

    def by_pairs(self, pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The matches of these pair keys (domain.pair_key), by pair."""
        return {m.doc["pair"]: m.doc for m in self.find({"pair": {"$in": list(pairs)}})} if pairs else {}

    def of_idea(self, idea_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """An idea's matches, best first."""
        query: dict[str, Any] = {"sides.idea_id": idea_id, **({"status": status} if status else {})}
        return sorted((m.doc for m in self.find(query)), key=lambda m: -m["score"])

    def of_ideas(self, partnership: str, idea_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The matches of a partnership that name any of these ideas (what a round's report counts)."""
        fields = {"status": 1, "kind": 1, "sides.idea_id": 1, "created_at": 1}
        return list(self.collection.find({"partnership": partnership, "sides.idea_id": {"$in": list(idea_ids)}},
                                         fields)) if idea_ids else []

    def unanswered_of(self, partnership: str) -> list[Match]:
        """The proposals the rules made in a partnership that nobody has answered yet."""
        return self.find({"partnership": partnership, "status": domain.PROPOSED, "kind": "idea"})

    def open_of_idea(self, idea_id: str) -> list[Match]:
        return self.find({"sides.idea_id": idea_id, "status": {"$in": list(domain.OPEN_STATUSES)}})

    def due(self, at: datetime, limit: int = 500) -> list[Match]:
        return self.find({"status": {"$in": list(domain.OPEN_STATUSES)}, "expires_at": {"$lt": at}}, limit=limit)

    def page(self, *, partnerships: Sequence[str] | None, filters: Mapping[str, Any], limit: int,
             cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {}
        if partnerships is not None:
            query["partnership"] = {"$in": list(partnerships)}
        for name, field in (("status", "status"), ("city", "sides.city"), ("idea", "sides.idea_id"), ("kind", "kind")):
            if filters.get(name):
                query[field] = filters[name]
        return page(self.collection, query, limit, cursor)

    def forget_person(self, pid: str) -> None:
        _forget(self.collection, pid)


class ProjectRepository(DocumentRepository[Project]):
    def form(self, project: Project) -> bool:
        """Store a new project with project.formed (False when a project of this id or forming match exists)."""
        try:
            self.add(project)
        except DuplicateKeyError:
            metrics.EVENTS_DUPLICATE.labels(PRODUCER).inc()
            return False
        return True

    def forming(self, partnership: str) -> AbstractContextManager[None]:
        """Held while a confirmed match forms or joins a project of the partnership: two confirmations of one idea
        handled at once (two workers) must not make two projects of it. Confirmations are a person's clicks, so
        one at a time per partnership costs nothing; a worker that dies frees it when its lease ends."""
        return lease.held(self.collection.database, f"projects-{partnership}", lease=30.0, wait=20.0)

    def holding(self, idea_ids: Sequence[str]) -> list[Project]:
        """The projects that hold any of these ideas (one, unless two projects' ideas were paired later)."""
        return self.find({"idea_ids": {"$in": list(idea_ids)}}) if idea_ids else []

    def for_change(self, key: str) -> Project:
        """A project to change: projects stored before they had versions are at version 1 first."""
        self.collection.update_one({"_id": key, "version": {"$exists": False}}, {"$set": {"version": 1}})
        return self.get(key)

    def find_one(self, query: Mapping[str, Any], kind: str, key: str) -> Project:
        found = self.find(query, limit=1)
        if not found:
            raise NotFound(kind, key)
        return found[0]

    def page(self, *, partnerships: Sequence[str] | None, limit: int, cursor: str | None,
             member: str | None = None, not_member: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {} if partnerships is None else {"partnership": {"$in": list(partnerships)}}
        if member is not None:
            query["$or"] = [{"members.participant_id": member}, {"sides.author_id": member},
                            {"sides.participant_id": member}]
        if not_member is not None:
            query["members.participant_id"] = {"$ne": not_member}
        return page(self.collection, query, limit, cursor)

    def of_person(self, pid: str) -> list[Project]:
        """The projects a person has a part in: member, side, meeting answer or join request."""
        return self.find({"$or": [{"members.participant_id": pid}, {"sides.author_id": pid},
                                  {"sides.participant_id": pid}, {"join_requests.participant_id": pid},
                                  {"meetings.answers.participant_id": pid}, {"meetings.proposer_id": pid}]})


class MessageRepository(DocumentRepository[ProjectMessage]):
    def oldest_first(self, project_id: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a project's messages, oldest first; the cursor is the last id shown."""
        query: dict[str, Any] = {"project_id": project_id, **({"_id": {"$gt": cursor}} if cursor else {})}
        docs = [m.doc for m in self.find(query, sort=(("_id", 1),), limit=limit + 1)]
        return docs[:limit], (docs[limit - 1]["_id"] if len(docs) > limit else None)

    def erase_author(self, pid: str) -> int:
        """An erased person's messages lose their text and author (the thread keeps its shape)."""
        return self.collection.update_many({"author_id": pid},
                                           {"$set": {"author_id": None, "text": "", "erased": True}}).modified_count


class RunRepository(DocumentRepository[MatchingRun]):
    def last_of(self, partnership: str) -> dict[str, Any] | None:
        found = self.find({"partnership": partnership}, sort=(("requested_at", -1),), limit=1)
        return found[0].doc if found else None


@dataclass(frozen=True)
class UnitOfWork:
    """The service's repositories, as its use cases see them."""

    models: ReadModels
    matches: MatchRepository
    projects: ProjectRepository
    runs: RunRepository
    messages: MessageRepository


def unit_of_work(db: Any, on_events: Callable[[], None] = lambda: None) -> UnitOfWork:
    return UnitOfWork(models=ReadModels(db),
                      matches=MatchRepository(db[MATCHES], PRODUCER, Match, "match", on_events),
                      projects=ProjectRepository(db[PROJECTS], PRODUCER, Project, "project", on_events),
                      runs=RunRepository(db[RUNS], PRODUCER, MatchingRun, "matching run", on_events),
                      messages=MessageRepository(db[MESSAGES], PRODUCER, ProjectMessage, "message", on_events))
