"""What the matching service does, one function per use case: keep what it hears of ideas, people, cities and
partnerships and match ideas as they come; answer, close and expire matches; form projects; show matches,
projects and a partnership's settings to the cities that may see them.

Each takes the unit of work, the engine (the index and the encoder) where it searches, the caller where a key acts
(services.tenancy) and the clock; api.py and handlers.py only parse, call one of these, and answer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import cache
from typing import Any

from marshmallow import ValidationError

from matching import domain
from matching.domain import Match
from matching.engine import Engine, NotReady
from matching.repository import UnitOfWork
from services.aggregate import Conflict, retrying
from services.bus import in_context
from services.contract import Event
from services.errors import Forbidden, Unprocessable
from services.store import NotFound
from services.tenancy import Caller

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
TEXT_FIELDS = ("title", "description", "tags", "seeks", "offers", "theme")
IDEA_FIELDS = ("city", "partnerships", "round_id", "title", "description", "theme", "tags", "seeks", "offers",
               "language", "author_id", "status")


# --- what this service hears of the others -----------------------------------------------------------------

def city_registered(uow: UnitOfWork, city: str, name: str, language: str,
                    names: Mapping[str, str] | None = None, timezone: str | None = None) -> None:
    uow.models.put_city(city, name, language, names, timezone)


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
    # An idea snapshot made before its author was erased (moved into a project meanwhile, say) names them still:
    # it is stored without them, as the erasure left the idea here.
    erased = uow.models.erased_among({fields["author_id"] for _, fields, _, _ in todo if fields.get("author_id")})
    for _, fields, _, _ in todo:
        if fields.get("author_id") in erased:
            fields["author_id"] = None
    to_encode = [fields for _, fields, wants_vectors, _ in todo if wants_vectors]
    for fields, vectors in zip(to_encode, engine.ideas_vectors(to_encode) if to_encode else [], strict=True):
        fields.update(vectors)
    to_match = []
    for event, fields, _, needs_vectors in todo:
        p = event.payload
        if not uow.models.put_versioned(uow.models.ideas, p["idea_id"], p["version"], fields):
            with in_context(event):
                log.info("idea %s v%s is stale here; nothing to do", p["idea_id"], p["version"])
        elif fields["status"] in domain.MATCHABLE and (needs_vectors or "partnerships" in changed):
            # a new or reworded idea is matched (again), and one shown in other partnerships; a status change
            # alone is not
            to_match.append(event)
        if "partnerships" in changed:
            _leave_partnerships(uow, p["idea_id"], fields["partnerships"], fields["city"], clock)
    engine.sync()
    _match_ideas(uow, engine, to_match, clock)


def _leave_partnerships(uow: UnitOfWork, idea_id: str, shown_in: Sequence[str], city: str, clock: Clock) -> None:
    """An idea no longer shown in a partnership: its open proposals there are withdrawn (both sides told)."""
    for match in uow.matches.open_of_idea(idea_id):
        if match.get("partnership") not in shown_in:
            match.withdraw(domain.NOT_SHOWN_THERE, city=city, at=clock())
            try:
                uow.matches.save(match)
            except Conflict:
                log.info("match %s was answered while its idea left its partnership", match.id)


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

    @cache  # the interest proposals of one new idea all ask about that idea: one read
    def authors_matched_with(idea_id: str) -> set[str]:
        return {side.get("author_id") for match in uow.matches.of_idea(idea_id) if match["kind"] != "interest"
                for side in match["sides"]}

    kept = domain.without_repeats(proposals, authors_matched_with)
    return sum(uow.matches.propose(Match.propose(proposal, at=at)) for proposal in kept)


def idea_withdrawn(uow: UnitOfWork, engine: Engine, idea_id: str, version: int, city: str, clock: Clock) -> None:
    uow.models.set_idea_status(idea_id, "withdrawn", version)
    engine.sync()
    close_matches_of(uow, idea_id, "withdrawn", city, clock)


def participant_changed(uow: UnitOfWork, engine: Engine, payload: Mapping[str, Any], clock: Clock) -> None:
    """A person's interests, kept with their vector; changed interests are matched (again)."""
    pid = payload["participant_id"]
    stored = uow.models.participant(pid)
    fields = {"city": payload["city"], "language": payload["language"], "interests": payload.get("interests", ""),
              "name": payload.get("name", ""), "email": payload.get("email")}
    interests_changed = stored is None or stored.get("interests") != fields["interests"]
    if interests_changed or not (stored or {}).get("vec"):
        fields.update(engine.interest_vector(fields["interests"]))
    if not uow.models.put_versioned(uow.models.participants, pid, payload["version"], fields):
        return
    if interests_changed and fields["interests"].strip():
        person = uow.models.participant(pid)
        assert person is not None
        propose(uow, engine.proposals_for_person(person), clock)


def participant_erased(uow: UnitOfWork, engine: Engine, pid: str, clock: Clock) -> None:
    """Forget the person here too: their interests, name and address; their part in matches and projects (members,
    meeting answers, join requests) and the texts of their messages. The projects go on."""
    uow.models.erase_participant(pid)
    uow.matches.forget_person(pid)
    for project in uow.projects.of_person(pid):
        retrying(lambda p=project: _forget_in(uow, p.id, pid, clock))
    uow.messages.erase_author(pid)
    engine.sync()


def _forget_in(uow: UnitOfWork, project_id: str, pid: str, clock: Clock) -> None:
    project = uow.projects.for_change(project_id)
    if project.forget(pid, at=clock()):
        uow.projects.save(project)


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


# --- what a city's key sees ---------------------------------------------------------------------------------

def _visible_partnerships(who: Caller) -> list[str] | None:
    return None if who.admin else [p.id for p in who.partnerships]


def _visible_match(uow: UnitOfWork, who: Caller, match_id: str) -> Match:
    match = uow.matches.get(match_id)
    allowed = _visible_partnerships(who)
    if allowed is not None and (match.get("partnership") not in allowed or not _still_shown(uow, [match.doc])):
        raise NotFound("match", match_id)
    return match


def _still_shown(uow: UnitOfWork, matches: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The matches whose ideas are all still shown in the match's partnership: an idea limited to other
    partnerships since takes its matches there out of sight (its city may have meant to keep it from that city)."""
    ideas = uow.models.ideas_by_id({s["idea_id"] for m in matches for s in m.get("sides", []) if s.get("idea_id")})
    return [m for m in matches if all(
        not s.get("idea_id") or m.get("partnership") in (ideas.get(s["idea_id"]) or {}).get(
            "partnerships", [m.get("partnership")]) for s in m.get("sides", []))]


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
    found = [m for m in uow.matches.of_idea(idea_id, status) if allowed is None or m["partnership"] in allowed]
    return found if allowed is None else _still_shown(uow, found)


def list_matches(uow: UnitOfWork, who: Caller, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    filters = {k: v for k, v in query.items() if k not in ("limit", "cursor")}
    items, cursor = uow.matches.page(partnerships=_visible_partnerships(who), filters=filters, limit=query["limit"],
                                     cursor=query.get("cursor"))
    return (items if who.admin else _still_shown(uow, items)), cursor


def round_figures(uow: UnitOfWork, who: Caller, pid: str, round_id: str) -> dict[str, Any]:
    """What matching knows for a round's report: the matches of the round's ideas by status and kind, the
    projects they are in by status, and when each idea was first proposed to a partner."""
    _visible_partnership(who, pid)
    wanted = set(uow.models.ideas_of_round(pid, round_id))
    matches = uow.matches.of_ideas(pid, list(wanted))
    first: dict[str, datetime] = {}
    for match in matches:
        for side in match.get("sides", []):
            idea = side.get("idea_id")
            if idea in wanted and (idea not in first or match["created_at"] < first[idea]):
                first[idea] = match["created_at"]
    projects = [p for p in uow.projects.holding(list(wanted)) if p.get("partnership") == pid]
    return {"matches_by_status": dict(Counter(m["status"] for m in matches)),
            "matches_by_kind": dict(Counter(m.get("kind", "idea") for m in matches)),
            "projects_by_status": dict(Counter(p.status for p in projects)),
            "first_proposed_at": first}


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


# --- joint projects ------------------------------------------------------------------------------------------

def form_project(uow: UnitOfWork, match_id: str, cause: str, clock: Clock) -> str:
    """Both sides said yes: the project forms, or (an idea of the match is in a project already) the match's other
    idea and people join that project. Once however often the confirmation arrives, and one project per idea also
    when two confirmations of one idea are handled at once (repository.forming). Returns the project's id."""
    match = uow.matches.get(match_id).doc
    idea_ids = [s["idea_id"] for s in match["sides"] if s.get("idea_id")]
    with uow.projects.forming(match["partnership"]):
        return retrying(lambda: _form_or_join(uow, match, idea_ids, cause, clock))


def _form_or_join(uow: UnitOfWork, match: Mapping[str, Any], idea_ids: Sequence[str], cause: str,
                  clock: Clock) -> str:
    holding = uow.projects.holding(idea_ids)
    done = next((p for p in holding if match["_id"] in p.get("match_ids", [p.get("match_id")])), None)
    if done is not None:
        return done.id  # a redelivered confirmation
    if holding:
        project = uow.projects.for_change(holding[0].id)
        if len(holding) > 1:
            log.warning("match %s pairs ideas of projects %s: it joins %s", match["_id"],
                        [p.id for p in holding], project.id)
        if project.take_match(match, at=clock()):
            uow.projects.save(project)
        return project.id
    titles = {i: doc["title"] for i, doc in uow.models.ideas_by_id(idea_ids).items()}
    cities = (uow.models.partnership(match["partnership"]) or {}).get("cities") \
        or list(dict.fromkeys(s["city"] for s in match["sides"]))
    project = domain.Project.form(match, titles, cities, cause=cause, at=clock())
    uow.projects.form(project)
    return project.id


def list_projects(uow: UnitOfWork, who: Caller, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The projects of the caller's partnerships; a signed-in participant's own only (or, `joinable`, those of their
    partnerships they are not in: what they may ask to join)."""
    joinable = bool(query.get("joinable")) and who.participant is not None
    items, cursor = uow.projects.page(partnerships=_visible_partnerships(who),
                                      member=None if joinable else who.participant,
                                      not_member=who.participant if joinable else None, limit=query["limit"],
                                      cursor=query.get("cursor"))
    projects = [domain.Project(doc) for doc in items]
    # One read of the ideas and one of the people for the whole page, not two per project.
    ideas = uow.models.ideas_by_id({i for p in projects for i in p.get("idea_ids", [])})
    people = uow.models.people_by_id(list({pid for p in projects for pid in _people_named(p.doc)}))
    return [_project_view(uow, who, p, ideas, people) for p in projects], cursor


def _people_named(project: Mapping[str, Any]) -> list[str]:
    """The people a project's view names: its members and those asking to join."""
    return [m["participant_id"] for m in project.get("members", [])] + [
        r["participant_id"] for r in project.get("join_requests", [])]


def _visible_project(uow: UnitOfWork, who: Caller, project: domain.Project) -> domain.Project:
    allowed = _visible_partnerships(who)
    if allowed is not None and project.get("partnership") not in allowed:
        raise NotFound("project", project.id)
    return project


def read_project(uow: UnitOfWork, who: Caller, project_id: str) -> dict[str, Any]:
    """A project as the caller may see it: everything to its cities' keys and members (e-mail addresses to keys of
    its cities and to members); to a signed-in participant of its cities who is not a member, what it is
    about and how to ask to join (no names, no messages)."""
    project = _visible_project(uow, who, uow.projects.get(project_id))
    return _project_view(uow, who, project)


def _project_view(uow: UnitOfWork, who: Caller, project: domain.Project,
                  ideas: Mapping[str, Mapping[str, Any]] | None = None,
                  people: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """`ideas` and `people`: read already for a page of projects (else read here, for this one)."""
    d = project.doc
    ideas = ideas if ideas is not None else uow.models.ideas_by_id(d.get("idea_ids", []))
    member = _shows_members(who, d)
    view = {**d, "status": project.status, "cities": project.cities, "is_member": member,
            "version": project.plan_version,
            "ideas": [{"idea_id": i, **{k: (ideas.get(i) or {}).get(k) for k in ("title", "city", "language",
                                                                                  "author_id")}}
                      for i in d.get("idea_ids", [])],
            "member_count": len(d.get("members", []))}
    if not member:
        mine = [r["status"] for r in d.get("join_requests", []) if r["participant_id"] == who.participant]
        return {**view, "members": [], "meetings": [], "join_requests": [], "sides": [],
                "my_join_request": mine[-1] if mine else None}
    people = people if people is not None else uow.models.people_by_id(_people_named(d))
    emails = who.participant is not None or who.city in project.cities
    view["members"] = [_member_view(m, people.get(m["participant_id"]), emails) for m in d.get("members", [])]
    view["meetings"] = [_meeting_view(project, m) for m in d.get("meetings", [])]
    view["join_requests"] = [{**r, "name": (people.get(r["participant_id"]) or {}).get("name") or ""}
                             for r in d.get("join_requests", []) if r["status"] == "requested"]
    return view


def _shows_members(who: Caller, project: Mapping[str, Any]) -> bool:
    """A key of the project's partnership sees who is in it; a signed-in participant only as a member."""
    return who.participant is None or domain.is_member(project, who.participant)


def _member_view(member: Mapping[str, Any], person: Mapping[str, Any] | None, emails: bool) -> dict[str, Any]:
    person = person or {}
    return {"participant_id": member["participant_id"], "city": member["city"], "role": member.get("role"),
            "name": person.get("name") or "", "language": person.get("language"),
            "joined_at": member.get("joined_at"), **({"email": person.get("email")} if emails else {})}


def _changing(uow: UnitOfWork, who: Caller, project_id: str) -> domain.Project:
    """A project the caller may change: a key of one of its cities (the cities of its members, also while one city
    has none yet: a project of ideas a coordinator entered without author), or one of its members."""
    project = _visible_project(uow, who, uow.projects.for_change(project_id))
    if who.participant is not None:
        if project.member(who.participant) is None:
            raise NotFound("project", project_id)
    elif who.city is None or who.city not in project.cities:
        raise Forbidden(f"a project is changed by a key of its cities ({', '.join(project.cities)}), "
                        f"not by {who.city or 'an admin key'}")
    return project


def change_project(uow: UnitOfWork, who: Caller, project_id: str, changes: Mapping[str, Any],
                   clock: Clock) -> dict[str, Any]:
    """A new title, status, summary or next steps (project.updated); 409 when `version` is given and stale."""
    wanted = changes.get("version")

    def step() -> domain.Project:
        project = _changing(uow, who, project_id)
        if wanted is not None and project.plan_version != wanted:
            raise domain.RuleViolation(f"project {project_id}'s plan is at version {project.plan_version}, not "
                                       f"{wanted}: read it again")
        project.change_plan(changes, city=who.city or "", at=clock(), actor=who.participant)
        uow.projects.save(project)
        return project

    # With a version the first read decides (a concurrent write of a meeting retries, a changed plan is 409).
    project = retrying(step)
    return _project_view(uow, who, project)


def _member_of_acting_city(project: domain.Project, who: Caller, person: str, field: str) -> dict[str, Any]:
    """`person` is a member of the project and of the caller's city (and is the caller, when a participant acts)."""
    member = project.member(person)
    if member is None or member["city"] != who.city or not who.acts_for(person):
        raise ValidationError({field: [f"{person} is not a member of this project in {who.city}"]})
    return member


# --- talking and meeting ---------------------------------------------------------------------------------------

def post_message(uow: UnitOfWork, who: Caller, project_id: str, author_id: str, text: str,
                 clock: Clock) -> dict[str, Any]:
    """A member writes to the project; the other members are told (project.message_posted)."""
    project = _changing(uow, who, project_id)
    author = _member_of_acting_city(project, who, author_id, "author_id")
    message = domain.ProjectMessage.post(project, author, text, at=clock())
    uow.messages.add(message)
    return _message_view(uow, message.doc)


def list_messages(uow: UnitOfWork, who: Caller, project_id: str, limit: int,
                  cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A project's messages, oldest first: for its cities' keys and its members, nobody else."""
    project = _visible_project(uow, who, uow.projects.get(project_id))
    if who.participant is not None and project.member(who.participant) is None:
        raise NotFound("project", project_id)
    if who.participant is None and who.city not in project.cities:
        raise Forbidden("a project's messages are read by keys of its cities only")
    items, next_cursor = uow.messages.oldest_first(project_id, limit, cursor)
    names = uow.models.people_by_id([m["author_id"] for m in items if m.get("author_id")])
    return [_message_view(uow, m, names) for m in items], next_cursor


def _message_view(uow: UnitOfWork, doc: Mapping[str, Any],
                  names: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    names = names if names is not None else uow.models.people_by_id([doc["author_id"]])
    return {**doc, "author_name": (names.get(doc.get("author_id") or "") or {}).get("name") or ""}


def _slots(raw: Sequence[str], zone: str) -> list[datetime]:
    try:
        return [domain.parse_slot(s, zone) for s in raw]
    except ValueError as exc:
        raise ValidationError({"slots": [str(exc)]}) from None


def propose_meeting(uow: UnitOfWork, who: Caller, project_id: str, data: Mapping[str, Any],
                    clock: Clock) -> dict[str, Any]:
    """A member offers a meeting with times to choose from. Times without an offset are read in `timezone`, else in
    the proposer's city's zone."""
    def step() -> dict[str, Any]:
        project = _changing(uow, who, project_id)
        proposer = _member_of_acting_city(project, who, data["proposer_id"], "proposer_id")
        zone = _zone(uow, data.get("timezone"), proposer["city"])
        try:
            meeting = project.propose_meeting(proposer["participant_id"], data["title"], data["duration_minutes"],
                                              _slots(data["slots"], zone), data.get("link"), at=clock())
        except domain.SlotRefused as exc:
            raise ValidationError({"slots": [str(exc)]}) from None
        uow.projects.save(project)
        return _meeting_view(project, meeting)

    return retrying(step)


def _meeting_project(uow: UnitOfWork, who: Caller, meeting_id: str) -> domain.Project:
    project = uow.projects.find_one({"meetings.id": meeting_id}, "meeting", meeting_id)
    try:
        return _changing(uow, who, project.id)
    except NotFound:
        raise NotFound("meeting", meeting_id) from None


def read_meeting(uow: UnitOfWork, who: Caller, meeting_id: str) -> dict[str, Any]:
    project = uow.projects.find_one({"meetings.id": meeting_id}, "meeting", meeting_id)
    try:
        _visible_project(uow, who, project)  # who sees the project and its members sees its meetings
    except NotFound:
        raise NotFound("meeting", meeting_id) from None
    if not _shows_members(who, project.doc):
        raise NotFound("meeting", meeting_id)
    return _meeting_view(project, project.meeting(meeting_id))


def _zone(uow: UnitOfWork, asked: str | None, city: str | None) -> str:
    """The zone times without an offset are read in: the one the request names, else the city's."""
    zone = asked or (uow.models.city_zone(city) if city else "UTC")
    try:
        domain.zone_info(zone)
    except ValueError as exc:
        raise ValidationError({"timezone": [str(exc)]}) from None
    return zone


def answer_meeting(uow: UnitOfWork, who: Caller, meeting_id: str, participant_id: str, slots: Sequence[str],
                   clock: Clock, timezone: str | None = None) -> dict[str, Any]:
    """The times that suit a member (replacing their earlier answer); times without an offset are read in
    `timezone`, else in the member's city's zone."""
    def step() -> dict[str, Any]:
        project = _meeting_project(uow, who, meeting_id)
        member = _member_of_acting_city(project, who, participant_id, "participant_id")
        try:
            project.answer_meeting(meeting_id, participant_id, _slots(slots, _zone(uow, timezone, member["city"])),
                                   at=clock())
        except domain.SlotRefused as exc:
            raise ValidationError({"slots": [str(exc)]}) from None
        uow.projects.save(project)
        return _meeting_view(project, project.meeting(meeting_id))

    return retrying(step)


def schedule_meeting(uow: UnitOfWork, who: Caller, meeting_id: str, slot: str, clock: Clock,
                     timezone: str | None = None) -> dict[str, Any]:
    """The meeting set to one of its times: every member gets it in their own zone, with an invitation."""
    def step() -> dict[str, Any]:
        project = _meeting_project(uow, who, meeting_id)
        zone = _zone(uow, timezone, who.city)
        try:
            [start] = _slots([slot], zone)
            meeting = project.schedule_meeting(meeting_id, start, at=clock())
        except domain.SlotRefused as exc:
            raise ValidationError({"slot": [str(exc)]}) from None
        except ValidationError as exc:
            raise ValidationError({"slot": exc.messages.get("slots", exc.messages)}) from None
        uow.projects.save(project)
        return _meeting_view(project, meeting)

    return retrying(step)


def _meeting_view(project: domain.Project, meeting: Mapping[str, Any]) -> dict[str, Any]:
    answers = meeting.get("answers", [])
    return {**meeting, "project_id": project.id,
            "slots": [{"start": s, "suits": [a["participant_id"] for a in answers if s in a["slots"]]}
                      for s in meeting["slots"]]}


# --- joining on request ------------------------------------------------------------------------------------

def request_join(uow: UnitOfWork, who: Caller, project_id: str, participant_id: str, message: str,
                 clock: Clock) -> dict[str, Any]:
    """A person of one of the project's cities asks to join; its members are told (project.join_requested)."""
    if who.city is None or not who.acts_for(participant_id):
        raise Forbidden("a join request is made by a key of the person's city, or by the person")

    def step() -> dict[str, Any]:
        project = _visible_project(uow, who, uow.projects.for_change(project_id))
        person = uow.models.participant(participant_id)
        if person is None or person.get("erased") or person.get("city") != who.city:
            raise ValidationError({"participant_id": [f"no participant {participant_id} in {who.city}"]})
        request = project.request_join(participant_id, who.city or "", message, at=clock())
        uow.projects.save(project)
        return {**request, "project_id": project.id}

    return retrying(step)


def answer_join(uow: UnitOfWork, who: Caller, request_id: str, accept: bool, clock: Clock) -> dict[str, Any]:
    """A member's city accepts (the person becomes a member: project.member_joined) or declines; the person is told
    either way (project.join_answered)."""
    def step() -> dict[str, Any]:
        found = uow.projects.find_one({"join_requests.id": request_id}, "join request", request_id)
        try:
            project = _changing(uow, who, found.id)
        except NotFound:
            raise NotFound("join request", request_id) from None
        request = project.answer_join(request_id, accept, by_city=who.city or "", at=clock())
        uow.projects.save(project)
        return {**request, "project_id": project.id}

    return retrying(step)
