"""What the ideas service does, one function per use case: submit, import, list, read, change and withdraw ideas;
register, find, read, change and erase participants; and what the matching workflow's events move on.

Each takes the unit of work (the repositories), the caller where a person or key acts (services.tenancy) and the
clock; api.py and handlers.py only parse, call one of these, and answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from marshmallow import Schema, ValidationError

from ideas import domain
from ideas.domain import Idea, Participant
from ideas.repository import TranslationCache, UnitOfWork
from ideas.schemas import IdeaIn, IdeaPatch, IdeaRow, ParticipantPatch
from ideas.translation import Translator, Unavailable
from services.aggregate import Conflict, retrying
from services.contract import schema_instance
from services.errors import Forbidden
from services.store import NotFound
from services.tenancy import Caller

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class RowErrors(Exception):
    """Rows of an import that are invalid, by position: nothing was stored."""

    def __init__(self, errors: Mapping[str, Any], total: int) -> None:
        super().__init__(f"{len(errors)} of {total} rows are invalid; nothing was stored")
        self.errors = dict(errors)


# --- ideas ----------------------------------------------------------------------------------------------

def submit_idea(uow: UnitOfWork, who: Caller, raw: Any, clock: Clock) -> Idea:
    """A new idea of the caller's city (or of the city an admin key names), checked whole."""
    at = clock()
    idea = Idea.submit(_new_idea(uow, who, _loaded(uow, who, IdeaIn, raw), at), at=at)
    return uow.ideas.add(idea)


def import_ideas(uow: UnitOfWork, who: Caller, rows: Sequence[Any], *, dry_run: bool, clock: Clock,
                 round_id: str | None = None) -> list[Idea]:
    """A workshop's ideas in one go: every row checked before any is stored (nothing half-imported); the stored
    ideas (none on a dry run). Raises RowErrors naming each invalid row's fields. `round_id`: the round the rows
    go to (a row may name its own), else the partnership's current one."""
    if who.participant is not None:
        raise Forbidden("a workshop's ideas are imported by its coordinator (a city key)")
    checked, errors = [], {}
    at = clock()
    for number, raw in enumerate(rows):
        try:
            fields = _loaded(uow, who, IdeaRow, raw)
            if round_id and not fields.get("round_id"):
                fields["round_id"] = round_id
            checked.append(_new_idea(uow, who, fields, at))
        except ValidationError as exc:
            errors[str(number)] = exc.messages
        except domain.RuleViolation as exc:  # a round that no longer collects: that row's error
            errors[str(number)] = {"round_id": [str(exc)]}
    if errors:
        raise RowErrors(errors, len(rows))
    if dry_run:
        return []
    return uow.ideas.add_many([Idea.submit(fields, at=at) for fields in checked])


def list_ideas(uow: UnitOfWork, who: Caller, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Ideas of the caller's city and its partner cities (an admin's: all), newest first, a page at a time."""
    filters = {k: v for k, v in query.items() if k not in ("limit", "cursor", "q")}
    return uow.ideas.page(cities=None if who.admin else list(who.visible_cities), filters=filters,
                          q=query.get("q"), limit=query["limit"], cursor=query.get("cursor"),
                          own_city=None if who.admin else who.city,
                          partnerships=None if who.admin else [p.id for p in who.partnerships])


def read_idea(uow: UnitOfWork, who: Caller, idea_id: str) -> Idea:
    idea = uow.ideas.get(idea_id)
    if not who.can_see(idea.get("city")) or not domain.shown_to(idea.doc, who.city, who.partnerships,
                                                                admin=who.admin):
        raise NotFound("idea", idea_id)  # not 403: another partnership's ideas do not exist for this key
    return idea


def translated(cache: TranslationCache, translator: Translator | None, idea: Mapping[str, Any],
               target: str, clock: Clock) -> dict[str, Any] | None:
    """An idea's title and description in another language, machine-translated once per version and language;
    None when it is written in that language. Never fails: an unavailable service says so in `error`."""
    if target == idea.get("language"):
        return None
    if translator is None:
        return {"language": target, "error": "translation is not set up on this platform (TWINCITY_TRANSLATE_URL)"}
    key = f"{idea['_id']}:{idea.get('version', 0)}:{target}"
    found = cache.get(key)
    if found is None:
        texts = [idea.get("title", ""), idea.get("description", "")]
        try:
            title, description = translator.translate(texts, idea.get("language"), target)
        except Unavailable as exc:
            return {"language": target, "error": str(exc)}
        found = {"language": target, "title": title, "description": description, "machine": True,
                 "provider": translator.name, "translated_at": clock()}
        cache.put(key, found)
    return found


def change_idea(uow: UnitOfWork, who: Caller, idea_id: str, raw: Any, clock: Clock) -> Idea:
    """Change an idea of the caller's city. With `version` in `raw`, a concurrent change is the caller's Conflict
    (409); without, the change is made on whatever version is current."""
    _own(who, read_idea(uow, who, idea_id))  # 404 or 403 before the body is looked at
    changes = schema_instance(IdeaPatch).load(raw, partial=True)
    expected = changes.pop("version", None)
    if changes.get("language") is None:
        changes.pop("language", None)

    def change() -> Idea:
        idea = _own(who, read_idea(uow, who, idea_id))
        if expected is not None and idea.version != expected:
            raise Conflict(f"idea {idea_id} is at version {idea.version}, not {expected}")
        if "theme" in changes:
            check_theme(who, idea.get("city"), changes["theme"])
        if "partnerships" in changes:
            changes["partnerships"] = _shown_in(who, idea.get("city"), changes["partnerships"])
        if changes.get("round_id") and changes["round_id"] != idea.get("round_id"):
            changes["round_id"] = _round_for(uow, idea.get("partnerships", []), changes["round_id"], clock())
        idea.edit(changes, at=clock())
        uow.ideas.save(idea)
        return idea

    return change() if expected is not None else retrying(change)


def withdraw_idea(uow: UnitOfWork, who: Caller, idea_id: str, clock: Clock) -> Idea:
    def withdraw() -> Idea:
        idea = _own(who, read_idea(uow, who, idea_id))
        idea.withdraw(at=clock())
        uow.ideas.save(idea)
        return idea

    return retrying(withdraw)


# --- what the matching workflow moves on ------------------------------------------------------------------

def move_ideas(uow: UnitOfWork, idea_ids: Sequence[str], status: str, *, because_of: str, event_type: str,
               clock: Clock) -> None:
    """Each idea to `status` where the rules allow it, once per event; a stale or impossible move changes nothing."""
    for idea_id in idea_ids:
        def move(idea_id: str = idea_id) -> None:
            idea = uow.ideas.get(idea_id)
            if idea.move_to(status, at=clock()):
                uow.ideas.save(idea, because_of=because_of)

        try:
            retrying(move)
        except NotFound:
            log.warning("%s names idea %s, which this service does not know", event_type, idea_id)


def forget_author(uow: UnitOfWork, participant_id: str) -> None:
    uow.ideas.forget_author(participant_id)  # idempotent: a second run matches nothing


# --- participants -------------------------------------------------------------------------------------

def register_participant(uow: UnitOfWork, who: Caller, data: Mapping[str, Any], clock: Clock) -> Participant:
    fields = dict(data)
    fields["city"] = who.acting_city(fields.pop("city", None))
    return uow.participants.add(Participant.register(fields, at=clock()))


def find_participants(uow: UnitOfWork, who: Caller, email: str) -> list[dict[str, Any]]:
    """By e-mail address; a city's key finds only its own city's people (addresses stay in the city)."""
    cities = list(who.visible_cities) if who.admin else [who.city] if who.city else []
    return uow.participants.by_email(email, cities)


def list_participants(uow: UnitOfWork, who: Caller, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]],
                                                                                      str | None]:
    """The acting city's participants (never a partner city's: their addresses stay in their city)."""
    if who.participant is not None:
        raise Forbidden("the participants of a city are listed by its coordinators (a city key)")
    city = who.acting_city(query.get("city"))
    return uow.participants.page(city, query.get("q"), query["limit"], query.get("cursor"))


def read_participant(uow: UnitOfWork, who: Caller, participant_id: str) -> tuple[Participant, bool]:
    """The person, and whether the caller may see their e-mail address (only their own city may)."""
    person = uow.participants.get(participant_id)
    if not who.can_see(person.get("city")):
        raise NotFound("participant", participant_id)
    return person, who.can_change(person.get("city"))


def change_participant(uow: UnitOfWork, who: Caller, participant_id: str, raw: Any, clock: Clock) -> Participant:
    _own(who, read_participant(uow, who, participant_id)[0])  # 404 or 403 before the body is looked at
    changes = schema_instance(ParticipantPatch).load(raw, partial=True)
    expected = changes.pop("version", None)

    def change() -> Participant:
        person = _own(who, read_participant(uow, who, participant_id)[0])
        if expected is not None and person.version != expected:
            raise Conflict(f"participant {participant_id} is at version {person.version}")
        person.update(changes, at=clock())
        uow.participants.save(person)
        return person

    return change() if expected is not None else retrying(change)


def erase_participant(uow: UnitOfWork, who: Caller, participant_id: str, clock: Clock) -> None:
    """Forget the person everywhere (participant.erased tells every service)."""
    person = _own(who, read_participant(uow, who, participant_id)[0])
    person.erase(at=clock())
    try:
        uow.participants.save(person)
    except Conflict:
        raise Conflict(f"participant {participant_id} changed while being erased; try again") from None


# --- the checks a submitted idea passes --------------------------------------------------------------------

def check_theme(who: Caller, city: str, theme: str) -> None:
    allowed = who.themes_of(city)
    if not theme:
        raise ValidationError({"theme": [f"choose a theme; one of: {', '.join(sorted(allowed))}"]})
    if theme not in allowed:
        raise ValidationError({"theme": [f"unknown theme {theme!r}; one of: {', '.join(sorted(allowed))}"]})


def _loaded(uow: UnitOfWork, who: Caller, schema: type[Schema], raw: Any) -> dict[str, Any]:
    """`raw` loaded by `schema`; when it is refused, the fields it let through are checked against the caller's
    city too (theme, author), so that one answer names every error, not the first kind found."""
    try:
        return schema_instance(schema).load(raw)
    except ValidationError as exc:
        errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        if isinstance(raw, dict) and "city" not in errors:
            # As the schema saw them (stripped): a padded theme is no unknown theme.
            passed = {k: v.strip() for k, v in raw.items() if k not in errors and isinstance(v, str)}
            with contextlib.suppress(Forbidden):  # a key that may not act for the city: field errors first
                _context_errors(uow, who, passed, errors)
        raise ValidationError(errors) from None


def _context_errors(uow: UnitOfWork, who: Caller, data: dict[str, Any], errors: dict[str, Any]) -> str | None:
    """Add to `errors` what the caller's city says of `data` (its city, theme, author); returns the city.
    Fills in author_id from author_email."""
    try:
        city = who.acting_city(data.pop("city", None))
    except ValidationError as exc:
        errors.update(exc.messages)
        return None
    if "theme" in data:
        try:
            check_theme(who, city, data["theme"])
        except ValidationError as exc:
            errors.update(exc.messages)
    _check_author(uow, city, data, errors)
    return city


def _check_author(uow: UnitOfWork, city: str, data: dict[str, Any], errors: dict[str, Any]) -> None:
    email = data.pop("author_email", None)
    if email:
        found = uow.participants.by_email(email, [city])
        if not found:
            errors["author_email"] = [f"no participant with this e-mail address in {city}"]
        elif data.get("author_id") and data["author_id"] != found[0]["_id"]:
            errors["author_email"] = ["names another participant than author_id"]
        else:
            data["author_id"] = found[0]["_id"]
    elif data.get("author_id") and not uow.participants.exists(data["author_id"], city):
        errors["author_id"] = [f"no participant with this id in {city}"]


def _new_idea(uow: UnitOfWork, who: Caller, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A submitted idea (POST /ideas, or a row of an import) checked and completed for storing."""
    if who.participant is not None:  # a signed-in participant submits in their own name only
        if data.get("author_email") or data.get("author_id") not in (None, who.participant):
            raise Forbidden("a participant submits ideas in their own name only")
        data["author_id"] = who.participant
    errors: dict[str, Any] = {}
    city = _context_errors(uow, who, data, errors)
    if errors or city is None:
        raise ValidationError(errors)
    detected = data.get("language") is None
    if detected:  # a text with too few words to tell is taken to be in its author's language
        author = _author(uow, data.get("author_id"))
        data["language"] = domain.detect_language(f"{data['title']}. {data.get('description', '')}",
                                                  default=author.get("language") or "en")
    partnerships = _shown_in(who, city, data.get("partnerships"))
    data.update(city=city, partnerships=partnerships, language_detected=detected,
                round_id=_round_for(uow, partnerships, data.get("round_id"), at))
    return data


def _shown_in(who: Caller, city: str, wanted: Sequence[str] | None) -> list[str]:
    """The partnerships an idea of `city` is shown in: those it names (each one of its city's), else all."""
    mine = [p.id for p in who.partnerships_of(city)]
    if wanted is None:
        return mine
    strange = [p for p in wanted if p not in mine]
    if strange:
        raise ValidationError({"partnerships": [f"{', '.join(strange)} is not a partnership of {city}; its "
                                                f"partnerships are: {', '.join(mine) or 'none'}"]})
    return list(dict.fromkeys(wanted))


def _round_for(uow: UnitOfWork, partnerships: Sequence[str], wanted: str | None, at: datetime) -> str | None:
    """The round a new idea joins: the one it names, if it is a round of the idea's partnerships that still
    collects (else 409, naming the round and its dates); else its partnerships' current round (or none)."""
    rounds = uow.rounds.of_partnerships(partnerships)
    if wanted:  # by its id, or by its name (a workshop's CSV names its round)
        found = next((r for r in rounds if r.id == wanted), None) or next(
            (r for r in rounds if r.get("name", "").casefold() == wanted.casefold()), None)
        if found is None:
            raise ValidationError({"round_id": [f"no round {wanted!r} of this city's partnerships"]})
        if not found.collecting(at):
            raise domain.RuleViolation(found.late(at))
        return found.id
    current = next((r for r in rounds if r.collecting(at)), None)
    return current.id if current else None


def adopt_ideas(uow: UnitOfWork, who: Caller, pid: str, clock: Clock) -> int:
    """A new partnership takes in its cities' open ideas written before it (a city key: its own city's; an admin
    key: both cities'): each is shown and matched there from now on (idea.updated, `partnerships` changed). Ideas
    limited to other partnerships on purpose are adopted too: the coordinator chose this; the author may limit
    theirs again. Returns how many were taken in."""
    partnership = _partnership(who, pid)
    if who.participant is not None or not (who.admin or who.city in partnership.cities):
        raise Forbidden("a partnership's cities adopt their own ideas: a key of one of them, or an admin key")
    cities = list(partnership.cities) if who.admin else [who.city]
    adopted = 0
    for idea in uow.ideas.open_of(cities, without=pid):
        def step(idea_id: str = idea.id) -> bool:
            fresh = uow.ideas.get(idea_id)
            if pid in fresh.get("partnerships", []):
                return False
            fresh.edit({"partnerships": [*fresh.get("partnerships", []), pid]}, at=clock())
            uow.ideas.save(fresh)
            return True

        adopted += retrying(step)
    return adopted


# --- rounds -------------------------------------------------------------------------------------------------

def open_round(uow: UnitOfWork, who: Caller, pid: str, data: Mapping[str, Any], clock: Clock) -> domain.Round:
    """A new round of a partnership (round.opened), by an admin key or a write key of one of its cities."""
    partnership = _partnership(who, pid)
    if who.participant is not None or not (who.admin or who.city in partnership.cities):
        raise Forbidden("a round is opened by a key of one of the partnership's cities, or an admin key")
    try:
        found = domain.Round.open(partnership=pid, cities=partnership.cities, name=data["name"],
                                  collect_until=data["collect_until"], workshop_at=data["workshop_at"],
                                  projects_from=data["projects_from"], zone=data["timezone"], at=clock())
    except domain.RoundRefused as exc:
        raise ValidationError({exc.field: [str(exc)]}) from None
    for other in uow.rounds.of_partnerships([pid]):
        domain.check_beside(found, other, at=clock())
    return uow.rounds.add(found)


def _partnership(who: Caller, pid: str) -> Any:
    found = next((p for p in who.partnerships if p.id == pid), None)
    if found is None:
        raise NotFound("partnership", pid)
    return found


def list_rounds(uow: UnitOfWork, who: Caller, pid: str, clock: Clock) -> list[dict[str, Any]]:
    _partnership(who, pid)
    return [round_view(r, clock()) for r in uow.rounds.of_partnerships([pid])]


def _visible_round(uow: UnitOfWork, who: Caller, round_id: str) -> domain.Round:
    found = uow.rounds.get(round_id)
    if not who.admin and found.get("partnership") not in {p.id for p in who.partnerships}:
        raise NotFound("round", round_id)
    return found


def read_round(uow: UnitOfWork, who: Caller, round_id: str, clock: Clock) -> dict[str, Any]:
    return round_view(_visible_round(uow, who, round_id), clock())


def change_round(uow: UnitOfWork, who: Caller, round_id: str, data: Mapping[str, Any], clock: Clock) -> dict[str, Any]:
    """Another name or other dates for a round that is not closed (round.updated), by a key of one of its cities or
    an admin key; what is left out stays. `version`: the round as the caller saw it (409 when it changed since)."""
    def step() -> domain.Round:
        found = _visible_round(uow, who, round_id)
        if who.participant is not None or not (who.admin or who.city in found.get("cities", [])):
            raise Forbidden("a round is changed by a key of one of the partnership's cities, or an admin key")
        if data.get("version") is not None and data["version"] != found.version:
            raise Conflict(f"round {found.get('name')!r} is at version {found.version}: read it again")
        current = {"name": found.get("name"), "collect_until": date.fromisoformat(found.get("collect_until")),
                   "workshop_at": found.get("workshop_at"), "projects_from": date.fromisoformat(
                       found.get("projects_from")), "timezone": found.get("timezone")}
        wanted = {**current, **{k: v for k, v in data.items() if k in current and v is not None}}
        try:
            found.change(name=wanted["name"], collect_until=wanted["collect_until"], at=clock(),
                         workshop_at=wanted["workshop_at"], projects_from=wanted["projects_from"],
                         zone=wanted["timezone"])
        except domain.RoundRefused as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        for other in uow.rounds.of_partnerships([found.get("partnership")]):
            domain.check_beside(found, other, at=clock())
        uow.rounds.save(found)
        return found

    return round_view(retrying(step), clock())


def advance_round(uow: UnitOfWork, who: Caller, round_id: str, clock: Clock,
                  expected: str | None = None) -> dict[str, Any]:
    """On to the next phase now (round.phase_changed; round.closed after projects). `expected`: the phase the
    caller saw it in; when it moved on meanwhile (a second click, another coordinator), 409 and nothing moves."""
    def step() -> domain.Round:
        found = _visible_round(uow, who, round_id)
        if who.participant is not None or not (who.admin or who.city in found.get("cities", [])):
            raise Forbidden("a round is moved on by a key of one of the partnership's cities, or an admin key")
        if expected is not None and found.phase_at(clock()) != expected:
            raise domain.RuleViolation(f"round {found.get('name')!r} is {found.phase_at(clock())} now, not "
                                       f"{expected}: it was moved on meanwhile")
        found.advance(at=clock())
        uow.rounds.save(found)
        return found

    return round_view(retrying(step), clock())


def follow_rounds(uow: UnitOfWork, clock: Clock) -> int:
    """The rounds whose dates moved them on since the last look: their phase stored, with round.phase_changed; and
    the reminder two days before collecting ends (round.closing_soon)."""
    moved = 0
    for found in uow.rounds.not_closed():
        if found.follow(at=clock()) | found.remind(at=clock()):
            try:
                uow.rounds.save(found)
                moved += 1
            except Conflict:
                log.info("round %s changed while its phase was followed; the next look takes it", found.id)
    return moved


def round_figures(uow: UnitOfWork, who: Caller, round_id: str, clock: Clock) -> dict[str, Any]:
    """What the ideas service knows for a round's report: the round, its ideas (city, theme, language, status,
    when), the authors and the registered participants of each of its cities."""
    found = _visible_round(uow, who, round_id)
    ideas = uow.ideas.of_round(round_id)
    cities = found.get("cities", [])
    authors = {c: len({i["author_id"] for i in ideas if i.get("author_id") and i["city"] == c}) for c in cities}
    return {"round": round_view(found, clock()), "ideas": ideas, "authors_by_city": authors,
            "registered_by_city": {c: uow.participants.count_in(c) for c in cities}}


def round_view(found: domain.Round, at: datetime) -> dict[str, Any]:
    """A round as it is at `at`: its phase from the dates and moves (a sweep may not have stored it yet)."""
    return {**found.doc, "phase": found.phase_at(at)}


def _author(uow: UnitOfWork, author_id: str | None) -> Mapping[str, Any]:
    if not author_id:
        return {}
    try:
        return uow.participants.get(author_id).doc
    except NotFound:
        return {}  # erased since it was checked: the idea is stored, in English


def _own(who: Caller, thing: Any) -> Any:
    """`thing` (an Idea or a Participant the caller can see) if the caller may change it, else 403: a key its
    city's; a signed-in participant only their own ideas and their own details."""
    city = thing.get("city")
    if not who.can_change(city):
        raise Forbidden(f"this belongs to {city}; your key may change only its own city's")
    if not who.acts_for(thing.id if isinstance(thing, Participant) else thing.get("author_id")):
        raise Forbidden("only its author may change this idea" if isinstance(thing, Idea)
                        else "a participant may change only their own details")
    return thing
