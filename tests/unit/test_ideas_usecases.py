"""The ideas service's use cases and handlers against in-memory fakes: what each decides and which events it causes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marshmallow import ValidationError

from ideas import domain, handlers, usecases
from ideas.domain import Idea, Participant
from ideas.repository import DuplicateEmail, UnitOfWork
from services.aggregate import Conflict
from services.contract import new_event, parse_event
from services.errors import Refused
from services.store import NotFound
from services.tenancy import Caller, PartnershipRef
from tests.unit.fakes import Clock, FakeDocuments

PARTNERSHIP = PartnershipRef("karlsruhe-krasnodar", ("karlsruhe", "krasnodar"), ("twin-sports",))
THEMES = ("ecology-health", "leisure-youth-social")


def caller(city: str | None = "karlsruhe", scopes: tuple[str, ...] = ("read", "write")) -> Caller:
    return Caller(city=city, scopes=scopes, visible_cities=("karlsruhe", "krasnodar"), partnerships=(PARTNERSHIP,),
                  default_themes=THEMES)


KARLSRUHE, KRASNODAR, ADMIN = caller(), caller("krasnodar"), caller(None, ("admin", "read", "write"))


class FakeIdeas(FakeDocuments[Idea]):
    def page(self, *, cities: Any, filters: Any, q: Any, limit: int, cursor: Any, own_city: Any = None,
             partnerships: Any = None) -> tuple[list, None]:
        found = [d for d in self.docs.values() if (cities is None or d["city"] in cities)
                 and (partnerships is None or d["city"] == own_city or set(d.get("partnerships", [])) & set(
                     partnerships))]
        return sorted(found, key=lambda d: d["_id"], reverse=True)[:limit], None

    def open_of(self, cities: Any, without: str) -> list[Idea]:
        return [Idea(copy.deepcopy(d)) for d in self.docs.values() if d["city"] in cities
                and d["status"] in ("open", "matched") and without not in d.get("partnerships", [])]

    def of_round(self, round_id: str) -> list[dict[str, Any]]:
        return [d for d in sorted(self.docs.values(), key=lambda d: d["_id"]) if d.get("round_id") == round_id]

    def forget_author(self, participant_id: str) -> int:
        changed = [d for d in self.docs.values() if d.get("author_id") == participant_id]
        for doc in changed:
            doc.update(author_id=None, author_erased=True)
        return len(changed)


class FakeParticipants(FakeDocuments[Participant]):
    def get(self, key: str, **where: Any) -> Participant:
        return super().get(key, erased={"$ne": True}, **where)

    def add(self, aggregate: Participant) -> Participant:
        if any(d.get("email_key") and d.get("email_key") == aggregate.get("email_key") for d in self.docs.values()):
            raise DuplicateEmail(aggregate.get("email"))
        return super().add(aggregate)

    def by_email(self, email: str, cities: Any) -> list[dict[str, Any]]:
        keys = {domain.email_key(city, email) for city in cities}
        return [d for d in self.docs.values() if d.get("email_key") in keys and not d.get("erased")]

    def count_in(self, city: str) -> int:
        return sum(d["city"] == city and not d.get("erased") for d in self.docs.values())

    def exists(self, participant_id: str, city: str) -> bool:
        doc = self.docs.get(participant_id)
        return doc is not None and doc["city"] == city and not doc.get("erased")


class FakeRounds(FakeDocuments[domain.Round]):
    def of_partnerships(self, partnerships: Any) -> list[domain.Round]:
        found = [domain.Round(d) for d in self.docs.values() if d["partnership"] in partnerships]
        return sorted(found, key=lambda r: r.id, reverse=True)

    def not_closed(self) -> list[domain.Round]:
        return [domain.Round(d) for d in self.docs.values() if d.get("phase") in ("collecting", "matching")]


@pytest.fixture
def uow() -> UnitOfWork:
    return make_uow()


def make_uow() -> UnitOfWork:
    return UnitOfWork(ideas=FakeIdeas(Idea, "idea"), participants=FakeParticipants(Participant, "participant"),
                      rounds=FakeRounds(domain.Round, "round"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lena(uow: UnitOfWork, clock: Clock) -> Participant:
    return usecases.register_participant(uow, KARLSRUHE, {"name": "Lena Hoffmann", "email": "Lena@Example.org",
                                                          "language": "de"}, clock)


GARDEN = {"title": "Gemeinschaftsgarten", "description": "Gärten gegen die Sommerhitze", "theme": "ecology-health"}


# --- submitting -------------------------------------------------------------------------------------------

def test_an_idea_belongs_to_the_caller_s_city_and_its_partnerships_and_says_so_in_an_event(uow, clock):
    idea = usecases.submit_idea(uow, KARLSRUHE, {**GARDEN, "tags": ["Garten", "garten", "Klima"]}, clock)
    assert idea.get("city") == "karlsruhe" and idea.get("partnerships") == ["karlsruhe-krasnodar"]
    assert idea.get("status") == domain.OPEN and idea.version == 1 and idea.get("created_at") == clock.at
    assert idea.get("tags") == ["garten", "klima"] and idea.get("language") == "de" and idea.get("language_detected")
    [event] = uow.ideas.events()
    assert (event.type, event.city, event.partnership) == ("idea.submitted", "karlsruhe", "karlsruhe-krasnodar")
    assert event.payload["idea_id"] == idea.id and event.payload["version"] == 1


def test_a_short_text_takes_its_author_s_language(uow, clock):
    anna = usecases.register_participant(uow, KRASNODAR, {"name": "Анна", "language": "ru"}, clock)
    idea = usecases.submit_idea(uow, KRASNODAR, {"title": "Hackathon", "theme": "ecology-health",
                                                 "author_id": anna.id}, clock)
    assert idea.get("language") == "ru"


def test_every_error_of_a_submission_is_named_at_once(uow, clock):
    with pytest.raises(ValidationError) as refused:
        usecases.submit_idea(uow, KARLSRUHE, {"title": "x", "theme": "Freizeit", "author_id": "prt_nobody"}, clock)
    errors = refused.value.messages
    assert set(errors) == {"title", "theme", "author_id"}, errors
    assert "unknown theme 'Freizeit'" in errors["theme"][0] and "no participant" in errors["author_id"][0]
    assert uow.ideas.events() == []


def test_an_imported_idea_s_author_is_found_by_e_mail_in_the_city_only(uow, clock):
    person = lena(uow, clock)
    row = {**GARDEN, "author_email": "lena@example.org"}
    [idea] = usecases.import_ideas(uow, KARLSRUHE, [row], dry_run=False, clock=clock)
    assert idea.get("author_id") == person.id
    with pytest.raises(usecases.RowErrors) as refused:
        usecases.import_ideas(uow, KRASNODAR, [row], dry_run=False, clock=clock)
    assert refused.value.errors["0"]["author_email"] == ["no participant with this e-mail address in krasnodar"]


def test_an_admin_key_names_the_city_and_a_city_key_acts_for_its_own(uow, clock):
    with pytest.raises(ValidationError) as refused:
        usecases.submit_idea(uow, ADMIN, GARDEN, clock)
    assert "must say which city" in refused.value.messages["city"][0]
    assert usecases.submit_idea(uow, ADMIN, {**GARDEN, "city": "krasnodar"}, clock).get("city") == "krasnodar"
    with pytest.raises(Refused) as forbidden:
        usecases.submit_idea(uow, KARLSRUHE, {**GARDEN, "city": "krasnodar"}, clock)
    assert forbidden.value.status == 403


def test_an_import_stores_every_row_or_none(uow, clock):
    rows = [GARDEN, {**GARDEN, "title": "Radtour", "theme": "leisure-youth-social"}, {"title": "Oops", "theme": "x"}]
    with pytest.raises(usecases.RowErrors) as refused:
        usecases.import_ideas(uow, KARLSRUHE, rows, dry_run=False, clock=clock)
    assert list(refused.value.errors) == ["2"] and uow.ideas.docs == {}
    assert usecases.import_ideas(uow, KARLSRUHE, rows[:2], dry_run=True, clock=clock) == [] and uow.ideas.docs == {}
    stored = usecases.import_ideas(uow, KARLSRUHE, rows[:2], dry_run=False, clock=clock)
    assert [i.get("title") for i in stored] == ["Gemeinschaftsgarten", "Radtour"]
    assert [e.type for e in uow.ideas.events()] == ["idea.submitted", "idea.submitted"]


# --- changing -------------------------------------------------------------------------------------------

def test_an_edit_records_what_changed_and_nothing_when_nothing_did(uow, clock):
    idea = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    clock.advance(minutes=5)
    changed = usecases.change_idea(uow, KARLSRUHE, idea.id, {"title": "Stadtgarten", "theme": "ecology-health"},
                                   clock)
    assert changed.version == 2 and changed.get("updated_at") == clock.at
    assert uow.ideas.events("idea.updated")[-1].payload["changed"] == ["title"]
    usecases.change_idea(uow, KARLSRUHE, idea.id, {"title": "Stadtgarten"}, clock)
    assert len(uow.ideas.events("idea.updated")) == 1, "the same title again changes nothing"


def test_a_change_on_a_stale_version_is_the_caller_s_conflict(uow, clock):
    idea = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    usecases.change_idea(uow, KARLSRUHE, idea.id, {"title": "Stadtgarten"}, clock)
    with pytest.raises(Conflict):
        usecases.change_idea(uow, KARLSRUHE, idea.id, {"title": "Dachgarten", "version": 1}, clock)


def test_a_change_without_a_version_is_retried_when_another_writer_got_there_first(uow, clock, monkeypatch):
    idea = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    save, raced = uow.ideas.save, []

    def racing(aggregate: Idea, **kwargs: Any) -> bool:
        if not raced:  # another writer's change lands between this read and this write
            raced.append(True)
            uow.ideas.docs[idea.id]["version"] += 1
        return save(aggregate, **kwargs)

    monkeypatch.setattr(uow.ideas, "save", racing)
    assert usecases.change_idea(uow, KARLSRUHE, idea.id, {"title": "Stadtgarten"}, clock).version == 3


def test_partners_read_but_do_not_change_and_others_see_nothing(uow, clock):
    idea = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    assert usecases.read_idea(uow, KRASNODAR, idea.id).id == idea.id
    with pytest.raises(Refused) as forbidden:
        usecases.change_idea(uow, KRASNODAR, idea.id, {"title": "Übernommen"}, clock)
    assert forbidden.value.status == 403
    stranger = Caller(city="nancy", scopes=("read", "write"), visible_cities=("nancy", "dijon"))
    with pytest.raises(NotFound):
        usecases.withdraw_idea(uow, stranger, idea.id, clock)


def test_a_withdrawn_idea_says_so_and_is_no_longer_edited(uow, clock):
    idea = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    usecases.withdraw_idea(uow, KARLSRUHE, idea.id, clock)
    [event] = uow.ideas.events("idea.withdrawn")
    assert event.payload == {"idea_id": idea.id, "city": "karlsruhe", "version": 2}
    with pytest.raises(domain.RuleViolation):
        usecases.change_idea(uow, KARLSRUHE, idea.id, {"title": "Stadtgarten"}, clock)
    with pytest.raises(domain.RuleViolation):
        usecases.withdraw_idea(uow, KARLSRUHE, idea.id, clock)


# --- what the matching workflow's events move on -------------------------------------------------------------

def event(event_type: str, payload: dict[str, Any]) -> Any:
    return parse_event(new_event(event_type, payload, producer="matching", partnership="karlsruhe-krasnodar"))


def test_a_project_moves_its_ideas_once_however_often_its_event_arrives(uow, clock):
    ka = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    kr = usecases.submit_idea(uow, KRASNODAR, {**GARDEN, "title": "Городской сад"}, clock)
    formed = event("project.formed", {"project_id": "project_1", "match_id": "match_1",
                                      "partnership": "karlsruhe-krasnodar", "title": "x", "idea_ids": [ka.id, kr.id],
                                      "members": []})
    handlers.project_formed(formed, uow, clock)
    handlers.project_formed(formed, uow, clock)  # redelivered
    assert {uow.ideas.docs[i]["status"] for i in (ka.id, kr.id)} == {domain.IN_PROJECT}
    updates = uow.ideas.events("idea.updated")
    assert len(updates) == 2 and all(e.payload["changed"] == ["status"] for e in updates)


def test_a_confirmed_match_does_not_move_a_withdrawn_idea_and_skips_an_unknown_one(uow, clock, caplog):
    ka = usecases.submit_idea(uow, KARLSRUHE, GARDEN, clock)
    usecases.withdraw_idea(uow, KARLSRUHE, ka.id, clock)
    confirmed = event("match.confirmed", {"match_id": "match_1", "partnership": "karlsruhe-krasnodar",
                                          "status": "confirmed", "version": 3,
                                          "sides": [{"city": "karlsruhe", "idea_id": ka.id},
                                                    {"city": "krasnodar", "idea_id": "idea_unknown"}]})
    handlers.match_confirmed(confirmed, uow, clock)
    assert uow.ideas.docs[ka.id]["status"] == domain.WITHDRAWN
    assert "which this service does not know" in caplog.text


def test_an_erased_author_s_ideas_stay_without_them(uow, clock):
    person = lena(uow, clock)
    idea = usecases.submit_idea(uow, KARLSRUHE, {**GARDEN, "author_id": person.id}, clock)
    handlers.participant_erased(event("participant.erased", {"participant_id": person.id, "city": "karlsruhe"}), uow)
    assert uow.ideas.docs[idea.id]["author_id"] is None and uow.ideas.docs[idea.id]["author_erased"]


# --- participants ---------------------------------------------------------------------------------------

def test_a_participant_s_address_is_unique_in_the_city_and_shown_only_there(uow, clock):
    person = lena(uow, clock)
    assert person.get("email_key") == "karlsruhe:lena@example.org"
    assert uow.participants.events()[0].type == "participant.registered"
    with pytest.raises(DuplicateEmail):
        usecases.register_participant(uow, KARLSRUHE, {"name": "Lena H.", "email": "LENA@example.org",
                                                       "language": "de"}, clock)
    assert usecases.read_participant(uow, KARLSRUHE, person.id)[1] is True
    assert usecases.read_participant(uow, KRASNODAR, person.id)[1] is False
    assert usecases.find_participants(uow, KRASNODAR, "lena@example.org") == []
    assert [p["_id"] for p in usecases.find_participants(uow, KARLSRUHE, "lena@example.org")] == [person.id]


def test_a_changed_address_moves_its_key_and_none_drops_it(uow, clock):
    person = lena(uow, clock)
    usecases.change_participant(uow, KARLSRUHE, person.id, {"email": "lena.h@example.org"}, clock)
    assert uow.participants.docs[person.id]["email_key"] == "karlsruhe:lena.h@example.org"
    usecases.change_participant(uow, KARLSRUHE, person.id, {"email": None}, clock)
    assert "email_key" not in uow.participants.docs[person.id]
    assert [e.type for e in uow.participants.events()] == ["participant.registered", *["participant.updated"] * 2]


def test_an_erasure_leaves_a_tombstone_and_tells_everyone(uow, clock):
    person = lena(uow, clock)
    usecases.erase_participant(uow, KARLSRUHE, person.id, clock)
    doc = uow.participants.docs[person.id]
    assert set(doc) == {"_id", "city", "version", "erased", "erased_at"} and doc["version"] == 2
    assert uow.participants.events()[-1].payload == {"participant_id": person.id, "city": "karlsruhe"}
    with pytest.raises(NotFound):
        usecases.read_participant(uow, KARLSRUHE, person.id)
    with pytest.raises(Refused):
        usecases.erase_participant(uow, KRASNODAR, lena(uow, clock).id, clock)


# --- a signed-in participant acts for themselves only ------------------------------------------------------

def signed_in(person: Participant) -> Caller:
    """The caller the pages send for a signed-in participant (services.tenancy.Caller.participant)."""
    return Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"),
                  partnerships=(PARTNERSHIP,), default_themes=THEMES, key_id=f"web:{person.id}",
                  participant=person.id)


def test_a_participant_submits_changes_and_withdraws_only_in_their_own_name(uow, clock):
    author = lena(uow, clock)
    jonas = usecases.register_participant(uow, KARLSRUHE, {"name": "Jonas Weber", "email": "jonas@example.org",
                                                           "language": "de"}, clock)
    as_lena, as_jonas = signed_in(author), signed_in(jonas)
    own = usecases.submit_idea(uow, as_lena, GARDEN, clock)
    assert own.get("author_id") == author.id, "the author is the person signed in"
    with pytest.raises(Refused) as in_another_name:
        usecases.submit_idea(uow, as_lena, {**GARDEN, "author_id": jonas.id}, clock)
    assert in_another_name.value.status == 403
    for attempt in (lambda: usecases.change_idea(uow, as_jonas, own.id, {"title": "Meins"}, clock),
                    lambda: usecases.withdraw_idea(uow, as_jonas, own.id, clock),
                    lambda: usecases.change_participant(uow, as_jonas, author.id, {"name": "Lena X"}, clock),
                    lambda: usecases.import_ideas(uow, as_jonas, [GARDEN], dry_run=True, clock=clock)):
        with pytest.raises(Refused) as refused:
            attempt()
        assert refused.value.status == 403
    assert uow.ideas.get(own.id).get("title") == "Gemeinschaftsgarten"
    usecases.change_idea(uow, as_lena, own.id, {"title": "Gemeinschaftsgarten am Rhein"}, clock)
    assert usecases.withdraw_idea(uow, as_lena, own.id, clock).get("status") == domain.WITHDRAWN
    # A city key acts for anyone of its city, as before.
    other = usecases.submit_idea(uow, KARLSRUHE, {**GARDEN, "author_id": jonas.id}, clock)
    usecases.change_idea(uow, KARLSRUHE, other.id, {"title": "Lastenrad"}, clock)


def test_an_idea_names_only_the_partnerships_of_the_one_who_reads_it():
    from ideas import domain

    idea = {"id": "i1", "partnerships": ["karlsruhe-krasnodar", "karlsruhe-nancy"]}
    seen = domain.partnerships_shown(dict(idea), admin=False, callers_partnerships={"karlsruhe-nancy"})
    assert seen["partnerships"] == ["karlsruhe-nancy"], "Nancy does not learn of Karlsruhe's other twin"
    assert domain.partnerships_shown(dict(idea), admin=True, callers_partnerships=set()) == idea


class FakeTranslator:
    name = "Fake"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[str], str | None, str]] = []
        self.fail = fail

    def translate(self, texts, source, target):
        from ideas.translation import Unavailable

        self.calls.append((list(texts), source, target))
        if self.fail:
            raise Unavailable("down")
        return [f"[{target}] {t}" for t in texts]


class FakeCache(dict):
    def put(self, key, doc):
        self.setdefault(key, doc)


def test_a_translation_is_made_once_per_version_and_language_and_never_fails():
    from tests.unit.fakes import Clock

    idea = {"_id": "i1", "version": 1, "language": "ru", "title": "Зелёные дворы", "description": "Озеленим."}
    cache, translator = FakeCache(), FakeTranslator()
    first = usecases.translated(cache, translator, idea, "de", Clock())
    assert first["title"] == "[de] Зелёные дворы" and first["machine"] and first["provider"] == "Fake"
    assert usecases.translated(cache, translator, idea, "de", Clock()) == first and len(translator.calls) == 1
    usecases.translated(cache, translator, {**idea, "version": 2}, "de", Clock())
    assert len(translator.calls) == 2, "a new version is translated anew"
    assert usecases.translated(cache, translator, idea, "ru", Clock()) is None, "written in it"
    assert "error" in usecases.translated(FakeCache(), FakeTranslator(fail=True), idea, "en", Clock())
    assert "TWINCITY_TRANSLATE_URL" in usecases.translated(FakeCache(), None, idea, "en", Clock())["error"]
