"""The events the matching service consumes, and what each changes. Every effect is safe to repeat."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from matching import domain
from matching.engine import Engine, close_matches_of
from matching.repository import Repository
from services.bus import in_context
from services.contract import Event
from services.registry import Batched, Registry

log = logging.getLogger(__name__)

TEXT_FIELDS = ("title", "description", "tags", "seeks", "offers", "theme")


def city_registered(event: Event, repo: Repository) -> None:
    p = event.payload
    repo.put_city(p["city"], p["name"], p["language"])


def partnership_changed(event: Event, repo: Repository) -> None:
    p = event.payload
    repo.put_partnership(p["partnership_id"], p["name"], p["cities"], p["themes"])


def ideas_changed(events: Sequence[Event], repo: Repository, engine: Engine) -> None:
    """Store each idea (with its vectors) first, then search: see engine.py for why that order.

    Several waiting events at once (bus.batched): the texts of all of them are encoded in one call and the
    index is brought up to date once, after all are stored; then each idea is matched.
    """
    todo = []
    for event in events:
        p = event.payload
        fields = {k: p[k] for k in ("city", "partnerships", "title", "description", "theme", "tags", "seeks",
                                    "offers", "language", "author_id", "status")}
        changed = p.get("changed") if event.type == "idea.updated" else list(TEXT_FIELDS)
        needs_vectors = event.type == "idea.submitted" or any(f in TEXT_FIELDS for f in changed)
        # A change that keeps the texts reuses the stored vectors (read only then: a new text is encoded anyway).
        wants_vectors = needs_vectors or not (repo.idea(p["idea_id"]) or {}).get("vec")
        todo.append((event, fields, wants_vectors, needs_vectors))
    to_encode = [fields for _, fields, wants_vectors, _ in todo if wants_vectors]
    for fields, vectors in zip(to_encode, engine.ideas_vectors(to_encode) if to_encode else [], strict=True):
        fields.update(vectors)
    to_match = []
    for event, fields, _, needs_vectors in todo:
        p = event.payload
        if not repo.put_versioned(repo.ideas, p["idea_id"], p["version"], fields):
            with in_context(event):
                log.info("idea %s v%s is stale here; nothing to do", p["idea_id"], p["version"])
        elif fields["status"] in domain.MATCHABLE and needs_vectors:
            to_match.append(event)  # a new or reworded idea is matched (again); a status change alone is not
    engine.sync()
    ideas = [repo.idea(event.payload["idea_id"]) for event in to_match]
    # Several ideas: each partner city's index is searched once for all of them.
    nearest = engine.nearest_many([i for i in ideas if i is not None]) if len(ideas) > 1 else {}
    for event, idea in zip(to_match, ideas, strict=True):
        with in_context(event):
            assert idea is not None
            made = engine.match_idea(idea, synced=True, nearest=nearest.get(idea["_id"]))
            log.info("idea %s: %d new proposal(s)", event.payload["idea_id"], made)


def idea_withdrawn(event: Event, repo: Repository, engine: Engine) -> None:
    p = event.payload
    repo.set_idea_status(p["idea_id"], "withdrawn", p["version"])
    engine.sync()
    close_matches_of(repo, p["idea_id"], "withdrawn", p["city"])


def participant_changed(event: Event, repo: Repository, engine: Engine) -> None:
    p = event.payload
    stored = repo.participant(p["participant_id"])
    fields = {"city": p["city"], "language": p["language"], "interests": p.get("interests", "")}
    interests_changed = stored is None or stored.get("interests") != fields["interests"]
    if interests_changed or not (stored or {}).get("vec"):
        fields.update(engine.interest_vector(fields["interests"]))
    if not repo.put_versioned(repo.participants, p["participant_id"], p["version"], fields):
        return
    if interests_changed and fields["interests"].strip():
        person = repo.participant(p["participant_id"])
        assert person is not None
        engine.match_participant(person)


def participant_erased(event: Event, repo: Repository, engine: Engine) -> None:
    repo.erase_participant(event.payload["participant_id"])
    engine.sync()


def match_confirmed(event: Event, repo: Repository) -> None:
    """Both sides said yes: the project forms (once, however often this event arrives)."""
    match = repo.match(event.payload["match_id"])
    repo.form_project(match, event.id)


IDEAS_CHANGED = Batched(ideas_changed)  # one handler: submitted and updated ideas batch together

EVENT_HANDLERS: Registry = {
    "city.registered": [city_registered],
    "partnership.formed": [partnership_changed],
    "partnership.updated": [partnership_changed],
    "idea.submitted": [IDEAS_CHANGED],
    "idea.updated": [IDEAS_CHANGED],
    "idea.withdrawn": [idea_withdrawn],
    "participant.registered": [participant_changed],
    "participant.updated": [participant_changed],
    "participant.erased": [participant_erased],
    "match.confirmed": [match_confirmed],
}
