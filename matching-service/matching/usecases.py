"""What the matching service does, one function per use case: keep what it hears of ideas, people, cities and
partnerships and match ideas as they come; answer, close and expire matches; form projects; show matches,
projects and a partnership's settings to the cities that may see them.

Each takes the unit of work, the engine (the index and the encoder) where it searches, the caller where a key acts
(services.tenancy) and the clock; api.py and handlers.py only parse, call one of these, and answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

from matching import domain
from matching.domain import Match, Project
from matching.engine import Engine, NotReady
from matching.repository import UnitOfWork
from services.aggregate import Conflict
from services.bus import in_context
from services.contract import Event
from services.errors import Forbidden, Unprocessable
from services.store import NotFound
from services.tenancy import Caller

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
TEXT_FIELDS = ("title", "description", "tags", "seeks", "offers", "theme")
IDEA_FIELDS = ("city", "partnerships", "title", "description", "theme", "tags", "seeks", "offers", "language",
               "author_id", "status")


# --- what this service hears of the others -----------------------------------------------------------------

def city_registered(uow: UnitOfWork, city: str, name: str, language: str,
                    names: Mapping[str, str] | None = None) -> None:
    uow.models.put_city(city, name, language, names)


def partnership_changed(uow: UnitOfWork, pid: str, name: str, cities: Sequence[str],
                        themes: Sequence[Mapping[str, Any]]) -> None:
    uow.models.put_partnership(pid, name, cities, themes)


def take_ideas(uow: UnitOfWork, engine: Engine, events: Sequence[Event], clock: Clock) -> None:
    """Ideas submitted or changed: each stored (with its vectors) first, then searched for (see engine.py for why
    that order). The texts of all of them are encoded in one call and the index is brought up to date once."""
    todo = []
    for event in events:
        p = event.payload
        fields = {k: p[k] for k in IDEA_FIELDS}
        changed = p.get("changed") if event.type == "idea.updated" else list(TEXT_FIELDS)
        needs_vectors = event.type == "idea.submitted" or any(f in TEXT_FIELDS for f in changed)
        # A change that keeps the texts reuses the stored vectors (read only then: a new text is encoded anyway).
        wants_vectors = needs_vectors or not (uow.models.idea(p["idea_id"]) or {}).get("vec")
        todo.append((event, fields, wants_vectors, needs_vectors))
    to_encode = [fields for _, fields, wants_vectors, _ in todo if wants_vectors]
    for fields, vectors in zip(to_encode, engine.ideas_vectors(to_encode) if to_encode else [], strict=True):
        fields.update(vectors)
    to_match = []
    for event, fields, _, needs_vectors in todo:
        p = event.payload
        if not uow.models.put_versioned(uow.models.ideas, p["idea_id"], p["version"], fields):
            with in_context(event):
                log.info("idea %s v%s is stale here; nothing to do", p["idea_id"], p["version"])
        elif fields["status"] in domain.MATCHABLE and needs_vectors:
            to_match.append(event)  # a new or reworded idea is matched (again); a status change alone is not
    engine.sync()
    _match_ideas(uow, engine, to_match, clock)


def _match_ideas(uow: UnitOfWork, engine: Engine, events: Sequence[Event], clock: Clock) -> None:
    ideas = [uow.models.idea(event.payload["idea_id"]) for event in events]
    # Several ideas: each partner city's index is searched once for all of them.
    nearest = engine.nearest_many([i for i in ideas if i is not None]) if len(ideas) > 1 else {}
    for event, idea in zip(events, ideas, strict=True):
        with in_context(event):
            assert idea is not None
            made = propose(uow, engine.proposals_for_idea(idea, synced=True, nearest=nearest.get(idea["_id"])), clock)
            log.info("idea %s: %d new proposal(s)", event.payload["idea_id"], made)


def propose(uow: UnitOfWork, proposals: Sequence[domain.Proposal], clock: Clock) -> int:
    """Store the proposals the engine found, each with its match.proposed event; a pair proposed before (by this
    worker or another) is not proposed again. Returns the proposals made."""
    at = clock()
    return sum(uow.matches.propose(Match.propose(proposal, at=at)) for proposal in proposals)


def idea_withdrawn(uow: UnitOfWork, engine: Engine, idea_id: str, version: int, city: str, clock: Clock) -> None:
    uow.models.set_idea_status(idea_id, "withdrawn", version)
    engine.sync()
    close_matches_of(uow, idea_id, "withdrawn", city, clock)


def participant_changed(uow: UnitOfWork, engine: Engine, payload: Mapping[str, Any], clock: Clock) -> None:
    """A person's interests, kept with their vector; changed interests are matched (again)."""
    pid = payload["participant_id"]
    stored = uow.models.participant(pid)
    fields = {"city": payload["city"], "language": payload["language"], "interests": payload.get("interests", "")}
    interests_changed = stored is None or stored.get("interests") != fields["interests"]
    if interests_changed or not (stored or {}).get("vec"):
        fields.update(engine.interest_vector(fields["interests"]))
    if not uow.models.put_versioned(uow.models.participants, pid, payload["version"], fields):
        return
    if interests_changed and fields["interests"].strip():
        person = uow.models.participant(pid)
        assert person is not None
        propose(uow, engine.proposals_for_person(person), clock)


def participant_erased(uow: UnitOfWork, engine: Engine, pid: str) -> None:
    """Forget the person here too: their interests, and their name on matches and projects."""
    uow.models.erase_participant(pid)
    uow.matches.forget_person(pid)
    uow.projects.forget_person(pid)
    engine.sync()


# --- the life of a match ----------------------------------------------------------------------------------

def answer_match(uow: UnitOfWork, who: Caller, match_id: str, accept: bool, participant_id: str | None,
                 clock: Clock) -> Match:
    """The caller's city accepts or declines (in the name of one of its participants); the second yes confirms."""
    match = _visible_match(uow, who, match_id)
    if who.city is None:
        raise Forbidden("a match is answered by a key of one of its cities, not an admin key")
    if who.participant is not None:  # a signed-in participant answers their own match, in their own name
        participant_id = participant_id or who.participant
        if not who.acts_for(participant_id) or not domain.is_a_side(match.doc, who.participant):
            raise domain.NotASide("only the people of this match answer it, each in their own name")
    if participant_id is not None and who.city in [s["city"] for s in match.get("sides")]:
        # Named in match.accepted/declined, which partner cities and webhooks read: a person of this city only.
        person = uow.models.participant(participant_id)
        if person is None or person.get("erased") or person.get("city") != who.city:
            raise ValidationError({"participant_id": [f"no participant {participant_id} in {who.city}"]})
    match.answer(who.city, accept, participant_id=participant_id, at=clock())
    try:
        uow.matches.save(match)
    except Conflict:
        raise Conflict(f"match {match_id} changed meanwhile; read it again") from None
    return match


def _reopen(uow: UnitOfWork, proposals: Mapping[str, domain.Proposal], clock: Clock) -> int:
    """The proposals a run withdrew because the rules no longer made them, and that the rules make again now."""
    reopened = 0
    for pair, doc in uow.matches.by_pairs(list(proposals)).items():
        if doc["status"] == domain.WITHDRAWN and doc.get("closed_reason") == domain.NO_LONGER_PROPOSED:
            match = uow.matches.get(doc["_id"])
            match.reopen(proposals[pair], at=clock())
            try:
                uow.matches.save(match)
                reopened += 1
            except Conflict:
                log.info("match %s changed while matching ran again", match.id)
    return reopened


def withdraw_match(uow: UnitOfWork, who: Caller, match_id: str, reason: str, clock: Clock) -> Match:
    """A coordinator of either side closes an open proposal they find poor; both sides are told why."""
    match = _visible_match(uow, who, match_id)
    if who.participant is not None:
        raise Forbidden("a proposal is withdrawn by a coordinator (a city's key), not by a participant")
    if not who.admin and who.city not in [s["city"] for s in match.get("sides")]:
        raise domain.NotASide(f"only a coordinator of one of the match's cities withdraws it, not {who.city}")
    if not reason.strip():
        raise ValidationError({"reason": ["say why: both sides are told"]})
    match.withdraw(reason.strip(), city=who.city, at=clock())
    try:
        uow.matches.save(match)
    except Conflict:
        raise Conflict(f"match {match_id} changed meanwhile; read it again") from None
    return match


def pair_ideas(uow: UnitOfWork, engine: Engine, who: Caller, idea_ids: Sequence[str], note: str,
               clock: Clock) -> Match:
    """A coordinator pairs two ideas of partner cities by hand (a match of kind coordinator, the note among its
    reasons); then both sides answer as to any proposal."""
    found = uow.models.ideas_by_id(idea_ids)
    missing = [i for i in idea_ids if i not in found or not who.can_see(found[i]["city"])]
    if missing:
        raise ValidationError({"ideas": [f"no idea {', '.join(missing)} here (yet)"]})
    a, b = (found[i] for i in idea_ids)
    if not who.admin and who.city not in (a["city"], b["city"]):
        raise Forbidden("a coordinator of one of the two ideas' cities pairs them")
    pid = next((p for p in a.get("partnerships", []) if p in b.get("partnerships", [])
                and (who.admin or p in {x.id for x in who.partnerships})), None)
    try:
        domain.check_pairing(a, b, uow.models.partnership(pid) if pid else None)
    except domain.Unpaired as exc:
        raise ValidationError({exc.field: [str(exc)]}) from None
    assert pid is not None
    pair = domain.pair_key("idea", a["_id"], b["_id"])
    existing = uow.matches.by_pairs([pair]).get(pair)
    if existing is None:
        match = Match.propose(engine.pairing(a, b, pid, note), at=clock())
        if uow.matches.propose(match):
            return match
        existing = uow.matches.by_pairs([pair]).get(pair)  # proposed meanwhile
    elif existing["status"] == domain.WITHDRAWN:  # withdrawn before: the coordinators propose it again
        match = uow.matches.get(existing["_id"])
        match.reopen(engine.pairing(a, b, pid, note), at=clock())
        uow.matches.save(match)
        return match
    raise PairExists(existing["_id"] if existing else "", existing["status"] if existing else "")


class PairExists(Conflict):
    """The two ideas have a match already that is not withdrawn: its id and status."""

    def __init__(self, match_id: str, status: str) -> None:
        super().__init__(f"these two ideas have a match already ({status}): {match_id}")
        self.match_id = match_id


def candidates(uow: UnitOfWork, engine: Engine, who: Caller, idea_id: str, limit: int) -> list[dict[str, Any]]:
    """An idea's candidates in its partner cities, best first, with score, parts, reasons, whether the rules
    propose it and its match where one exists: the near misses a coordinator may pair by hand."""
    idea = uow.models.idea(idea_id)
    if idea is None:
        return []  # matching has not heard of it yet (the gateway asked the ideas service whether it exists)
    if not who.can_see(idea["city"]):
        raise NotFound("idea", idea_id)
    if not idea.get("vec"):
        return []
    engine.sync()
    allowed = _visible_partnerships(who)
    found = []
    try:
        partners = engine.partners_of(idea)
    except NotReady:
        return []  # its partnership is not known here yet: no candidates yet, as for an idea not heard of
    for pid, city in partners:
        if allowed is None or pid in allowed:
            found += engine.ranking(idea, pid, city, uow.models.settings(pid))
    found.sort(key=lambda c: -c["score"])
    found = found[:limit]
    matches = uow.matches.by_pairs([c["pair"] for c in found])
    return [{**c, "match_id": (matches.get(c["pair"]) or {}).get("_id"),
             "match_status": (matches.get(c["pair"]) or {}).get("status")} for c in found]


def close_matches_of(uow: UnitOfWork, idea_id: str, reason: str, city: str, clock: Clock) -> int:
    """A withdrawn idea's open proposals close (declined, with the reason). A Conflict (answered meanwhile)
    propagates: the bus retries the event, which reads them again."""
    closed = 0
    for match in uow.matches.open_of_idea(idea_id):
        match.close(reason, city=city, at=clock())
        uow.matches.save(match)
        closed += 1
    return closed


def expire_due(uow: UnitOfWork, clock: Clock) -> int:
    """Close the proposals nobody answered in time."""
    expired = 0
    for match in uow.matches.due(clock()):
        match.expire(at=clock())
        try:
            uow.matches.save(match)
            expired += 1
        except Conflict as exc:  # answered meanwhile: it is no longer due
            log.info("match %s changed while expiring: %s", match.id, exc)
    return expired


def form_project(uow: UnitOfWork, match_id: str, cause: str, clock: Clock) -> bool:
    """Both sides said yes: the project forms, once however often the confirmation arrives."""
    match = uow.matches.get(match_id)
    titles = {i: doc["title"] for i, doc in uow.models.ideas_by_id(
        [s["idea_id"] for s in match.get("sides") if s.get("idea_id")]).items()}
    return uow.projects.form(Project.form(match.doc, titles, cause=cause, at=clock()))


# --- what a city's key sees ---------------------------------------------------------------------------------

def _visible_partnerships(who: Caller) -> list[str] | None:
    return None if who.admin else [p.id for p in who.partnerships]


def _visible_match(uow: UnitOfWork, who: Caller, match_id: str) -> Match:
    match = uow.matches.get(match_id)
    allowed = _visible_partnerships(who)
    if allowed is not None and match.get("partnership") not in allowed:
        raise NotFound("match", match_id)
    return match


def read_match(uow: UnitOfWork, who: Caller, match_id: str) -> Match:
    return _visible_match(uow, who, match_id)


def idea_matches(uow: UnitOfWork, who: Caller, idea_id: str, status: str | None) -> list[dict[str, Any]]:
    """An idea's matches, best first; none yet when this service has not heard of the idea (it follows the ideas
    service a moment later)."""
    idea = uow.models.idea(idea_id)
    if idea is None:
        return []
    if not who.can_see(idea["city"]):
        raise NotFound("idea", idea_id)
    allowed = _visible_partnerships(who)
    return [m for m in uow.matches.of_idea(idea_id, status) if allowed is None or m["partnership"] in allowed]


def list_matches(uow: UnitOfWork, who: Caller, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    filters = {k: v for k, v in query.items() if k not in ("limit", "cursor")}
    return uow.matches.page(partnerships=_visible_partnerships(who), filters=filters, limit=query["limit"],
                            cursor=query.get("cursor"))


def list_projects(uow: UnitOfWork, who: Caller, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The projects of the caller's partnerships; a signed-in participant's own only."""
    return uow.projects.page(partnerships=_visible_partnerships(who), member=who.participant, limit=query["limit"],
                             cursor=query.get("cursor"))


def read_project(uow: UnitOfWork, who: Caller, project_id: str) -> Project:
    project = uow.projects.get(project_id)
    allowed = _visible_partnerships(who)
    if allowed is not None and project.get("partnership") not in allowed:
        raise NotFound("project", project_id)
    if who.participant is not None and not domain.is_member(project.doc, who.participant):
        raise NotFound("project", project_id)
    return project


# --- how a partnership matches ----------------------------------------------------------------------------

def _visible_partnership(who: Caller, pid: str) -> None:
    # The gateway's list is authoritative (admin keys get all): no waiting for partnership.formed here.
    if pid not in {p.id for p in who.partnerships}:
        raise NotFound("partnership", pid)


def read_settings(uow: UnitOfWork, who: Caller, pid: str) -> domain.MatchPolicy:
    _visible_partnership(who, pid)
    return uow.models.settings(pid)


def last_run(uow: UnitOfWork, pid: str) -> dict[str, Any] | None:
    return uow.runs.last_of(pid)


def change_settings(uow: UnitOfWork, who: Caller, pid: str, changes: Mapping[str, Any],
                    clock: Clock) -> domain.MatchPolicy:
    """New settings, and a run of matching over the partnership's open ideas (through the bus, not in the
    request: matching.run_requested)."""
    if not who.admin:
        raise Forbidden("only an admin key changes how a partnership matches")
    _visible_partnership(who, pid)
    before = uow.models.settings(pid)
    settings = replace(before, **changes)
    if settings.semantic + settings.theme + settings.tags + settings.complement <= 0:
        raise Unprocessable("at least one weight must be above 0")
    if settings.floor > settings.threshold:
        raise ValidationError({"floor": [f"{settings.floor} is above the threshold {settings.threshold}: the floor "
                                         "is for the best candidate below the threshold"]})
    if settings != before:  # nothing changed: nothing to run again
        uow.models.put_settings(pid, settings)
        uow.runs.add(domain.MatchingRun.request(pid, at=clock()))
    return settings


def run_matching(uow: UnitOfWork, engine: Engine, run_id: str, clock: Clock) -> domain.MatchingRun:
    """Match a partnership's open ideas again under its settings as they are now: new proposals are made (none
    twice), the unanswered ones the rules no longer make are withdrawn with that reason, answered ones stay."""
    run = uow.runs.get(run_id)
    if run.get("status") == "finished":
        return run  # delivered again: done before
    pid = run.get("partnership")
    run.start(at=clock())
    uow.runs.save(run)
    engine.sync()
    seen, added, qualifying = 0, 0, set()
    proposals_of_pairs: dict[str, domain.Proposal] = {}
    for ideas in uow.models.open_ideas_of(pid):
        proposals = engine.proposals_in(ideas, pid)
        qualifying |= {p.fields["pair"] for p in proposals}
        proposals_of_pairs.update((p.fields["pair"], p) for p in proposals)
        added += propose(uow, proposals, clock)
        seen += len(ideas)
    added += _reopen(uow, proposals_of_pairs, clock)
    withdrawn = 0
    for match in uow.matches.unanswered_of(pid):
        if match.get("pair") in qualifying:
            continue
        match.withdraw(domain.NO_LONGER_PROPOSED, city=None, at=clock())
        try:
            uow.matches.save(match)
            withdrawn += 1
        except Conflict:
            log.info("match %s was answered while matching ran again: it stays", match.id)
    run.finish(seen=seen, added=added, withdrawn=withdrawn, at=clock())
    uow.runs.save(run)
    log.info("matching of %s ran again: %d ideas, %d proposals added, %d withdrawn", pid, seen, added, withdrawn)
    return run
