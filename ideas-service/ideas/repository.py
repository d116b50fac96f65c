"""The only code that touches the ideas service's collections: ideas, participants and the translations of ideas'
texts. It loads and stores.

Every change is one single-document write that carries its events (the outbox) and is conditional on the
version read (services.aggregate), so two concurrent edits never overwrite each other.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ideas.domain import Idea, Participant, Round, email_key
from services.aggregate import HIDDEN, DocumentRepository, page
from services.store import DuplicateKeyError, Index

PRODUCER = "ideas"
IDEAS, PARTICIPANTS, TRANSLATIONS, ROUNDS = "ideas", "participants", "translations", "rounds"

INDEXES = {
    IDEAS: [
        Index(keys=[("city", 1), ("_id", -1)], name="ideas_city"),
        Index(keys=[("author_id", 1)], name="ideas_author"),
        Index(keys=[("theme", 1), ("_id", -1)], name="ideas_theme"),
        Index(keys=[("round_id", 1)], name="ideas_round"),
    ],
    ROUNDS: [Index(keys=[("partnership", 1), ("_id", -1)], name="rounds_partnership"),
             Index(keys=[("phase", 1)], name="rounds_phase")],
    PARTICIPANTS: [
        Index(keys=[("city", 1), ("_id", -1)], name="participants_city"),
        Index(keys=[("email_key", 1)], unique=True, sparse=True, name="participants_email"),
    ],
}


class DuplicateEmail(Exception):
    """Another participant of the city has this e-mail address."""


class IdeaRepository(DocumentRepository[Idea]):
    def page(self, *, cities: Sequence[str] | None, filters: Mapping[str, Any], q: str | None, limit: int,
             cursor: str | None, own_city: str | None = None,
             partnerships: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; `cities` (None: all) limits what is seen, and (`partnerships` given) a partner city's ideas
        only where they are shown in one of these partnerships (`own_city`'s are all seen); `q` searches title,
        description and tags."""
        query: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if cities is not None:
            if query.get("city") is not None and query["city"] not in cities:
                return [], None
            query.setdefault("city", {"$in": list(cities)})
        both: list[dict[str, Any]] = []
        if partnerships is not None:
            both.append({"$or": [{"city": own_city}, {"partnerships": {"$in": list(partnerships)}}]})
        if q:
            pattern = {"$regex": re.escape(q), "$options": "i"}
            both.append({"$or": [{"title": pattern}, {"description": pattern}, {"tags": pattern}]})
        if both:
            query["$and"] = both
        return page(self.collection, query, limit, cursor)

    def open_of(self, cities: Sequence[str], without: str) -> list[Idea]:
        """The open ideas of these cities not yet shown in a partnership (what a new partnership adopts)."""
        return self.find({"city": {"$in": list(cities)}, "status": {"$in": ["open", "matched"]},
                          "partnerships": {"$ne": without}})

    def of_round(self, round_id: str) -> list[dict[str, Any]]:
        """A round's ideas, what a report counts of them."""
        fields = {"city": 1, "theme": 1, "language": 1, "status": 1, "created_at": 1, "author_id": 1}
        return list(self.collection.find({"round_id": round_id}, fields).sort("_id", 1))

    def forget_author(self, participant_id: str) -> int:
        """The author asked to be erased: their ideas stay, without a link to them (idempotent; no event)."""
        return self.collection.update_many({"author_id": participant_id},
                                           {"$set": {"author_id": None, "author_erased": True}}).modified_count


class ParticipantRepository(DocumentRepository[Participant]):
    NOT_ERASED = {"erased": {"$ne": True}}

    def get(self, key: str, **where: Any) -> Participant:
        return super().get(key, **self.NOT_ERASED, **where)

    def add(self, aggregate: Participant) -> Participant:
        try:
            return super().add(aggregate)
        except DuplicateKeyError:
            raise DuplicateEmail(aggregate.get("email")) from None

    def save(self, aggregate: Participant, *, because_of: str | None = None) -> bool:
        try:
            return super().save(aggregate, because_of=because_of)
        except DuplicateKeyError:
            raise DuplicateEmail(aggregate.get("email")) from None

    def by_email(self, email: str, cities: Sequence[str]) -> list[dict[str, Any]]:
        """The people with this e-mail address in the given cities (at most one a city: the unique key)."""
        query = {"email_key": {"$in": [email_key(city, email) for city in cities]}, **self.NOT_ERASED}
        return list(self.collection.find(query, HIDDEN).sort("_id", 1))

    def page(self, city: str, q: str | None, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """A city's participants, newest first; `q` finds a part of a name or e-mail address."""
        query: dict[str, Any] = {"city": city, **self.NOT_ERASED}
        if q:
            pattern = {"$regex": re.escape(q), "$options": "i"}
            query["$or"] = [{"name": pattern}, {"email": pattern}]
        return page(self.collection, query, limit, cursor)

    def count_in(self, city: str) -> int:
        return self.collection.count_documents({"city": city, **self.NOT_ERASED})

    def exists(self, participant_id: str, city: str) -> bool:
        return self.collection.count_documents({"_id": participant_id, "city": city, **self.NOT_ERASED}, limit=1) == 1


class RoundRepository(DocumentRepository[Round]):
    def of_partnerships(self, partnerships: Sequence[str]) -> list[Round]:
        """The rounds of these partnerships, newest first."""
        return self.find({"partnership": {"$in": list(partnerships)}}, sort=(("_id", -1),)) if partnerships else []

    def not_closed(self) -> list[Round]:
        """The rounds whose phase may still move on with the calendar (what the periodic sweep looks at)."""
        return self.find({"phase": {"$in": ["collecting", "matching"]}})


class TranslationCache:
    """Machine translations of idea texts, one per idea version and language (a new version is translated anew)."""

    def __init__(self, db: Any) -> None:
        self.collection = db[TRANSLATIONS]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.collection.find_one({"_id": key}, {"_id": 0})

    def put(self, key: str, doc: Mapping[str, Any]) -> None:
        with contextlib.suppress(DuplicateKeyError):  # translated twice at once: the first stays
            self.collection.insert_one({"_id": key, **doc})


@dataclass(frozen=True)
class UnitOfWork:
    """The service's repositories, as its use cases see them (tests give fakes of the same shape)."""

    ideas: IdeaRepository
    participants: ParticipantRepository
    rounds: RoundRepository


def unit_of_work(db: Any, on_events: Callable[[], None] = lambda: None) -> UnitOfWork:
    return UnitOfWork(
        ideas=IdeaRepository(db[IDEAS], PRODUCER, Idea, "idea", on_events),
        participants=ParticipantRepository(db[PARTICIPANTS], PRODUCER, Participant, "participant", on_events),
        rounds=RoundRepository(db[ROUNDS], PRODUCER, Round, "round", on_events),
    )
