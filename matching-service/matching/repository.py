"""The only code that touches the matching service's collections.

Read models (from events): ideas (with their vectors), participants' interests, cities, partnerships.
Own data: matches (unique per pair) and projects (one per confirmed match). Every change of a match or
project is one single-document write that carries its events (the outbox).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from matching import domain
from services import inbox, outbox
from services.contract import new_event
from services.store import DuplicateKeyError, Index, NotFound, new_id, now

PRODUCER = "matching"
IDEAS, PARTICIPANTS, CITIES, PARTNERSHIPS = "ideas", "participants", "cities", "partnerships"
MATCHES, PROJECTS = "matches", "projects"

INDEXES = {
    IDEAS: [Index(keys=[("synced_at", 1)], name="ideas_synced"), Index(keys=[("author_id", 1)], name="ideas_author")],
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
    PROJECTS: [
        Index(keys=[("match_id", 1)], unique=True, name="projects_match"),
        Index(keys=[("partnership", 1), ("_id", -1)], name="projects_partnership"),
    ],
}

HIDDEN = {outbox.FIELD: 0, inbox.FIELD: 0}


class Conflict(Exception):
    pass


class Repository:
    def __init__(self, db: Any, on_events: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.ideas = db[IDEAS]
        self.participants = db[PARTICIPANTS]
        self.cities = db[CITIES]
        self.partnerships = db[PARTNERSHIPS]
        self.matches = db[MATCHES]
        self.projects = db[PROJECTS]
        self._on_events = on_events

    # --- read models ------------------------------------------------------------------------------------

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
        """Forget the person here too: their interests, and their name on matches and projects."""
        self.participants.update_one(
            {"_id": pid},
            {"$set": {"erased": True, "interests": "", "vec": None, "synced_at": now(), "version": 1 << 30}},
            upsert=True,
        )
        named = {"$or": [{"sides.participant_id": pid}, {"sides.author_id": pid}]}
        for collection in (self.matches, self.projects):  # a project keeps its match's sides
            for doc in collection.find(named, {"sides": 1}):
                sides = [{**s, **{k: None for k in ("participant_id", "author_id") if s.get(k) == pid}}
                         for s in doc["sides"]]
                collection.update_one({"_id": doc["_id"]}, {"$set": {"sides": sides}})
        self.projects.update_many({"members.participant_id": pid},
                                  {"$pull": {"members": {"participant_id": pid}}})

    def put_city(self, key: str, name: str, language: str) -> None:
        self.cities.update_one({"_id": key}, {"$set": {"name": name, "language": language}}, upsert=True)

    def city_name(self, key: str) -> str:
        doc = self.cities.find_one({"_id": key})
        return doc["name"] if doc else key.capitalize()

    def put_partnership(self, pid: str, name: str, cities: Sequence[str],
                        themes: Sequence[Mapping[str, Any]]) -> None:
        self.partnerships.update_one(
            {"_id": pid},
            {"$set": {"name": name, "cities": list(cities), "themes": {t["key"]: t["labels"] for t in themes}},
             "$setOnInsert": {"settings": domain.Settings().as_doc()}},
            upsert=True,
        )

    def partnership(self, pid: str) -> dict[str, Any] | None:
        return self.partnerships.find_one({"_id": pid})

    def settings(self, pid: str) -> domain.Settings:
        doc = self.partnership(pid)
        return domain.Settings.from_doc(doc.get("settings") if doc else None)

    def put_settings(self, pid: str, settings: domain.Settings) -> None:
        # Upsert: the settings may come before this service has heard of the partnership.
        self.partnerships.update_one({"_id": pid}, {"$set": {"settings": settings.as_doc()}}, upsert=True)

    def theme_labels(self, pid: str, theme: str) -> dict[str, str] | None:
        doc = self.partnership(pid)
        return (doc or {}).get("themes", {}).get(theme)

    # --- matches ---------------------------------------------------------------------------------------

    def propose(self, match: dict[str, Any]) -> bool:
        """Store a proposal with its match.proposed event; False when this pair was proposed before."""
        match = {"_id": new_id("match"), **match, "status": domain.PROPOSED, "version": 1, "created_at": now()}
        payload = {k: match[k] for k in ("partnership", "kind", "score", "parts", "reasons", "version")}
        payload.update(match_id=match["_id"], sides=[_side_payload(s) for s in match["sides"]],
                       expires_at=match["expires_at"].isoformat())
        event = new_event("match.proposed", payload, producer=PRODUCER, partnership=match["partnership"])
        try:
            self.matches.insert_one(outbox.with_events(match, [event]))
        except DuplicateKeyError:
            return False
        self._on_events()
        return True

    def match(self, match_id: str) -> dict[str, Any]:
        doc = self.matches.find_one({"_id": match_id}, HIDDEN)
        if doc is None:
            raise NotFound("match", match_id)
        return doc

    def matches_of_idea(self, idea_id: str, status: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"sides.idea_id": idea_id}
        if status:
            query["status"] = status
        return sorted(self.matches.find(query, HIDDEN), key=lambda m: -m["score"])

    def list_matches(self, *, partnerships: Sequence[str] | None, filters: Mapping[str, Any], limit: int,
                     cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {}
        if partnerships is not None:
            query["partnership"] = {"$in": list(partnerships)}
        if filters.get("status"):
            query["status"] = filters["status"]
        if filters.get("city"):
            query["sides.city"] = filters["city"]
        if filters.get("idea"):
            query["sides.idea_id"] = filters["idea"]
        if filters.get("kind"):
            query["kind"] = filters["kind"]
        if cursor:
            query["_id"] = {"$lt": cursor}
        docs = list(self.matches.find(query, HIDDEN).sort("_id", -1).limit(limit + 1))
        return docs[:limit], (docs[limit - 1]["_id"] if len(docs) > limit else None)

    def change_match(self, match: Mapping[str, Any], fields: Mapping[str, Any], event_types: Sequence[str],
                     *, city: str | None = None, participant_id: str | None = None, reason: str | None = None
                     ) -> dict[str, Any]:
        """Move a match on (conditional on the version read) with the events it causes."""
        updated = {**match, **fields, "version": match["version"] + 1, "updated_at": now()}
        sides = [_side_payload(s) for s in updated["sides"]]
        events = []
        for event_type in event_types:
            payload: dict[str, Any] = {"match_id": match["_id"], "partnership": match["partnership"],
                                       "status": updated["status"], "sides": sides, "version": updated["version"]}
            if event_type in ("match.accepted", "match.declined"):
                payload.update(city=city or sides[0]["city"], participant_id=participant_id)
                if reason:
                    payload["reason"] = reason
            events.append(new_event(event_type, payload, producer=PRODUCER, partnership=match["partnership"],
                                    city=city))
        result = self.matches.update_one(
            {"_id": match["_id"], "version": match["version"]},
            outbox.push_events({"$set": {**fields, "version": updated["version"], "updated_at": updated["updated_at"]}},
                               events),
        )
        if result.matched_count != 1:
            raise Conflict(f"match {match['_id']} changed meanwhile; read it again")
        self._on_events()
        return updated

    def open_matches_of_idea(self, idea_id: str) -> list[dict[str, Any]]:
        return list(self.matches.find({"sides.idea_id": idea_id, "status": {"$in": list(domain.OPEN_STATUSES)}},
                                      HIDDEN))

    def due_matches(self, at: datetime, limit: int = 500) -> list[dict[str, Any]]:
        return list(self.matches.find({"status": {"$in": list(domain.OPEN_STATUSES)}, "expires_at": {"$lt": at}},
                                      HIDDEN).limit(limit))

    # --- projects ----------------------------------------------------------------------------------------

    def form_project(self, match: Mapping[str, Any], cause_event_id: str) -> bool:
        """One project per confirmed match (a second try hits the unique match_id and changes nothing)."""
        ideas = self.ideas_by_id([s["idea_id"] for s in match["sides"] if s.get("idea_id")])
        members = []
        for side in match["sides"]:
            for person in (side.get("author_id"), side.get("participant_id")):
                if person and person not in [m["participant_id"] for m in members]:
                    members.append({"participant_id": person, "city": side["city"]})
        idea_ids = [s["idea_id"] for s in match["sides"] if s.get("idea_id")]
        title = " + ".join(ideas[i]["title"] for i in idea_ids if i in ideas)[:300]
        project_id = new_id("project")  # the unique index on match_id keeps it one per match
        doc = {"_id": project_id, "match_id": match["_id"], "partnership": match["partnership"], "title": title,
               "idea_ids": idea_ids, "members": members, "sides": match["sides"], "created_at": now(),
               "cause": cause_event_id}
        event = new_event("project.formed", {"project_id": project_id, "match_id": match["_id"],
                                             "partnership": match["partnership"], "title": title,
                                             "idea_ids": idea_ids, "members": members,
                                             "cities": list(dict.fromkeys(s["city"] for s in match["sides"]))},
                          producer=PRODUCER, partnership=match["partnership"])
        created = inbox.insert_once(self.projects, outbox.with_events(doc, [event]), service=PRODUCER)
        if created:
            self._on_events()
        return created

    def project(self, project_id: str) -> dict[str, Any]:
        doc = self.projects.find_one({"_id": project_id}, HIDDEN)
        if doc is None:
            raise NotFound("project", project_id)
        return doc

    def list_projects(self, *, partnerships: Sequence[str] | None, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {}
        if partnerships is not None:
            query["partnership"] = {"$in": list(partnerships)}
        if cursor:
            query["_id"] = {"$lt": cursor}
        docs = list(self.projects.find(query, HIDDEN).sort("_id", -1).limit(limit + 1))
        return docs[:limit], (docs[limit - 1]["_id"] if len(docs) > limit else None)


def _side_payload(side: Mapping[str, Any]) -> dict[str, Any]:
    return {k: side.get(k) for k in ("city", "idea_id", "participant_id", "author_id", "title", "language")}
