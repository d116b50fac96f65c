"""The matching service's use cases and handlers against in-memory fakes: the lives of matches and projects."""

from __future__ import annotations

import contextlib
import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from marshmallow import ValidationError

from matching import domain, handlers, usecases
from matching.domain import Match, Project
from matching.repository import UnitOfWork
from services.aggregate import Conflict
from services.contract import new_event, parse_event
from services.errors import Refused
from services.store import DuplicateKeyError, NotFound
from services.tenancy import Caller, PartnershipRef
from tests.unit.fakes import Clock, FakeDocuments

PARTNERSHIP = PartnershipRef("karlsruhe-krasnodar", ("karlsruhe", "krasnodar"))
KARLSRUHE = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"),
                   partnerships=(PARTNERSHIP,))
KRASNODAR = Caller(city="krasnodar", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"),
                   partnerships=(PARTNERSHIP,))
NANCY = Caller(city="nancy", scopes=("read", "write"), visible_cities=("nancy",))
ADMIN = Caller(city=None, scopes=("admin",), partnerships=(PARTNERSHIP,))


class FakeModels:
    """What matching knows of the others, as plain dicts."""

    def __init__(self) -> None:
        self.people: dict[str, dict[str, Any]] = {}
        self.ideas_: dict[str, dict[str, Any]] = {}
        self.settings_: dict[str, domain.MatchPolicy] = {}
        self.statuses: list[tuple[str, str]] = []
        self.cities: dict[str, dict[str, Any]] = {}
        self.partnerships_: dict[str, dict[str, Any]] = {}

        self.ideas, self.participants = self.ideas_, self.people  # the "collections" put_versioned writes to
        self.people_ = self.people

    def put_versioned(self, collection: dict[str, dict[str, Any]], key: str, version: int,
                      fields: dict[str, Any]) -> bool:
        """As the repository's: a snapshot is stored unless a newer version is; True when this version is held."""
        held = collection.get(key, {}).get("version")
        if held is None or held < version:
            collection[key] = {**collection.get(key, {}), **fields, "_id": key, "version": version}
            return True
        return held == version

    def put_city(self, city: str, name: str, language: str, names: Any = None, timezone: Any = None) -> None:
        self.cities[city] = {"name": name, "language": language, "names": dict(names or {}),
                             "timezone": timezone or "UTC"}

    def city_zone(self, city: str) -> str:
        return self.cities.get(city, {}).get("timezone", "UTC")

    def erased_among(self, ids: Any) -> set[str]:
        return {i for i in ids if self.people_.get(i, {}).get("erased")}

    def people_by_id(self, ids: Any) -> dict[str, dict[str, Any]]:
        return {i: self.people_[i] for i in ids if i in self.people_}

    def city_name_forms(self) -> list[str]:
        return sorted({f for key, c in self.cities.items() for f in (key, c["name"], *c["names"].values())})

    def put_partnership(self, pid: str, name: str, cities: Any, themes: Any) -> None:
        self.partnerships_[pid] = {"name": name, "cities": list(cities), "themes": list(themes)}

    def participant(self, pid: str) -> dict[str, Any] | None:
        return self.people.get(pid)

    def idea(self, idea_id: str) -> dict[str, Any] | None:
        return self.ideas_.get(idea_id)

    def ideas_by_id(self, ids: Any) -> dict[str, dict[str, Any]]:
        return {i: self.ideas_[i] for i in ids if i in self.ideas_}

    def partnership(self, pid: str) -> dict[str, Any] | None:
        return self.partnerships_.get(pid)

    def open_ideas_of(self, pid: str) -> Any:
        found = [i for i in self.ideas_.values() if pid in i.get("partnerships", [])
                 and i.get("status") in domain.MATCHABLE]
        return [found] if found else []

    def settings(self, pid: str) -> domain.MatchPolicy:
        return self.settings_.get(pid, domain.MatchPolicy())

    def put_settings(self, pid: str, settings: domain.MatchPolicy) -> None:
        self.settings_[pid] = settings

    def set_idea_status(self, idea_id: str, status: str, version: int) -> bool:
        self.statuses.append((idea_id, status))
        return True

    def erase_participant(self, pid: str) -> None:
        self.people[pid] = {"erased": True}
        for idea in self.ideas_.values():
            if idea.get("author_id") == pid:
                idea["author_id"] = None


class FakeMatches(FakeDocuments[Match]):
    def propose(self, match: Match) -> bool:
        if any(d["pair"] == match.get("pair") for d in self.docs.values()):
            return False
        self.add(match)
        return True

    def open_of_idea(self, idea_id: str) -> list[Match]:
        return [m for m in self.find({}) if m.get("status") in domain.OPEN_STATUSES
                and idea_id in [s.get("idea_id") for s in m.get("sides")]]

    def due(self, at: datetime) -> list[Match]:
        return [m for m in self.find({}) if m.get("status") in domain.OPEN_STATUSES and m.get("expires_at") < at]

    def of_idea(self, idea_id: str) -> list[dict[str, Any]]:
        return [m.doc for m in self.find({}) if idea_id in [s.get("idea_id") for s in m.get("sides")]]

    def forget_person(self, pid: str) -> None:
        for doc in self.docs.values():
            doc["sides"] = [{**s, **{k: None for k in ("participant_id", "author_id") if s.get(k) == pid}}
                            for s in doc["sides"]]

    def by_pairs(self, pairs: Any) -> dict[str, dict[str, Any]]:
        return {d["pair"]: d for d in self.docs.values() if d["pair"] in pairs}

    def unanswered_of(self, pid: str) -> list[Match]:
        return self.find({"partnership": pid, "status": domain.PROPOSED, "kind": "idea"})


class FakeProjects(FakeDocuments[Project]):
    def form(self, project: Project) -> bool:
        if any(d["match_id"] == project.get("match_id") for d in self.docs.values()):
            return False
        try:
            self.add(project)
        except DuplicateKeyError:
            return False
        return True

    def forming(self, partnership: str) -> Any:
        return contextlib.nullcontext()

    def holding(self, idea_ids: Any) -> list[Project]:
        return [Project(copy.deepcopy(d)) for d in self.docs.values() if set(d.get("idea_ids", [])) & set(idea_ids)]

    def for_change(self, key: str) -> Project:
        return self.get(key)

    def find_one(self, query: Any, kind: str, key: str) -> Project:
        [(field, value)] = query.items()
        listed, _, name = field.partition(".")
        for doc in self.docs.values():
            if any(item.get(name) == value for item in doc.get(listed, [])):
                return Project(copy.deepcopy(doc))
        raise NotFound(kind, key)

    def of_person(self, pid: str) -> list[Project]:
        return [Project(copy.deepcopy(d)) for d in self.docs.values() if pid in repr(d)]

    def page(self, *, partnerships: Any, limit: int, cursor: Any, member: str | None = None,
             not_member: str | None = None) -> tuple[list, None]:
        found = [d for d in self.docs.values() if (partnerships is None or d["partnership"] in partnerships)
                 and (member is None or domain.is_member(d, member))
                 and (not_member is None or not domain.is_member(d, not_member))]
        return found[:limit], None


class FakeMessages(FakeDocuments[domain.ProjectMessage]):
    def oldest_first(self, project_id: str, limit: int, cursor: Any) -> tuple[list, Any]:
        found = sorted((d for d in self.docs.values() if d["project_id"] == project_id
                        and (cursor is None or d["_id"] > cursor)), key=lambda d: d["_id"])
        return found[:limit], (found[limit - 1]["_id"] if len(found) > limit else None)

    def erase_author(self, pid: str) -> int:
        mine = [d for d in self.docs.values() if d["author_id"] == pid]
        for doc in mine:
            doc.update(author_id=None, text="", erased=True)
        return len(mine)


class FakeRuns(FakeDocuments[domain.MatchingRun]):
    def last_of(self, pid: str) -> dict[str, Any] | None:
        found = [d for d in self.docs.values() if d["partnership"] == pid]
        return max(found, key=lambda d: d["requested_at"]) if found else None


class FakeEngine:
    """The index and the encoder stood in for: ideas get fixed vectors, and the proposals it "finds" for an idea
    or a person are the ones a test gives it."""

    def __init__(self) -> None:
        self.synced = 0
        self.for_idea: dict[str, list[domain.Proposal]] = {}
        self.for_person: dict[str, list[domain.Proposal]] = {}
        self.encoded: list[list[str]] = []

    def sync(self) -> None:
        self.synced += 1

    def forget_city_names(self) -> None:
        self.forgot_city_names = True

    def ideas_vectors(self, ideas: Any) -> list[dict[str, Any]]:
        self.encoded.append([i["title"] for i in ideas])
        return [{"vec": b"v", "vec_scale": 1.0} for _ in ideas]

    def nearest_many(self, ideas: Any) -> dict[str, Any]:
        return {}

    def proposals_for_idea(self, idea: Any, *, synced: bool = False, nearest: Any = None) -> list[domain.Proposal]:
        assert synced, "an idea is searched for after the index has it (engine.py's docstring says why)"
        return self.for_idea.get(idea["_id"], [])

    def interest_vector(self, interests: str) -> dict[str, Any]:
        return {"vec": b"i", "vec_scale": 1.0}

    def proposals_for_person(self, person: Any) -> list[domain.Proposal]:
        return self.for_person.get(person["_id"], [])

    def proposals_in(self, ideas: Any, pid: str) -> list[domain.Proposal]:
        return [p for i in ideas for p in self.for_idea.get(i["_id"], [])]

    def pairing(self, a: Any, b: Any, pid: str, note: str) -> domain.Proposal:
        proposal = a_proposal(kind="idea")
        return domain.Proposal({**proposal.fields, "kind": "coordinator",
                                "reasons": [domain.coordinator_reason(note)]}, proposal.policy)


@pytest.fixture
def uow() -> UnitOfWork:
    return make_uow()


def make_uow() -> UnitOfWork:
    models = FakeModels()
    models.people.update({"lena": {"city": "karlsruhe"}, "anna": {"city": "krasnodar"}})
    models.ideas_.update({"idea-de": {"city": "karlsruhe", "title": "Stadtgarten"},
                          "idea-ru": {"city": "krasnodar", "title": "Городской сад"}})
    return UnitOfWork(models=models, matches=FakeMatches(Match, "match"),  # type: ignore[arg-type]
                      projects=FakeProjects(Project, "project"),  # type: ignore[arg-type]
                      runs=FakeRuns(domain.MatchingRun, "matching run"),  # type: ignore[arg-type]
                      messages=FakeMessages(domain.ProjectMessage, "message"))  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def a_proposal(**changes: Any) -> domain.Proposal:
    sides = [{"city": "karlsruhe", "idea_id": "idea-de", "author_id": "lena", "participant_id": None,
              "title": "Stadtgarten", "language": "de"},
             {"city": "krasnodar", "idea_id": "idea-ru", "author_id": "anna", "participant_id": None,
              "title": "Городской сад", "language": "ru"}]
    fields = {"pair": domain.pair_key("idea", "idea-de", "idea-ru"), "kind": "idea",
              "partnership": "karlsruhe-krasnodar", "score": 0.8, "parts": {"semantic": 0.8}, "reasons": [],
              "sides": sides, **changes}
    return domain.Proposal(fields, domain.MatchPolicy())


def proposed(uow: UnitOfWork, clock: Clock, **changes: Any) -> Match:
    assert usecases.propose(uow, [a_proposal(**changes)], clock) == 1
    [match] = [m for m in uow.matches.find({}) if m.get("pair") == a_proposal(**changes).fields["pair"]]
    return match


def test_a_pair_is_proposed_once_open_for_its_partnership_s_days_from_the_service_s_clock(uow, clock):
    first = proposed(uow, clock)
    assert first.get("created_at") == clock() and first.get("expires_at") == clock() + timedelta(days=21)
    clock.advance(hours=1)
    assert usecases.propose(uow, [a_proposal()], clock) == 0, "proposed before (by this worker or another)"
    [event] = uow.matches.events()
    assert event.type == "match.proposed" and event.partnership == "karlsruhe-krasnodar"
    assert event.payload["expires_at"] == (first.get("created_at") + timedelta(days=21)).isoformat()


def idea_event(idea_id: str, city: str, title: str, kind: str = "idea.submitted", **payload: Any) -> Any:
    fields = {"idea_id": idea_id, "city": city, "partnerships": ["karlsruhe-krasnodar"], "title": title,
              "description": "", "theme": "ecology-health", "tags": [], "seeks": [], "offers": [], "language": "de",
              "author_id": "lena", "status": "open", "version": 1, **payload}
    return parse_event(new_event(kind, fields, producer="ideas", city=city))


def test_ideas_are_encoded_together_stored_then_matched_and_their_proposals_made(uow, clock):
    engine = FakeEngine()
    engine.for_idea["idea-new"] = [a_proposal()]
    usecases.take_ideas(uow, engine, [idea_event("idea-new", "karlsruhe", "Gemeinschaftsgarten"),
                                      idea_event("idea-two", "karlsruhe", "Lastenrad-Verleih")], clock)
    assert engine.encoded == [["Gemeinschaftsgarten", "Lastenrad-Verleih"]], "one encoder call for both"
    assert uow.models.ideas_["idea-two"]["vec"] == b"v" and engine.synced == 1
    usecases.take_ideas(uow, engine, [idea_event("idea-new", "karlsruhe", "Gemeinschaftsgarten")], clock)
    assert len(engine.encoded) == 2 and len(uow.matches.find({})) == 1, "a redelivered event proposes nothing new"
    [match] = uow.matches.find({})
    assert match.get("created_at") == clock() and [e.type for e in uow.matches.events()] == ["match.proposed"]


def test_a_withdrawn_or_stale_idea_is_not_matched(uow, clock):
    engine = FakeEngine()
    engine.for_idea.update({"idea-w": [a_proposal()], "idea-s": [a_proposal(pair="idea:s|x")]})
    usecases.take_ideas(uow, engine, [idea_event("idea-w", "karlsruhe", "Alt", status="withdrawn")], clock)
    assert uow.models.ideas_["idea-w"]["status"] == "withdrawn" and uow.matches.find({}) == []
    uow.models.ideas_["idea-s"] = {"_id": "idea-s", "version": 3, "vec": b"v"}
    usecases.take_ideas(uow, engine, [idea_event("idea-s", "karlsruhe", "Alt", version=2)], clock)
    assert uow.models.ideas_["idea-s"]["version"] == 3 and uow.matches.find({}) == [], "stale: nothing to do"


def test_changed_interests_are_matched_again_and_unchanged_ones_are_not(uow, clock):
    engine = FakeEngine()
    engine.for_person["olga"] = [a_proposal(kind="interest", pair="interest:olga|idea-de")]
    payload = {"participant_id": "olga", "city": "krasnodar", "language": "ru", "interests": "городские сады",
               "version": 1}
    usecases.participant_changed(uow, engine, payload, clock)
    assert len(uow.matches.find({})) == 1
    engine.for_person["olga"] = [a_proposal(kind="interest", pair="interest:olga|idea-other")]
    usecases.participant_changed(uow, engine, {**payload, "version": 2}, clock)
    assert len(uow.matches.find({})) == 1, "the same interests: nothing searched again"


def test_both_sides_accept_and_the_second_yes_confirms(uow, clock):
    match = proposed(uow, clock)
    usecases.answer_match(uow, KARLSRUHE, match.id, True, "lena", clock)
    assert uow.matches.docs[match.id]["status"] == domain.ACCEPTED
    usecases.answer_match(uow, KRASNODAR, match.id, True, None, clock)
    doc = uow.matches.docs[match.id]
    assert doc["status"] == domain.CONFIRMED and [s["answer"] for s in doc["sides"]] == ["accepted", "accepted"]
    types = [e.type for e in uow.matches.events()]
    assert types == ["match.proposed", "match.accepted", "match.accepted", "match.confirmed"]
    assert uow.matches.events("match.accepted")[0].payload["participant_id"] == "lena"
    with pytest.raises(domain.RuleViolation):
        usecases.answer_match(uow, KARLSRUHE, match.id, False, None, clock)


def test_only_a_side_answers_and_in_the_name_of_its_own_people(uow, clock):
    match = proposed(uow, clock)
    for who, status in ((ADMIN, 403), (NANCY, 404)):
        with pytest.raises((Refused, NotFound)) as refused:
            usecases.answer_match(uow, who, match.id, True, None, clock)
        assert getattr(refused.value, "status", 404) == status
    with pytest.raises(ValidationError):
        usecases.answer_match(uow, KARLSRUHE, match.id, True, "anna", clock)
    assert uow.matches.docs[match.id]["status"] == domain.PROPOSED


def test_an_answer_on_a_match_changed_meanwhile_is_a_conflict(uow, clock, monkeypatch):
    match = proposed(uow, clock)
    get = uow.matches.get

    def stale(key: str, **where: Any) -> Match:
        read = get(key, **where)
        uow.matches.docs[key]["version"] += 1  # the other city answered between this read and this write
        return read

    monkeypatch.setattr(uow.matches, "get", stale)
    with pytest.raises(Conflict, match="read it again"):
        usecases.answer_match(uow, KARLSRUHE, match.id, True, None, clock)


def test_a_withdrawn_idea_closes_its_open_proposals(uow, clock):
    match = proposed(uow, clock)
    engine = FakeEngine()
    withdrawn = parse_event(new_event("idea.withdrawn", {"idea_id": "idea-ru", "city": "krasnodar", "version": 2},
                                      producer="ideas", city="krasnodar"))
    handlers.idea_withdrawn(withdrawn, uow, engine, clock)
    doc = uow.matches.docs[match.id]
    assert doc["status"] == domain.DECLINED and doc["closed_reason"] == "withdrawn" and engine.synced == 1
    [declined] = uow.matches.events("match.declined")
    assert declined.payload["reason"] == "withdrawn" and declined.payload["city"] == "krasnodar"


def test_proposals_nobody_answered_in_time_expire(uow, clock):
    old, answered = proposed(uow, clock), proposed(uow, clock, pair="idea:a|b")
    usecases.answer_match(uow, KARLSRUHE, answered.id, True, None, clock)
    clock.advance(days=22)
    assert usecases.expire_due(uow, clock) == 2
    assert {uow.matches.docs[m.id]["status"] for m in (old, answered)} == {domain.EXPIRED}
    assert usecases.expire_due(uow, clock) == 0


def test_a_confirmed_match_forms_one_project_with_both_authors(uow, clock):
    match = proposed(uow, clock)
    usecases.answer_match(uow, KARLSRUHE, match.id, True, None, clock)
    usecases.answer_match(uow, KRASNODAR, match.id, True, None, clock)
    confirmed = parse_event(new_event("match.confirmed", {
        "match_id": match.id, "partnership": "karlsruhe-krasnodar", "status": "confirmed", "version": 3,
        "sides": []}, producer="matching", partnership="karlsruhe-krasnodar"))
    handlers.match_confirmed(confirmed, uow, clock)
    handlers.match_confirmed(confirmed, uow, clock)  # redelivered
    [project] = uow.projects.docs.values()
    assert project["title"] == "Stadtgarten + Городской сад" and project["idea_ids"] == ["idea-de", "idea-ru"]
    assert project["members"] == [{"participant_id": "lena", "city": "karlsruhe", "role": "author",
                                   "joined_at": clock()},
                                  {"participant_id": "anna", "city": "krasnodar", "role": "author",
                                   "joined_at": clock()}]
    assert project["status"] == "forming" and project["version"] == 1
    [formed] = uow.projects.events()
    assert formed.payload["cities"] == ["karlsruhe", "krasnodar"] and formed.payload["project_id"] == project["_id"]


def test_an_erased_person_leaves_matches_and_projects(uow, clock):
    match = proposed(uow, clock)
    uow.projects.form(Project.form(match.doc, {}, ["karlsruhe", "krasnodar"], cause="e", at=clock()))
    engine = FakeEngine()
    usecases.participant_erased(uow, engine, "lena", clock)
    assert uow.matches.docs[match.id]["sides"][0]["author_id"] is None
    assert [m["participant_id"] for m in next(iter(uow.projects.docs.values()))["members"]] == ["anna"]
    assert uow.models.participant("lena") == {"erased": True} and engine.synced == 1


def test_a_partnership_s_matching_is_changed_by_an_admin_only_and_never_to_no_weight(uow, clock):
    with pytest.raises(Refused) as forbidden:
        usecases.change_settings(uow, KARLSRUHE, "karlsruhe-krasnodar", {"threshold": 0.5}, clock)
    assert forbidden.value.status == 403
    with pytest.raises(Refused) as refused:
        usecases.change_settings(uow, ADMIN, "karlsruhe-krasnodar",
                                 {"semantic": 0, "theme": 0, "tags": 0, "complement": 0}, clock)
    assert refused.value.status == 422
    assert uow.runs.docs == {}, "refused: nothing runs"
    changed = usecases.change_settings(uow, ADMIN, "karlsruhe-krasnodar", {"threshold": 0.5}, clock)
    assert usecases.read_settings(uow, KARLSRUHE, "karlsruhe-krasnodar") == changed
    with pytest.raises(NotFound):
        usecases.read_settings(uow, NANCY, "karlsruhe-krasnodar")


def test_a_stranger_sees_no_match_and_an_unknown_idea_has_none_yet(uow, clock):
    match = proposed(uow, clock)
    with pytest.raises(NotFound):
        usecases.read_match(uow, NANCY, match.id)
    assert usecases.idea_matches(uow, KARLSRUHE, "idea-not-heard-of", None) == []


def test_the_handler_table_wires_each_event_to_its_use_case(uow, clock):
    """EVENT_HANDLERS bound as the bootstrap binds it (services.registry), fed the events the other services
    publish: each reaches its use case with the dependencies it names."""
    from services.registry import bind

    engine = FakeEngine()
    engine.for_idea["idea-new"] = [a_proposal()]
    table = bind(handlers.EVENT_HANDLERS, uow=uow, engine=engine, clock=clock)
    themes = [{"key": "ecology-health", "labels": {"de": "Ökologie & Gesundheit"}}]
    for kind, payload in (
        ("city.registered", {"city": "krasnodar", "name": "Краснодар", "country": "RU", "language": "ru"}),
        ("partnership.formed", {"partnership_id": "karlsruhe-krasnodar", "name": "Twin City Lab",
                                "cities": ["karlsruhe", "krasnodar"], "themes": themes}),
    ):
        [handle] = table[kind]
        handle(parse_event(new_event(kind, payload, producer="gateway")))
    assert uow.models.cities["krasnodar"]["name"] == "Краснодар"
    assert uow.models.partnerships_["karlsruhe-krasnodar"]["themes"] == themes
    [handle] = table["idea.submitted"]
    assert handle is table["idea.updated"][0], "submitted and updated ideas batch together"
    handle(idea_event("idea-new", "karlsruhe", "Gemeinschaftsgarten"))
    assert [e.type for e in uow.matches.events()] == ["match.proposed"]
    assert set(handlers.EVENT_HANDLERS) == {"city.registered", "city.updated", "partnership.formed",
                                            "partnership.updated", "idea.submitted", "idea.updated", "idea.withdrawn",
                                            "participant.registered", "participant.updated", "participant.erased",
                                            "match.confirmed", "matching.run_requested"}


def test_a_signed_in_participant_answers_only_their_own_match_and_sees_only_their_projects(uow, clock):
    from dataclasses import replace as changed

    match = proposed(uow, clock)
    jonas = changed(KARLSRUHE, participant="jonas")  # of Karlsruhe, but not on this match
    lena = changed(KARLSRUHE, participant="lena")
    with pytest.raises(domain.NotASide):
        usecases.answer_match(uow, jonas, match.id, True, None, clock)
    with pytest.raises(domain.NotASide):
        usecases.answer_match(uow, lena, match.id, True, "jonas", clock)  # in another's name
    answered = usecases.answer_match(uow, lena, match.id, True, None, clock)
    assert uow.matches.events("match.accepted")[0].payload["participant_id"] == "lena" and answered.id == match.id
    usecases.answer_match(uow, KRASNODAR, match.id, True, "anna", clock)
    usecases.form_project(uow, match.id, "evt-confirmed", clock)
    [project] = uow.projects.docs.values()
    query = {"limit": 10}
    assert [p["_id"] for p in usecases.list_projects(uow, lena, query)[0]] == [project["_id"]]
    assert usecases.list_projects(uow, jonas, query)[0] == []
    assert len(usecases.list_projects(uow, KARLSRUHE, query)[0]) == 1, "a city key sees its partnerships' projects"
    outside = usecases.read_project(uow, jonas, project["_id"])
    assert outside["is_member"] is False and outside["members"] == [] and outside["member_count"] == 2, \
        "a participant of its cities who is not a member sees what it is about (to ask to join), not who is in it"
    with pytest.raises(NotFound):
        usecases.list_messages(uow, jonas, project["_id"], 10, None)


# --- coordinators steer the workshop ----------------------------------------------------------------------

def open_ideas(uow: UnitOfWork, **status: str) -> None:
    uow.models.partnerships_["karlsruhe-krasnodar"] = {"cities": ["karlsruhe", "krasnodar"]}
    for idea in ("idea-de", "idea-ru"):
        uow.models.ideas_[idea].update(_id=idea, partnerships=["karlsruhe-krasnodar"], status=status.get(idea, "open"))


def test_a_coordinator_pairs_two_ideas_by_hand_and_the_note_comes_first(uow, clock):
    open_ideas(uow)
    match = usecases.pair_ideas(uow, FakeEngine(), KARLSRUHE, ["idea-de", "idea-ru"], "Beide wollen Gärten",
                                clock)
    assert match.get("kind") == "coordinator" and match.get("status") == "proposed"
    assert match.get("reasons")[0]["text"]["ru"] == "Предложение координаторов: Beide wollen Gärten"
    [event] = uow.matches.published
    assert event.type == "match.proposed" and event.payload["kind"] == "coordinator"
    with pytest.raises(usecases.PairExists) as again:
        usecases.pair_ideas(uow, FakeEngine(), KRASNODAR, ["idea-ru", "idea-de"], "", clock)
    assert again.value.match_id == match.id


@pytest.mark.parametrize(("who", "ideas", "status", "refused"), [
    (KARLSRUHE, ["idea-de", "idea-de"], {}, ValidationError),
    (KARLSRUHE, ["idea-de", "idea-nope"], {}, ValidationError),
    (KARLSRUHE, ["idea-de", "idea-ru"], {"idea-ru": "withdrawn"}, ValidationError),
    (KARLSRUHE, ["idea-de", "idea-ru"], {"idea-de": "in_project", "idea-ru": "in_project"}, ValidationError),
    (NANCY, ["idea-de", "idea-ru"], {}, ValidationError),  # Nancy does not see them: no such ideas for it
])
def test_only_open_ideas_of_two_partner_cities_are_paired(uow, clock, who, ideas, status, refused):
    open_ideas(uow, **status)
    with pytest.raises(refused):
        usecases.pair_ideas(uow, FakeEngine(), who, ideas, "", clock)
    assert uow.matches.published == []


def test_a_coordinator_of_either_side_withdraws_an_open_proposal_with_a_reason(uow, clock):
    match = proposed(uow, clock)
    with pytest.raises(Refused):
        usecases.withdraw_match(uow, replace_participant(KARLSRUHE, "lena"), match.id, "no", clock)
    with pytest.raises(NotFound):
        usecases.withdraw_match(uow, NANCY, match.id, "no", clock)
    withdrawn = usecases.withdraw_match(uow, KRASNODAR, match.id, "Die Themen passen doch nicht", clock)
    assert withdrawn.get("status") == "withdrawn" and withdrawn.get("closed_reason") == "Die Themen passen doch nicht"
    event = uow.matches.published[-1]
    assert event.type == "match.withdrawn" and event.payload["city"] == "krasnodar"
    with pytest.raises(domain.RuleViolation, match="only an open proposal"):
        usecases.withdraw_match(uow, KARLSRUHE, match.id, "again", clock)


def replace_participant(who: Caller, participant: str) -> Caller:
    from dataclasses import replace

    return replace(who, participant=participant)


# --- settings that take effect ------------------------------------------------------------------------------

def test_changed_settings_match_the_partnership_again_through_the_bus(uow, clock):
    engine = FakeEngine()
    open_ideas(uow)
    kept = proposed(uow, clock)  # the rules still make this one
    stale_fields = {"pair": domain.pair_key("idea", "idea-de", "idea-old"), "sides": [
        {"city": "karlsruhe", "idea_id": "idea-de", "author_id": "lena", "title": "Stadtgarten"},
        {"city": "krasnodar", "idea_id": "idea-old", "author_id": None, "title": "Старое"}]}
    stale = proposed(uow, clock, **stale_fields)  # made under the old settings, unanswered
    answered = proposed(uow, clock, pair=domain.pair_key("idea", "idea-x", "idea-y"))
    usecases.answer_match(uow, KARLSRUHE, answered.id, True, None, clock)  # one side said yes: it stays
    new = a_proposal(pair=domain.pair_key("idea", "idea-de", "idea-new"))
    engine.for_idea = {"idea-de": [a_proposal(), new]}

    settings = usecases.change_settings(uow, ADMIN, "karlsruhe-krasnodar", {"floor": 0.3}, clock)
    assert settings.floor == 0.3
    [requested] = [e for e in uow.runs.published if e.type == "matching.run_requested"]
    assert usecases.last_run(uow, "karlsruhe-krasnodar")["status"] == "requested", "not run in the request"

    clock.advance(minutes=1)
    handlers.run_requested(parse_event(new_event(requested.type, requested.payload, producer="matching")),
                           uow, engine, clock)  # type: ignore[arg-type]
    run = usecases.last_run(uow, "karlsruhe-krasnodar")
    assert (run["status"], run["ideas_seen"], run["proposals_added"], run["proposals_withdrawn"]) == \
        ("finished", 2, 1, 1)
    assert run["started_at"] == run["finished_at"] == clock()
    assert uow.matches.get(kept.id).get("status") == "proposed", "still made by the rules: kept, not twice"
    assert uow.matches.get(stale.id).get("status") == "withdrawn"
    assert uow.matches.get(stale.id).get("closed_reason") == domain.NO_LONGER_PROPOSED
    assert uow.matches.get(answered.id).get("status") == "accepted", "answered: it stays"
    again = usecases.run_matching(uow, engine, run["_id"], clock)  # the event delivered again
    assert again.get("proposals_added") == 1 and len(uow.matches.docs) == 4


def test_a_withdrawn_pair_is_proposed_again_when_the_rules_make_it_again_or_a_coordinator_pairs_it(uow, clock):
    engine = FakeEngine()
    open_ideas(uow)
    match = proposed(uow, clock)
    engine.for_idea = {}
    usecases.change_settings(uow, ADMIN, "karlsruhe-krasnodar", {"threshold": 0.99, "floor": 0.99}, clock)
    first = usecases.last_run(uow, "karlsruhe-krasnodar")
    usecases.run_matching(uow, engine, first["_id"], clock)
    assert uow.matches.get(match.id).get("status") == "withdrawn"

    engine.for_idea = {"idea-de": [a_proposal()]}  # back to settings that make it
    clock.advance(minutes=5)
    usecases.change_settings(uow, ADMIN, "karlsruhe-krasnodar", {"threshold": 0.65, "floor": 0.4}, clock)
    second = usecases.last_run(uow, "karlsruhe-krasnodar")
    run = usecases.run_matching(uow, engine, second["_id"], clock)
    again = uow.matches.get(match.id)
    assert run.get("proposals_added") == 1 and again.get("status") == "proposed" and again.get("closed_reason") is None
    assert again.get("expires_at") == clock() + timedelta(days=21) and len(uow.matches.docs) == 1
    assert uow.matches.published[-1].type == "match.proposed" and uow.matches.published[-1].payload["version"] == 3

    usecases.withdraw_match(uow, KARLSRUHE, match.id, "Doch nicht", clock)
    usecases.change_settings(uow, ADMIN, "karlsruhe-krasnodar", {"top_k": 4}, clock)
    usecases.run_matching(uow, engine, usecases.last_run(uow, "karlsruhe-krasnodar")["_id"], clock)
    assert uow.matches.get(match.id).get("status") == "withdrawn", "a coordinator's withdrawal is not undone by a run"
    paired = usecases.pair_ideas(uow, engine, KRASNODAR, ["idea-ru", "idea-de"], "Nochmals", clock)
    assert paired.id == match.id and paired.get("kind") == "coordinator" and paired.get("status") == "proposed"
    usecases.answer_match(uow, KARLSRUHE, match.id, False, None, clock)
    with pytest.raises(usecases.PairExists, match="declined"):
        usecases.pair_ideas(uow, engine, KRASNODAR, ["idea-ru", "idea-de"], "", clock)


def test_a_withdrawal_says_why(uow, clock):
    match = proposed(uow, clock)
    with pytest.raises(ValidationError):
        usecases.withdraw_match(uow, KARLSRUHE, match.id, "   ", clock)
    assert uow.matches.get(match.id).get("status") == "proposed"


def test_an_idea_whose_partnership_is_not_known_here_yet_has_no_candidates_yet(uow):
    from matching.engine import NotReady

    class Early(FakeEngine):
        def partners_of(self, idea: Any) -> list[tuple[str, str]]:
            raise NotReady("partnership karlsruhe-krasnodar is not known here yet")

    uow.models.ideas_["idea-de"].update(_id="idea-de", vec=b"v", vec_scale=1.0, partnerships=["karlsruhe-krasnodar"])
    assert usecases.candidates(uow, Early(), KARLSRUHE, "idea-de", 10) == []
    with pytest.raises(NotFound):
        usecases.candidates(uow, Early(), NANCY, "idea-de", 10)


def test_an_idea_snapshot_made_before_its_author_was_erased_is_kept_without_them(uow, clock):
    """The ideas service moved Lena's idea into a project (idea.updated, naming her), then she was erased: the
    snapshot arriving after the erasure must not bring her name back."""
    usecases.participant_erased(uow, FakeEngine(), "lena", clock)
    usecases.take_ideas(uow, FakeEngine(), [idea_event("idea-late", "karlsruhe", "Stadtgarten", version=3,
                                                       status="in_project")], clock)
    assert uow.models.idea("idea-late")["author_id"] is None
