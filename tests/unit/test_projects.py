"""Joint projects against the matching service's fakes: one project per idea, the plan, messages, meetings across
time zones, join requests and erasure (issue 20)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from marshmallow import ValidationError

from matching import domain, usecases
from matching.repository import UnitOfWork
from services.errors import Forbidden
from services.store import NotFound
from tests.unit.fakes import Clock
from tests.unit.test_matching_usecases import ADMIN, KARLSRUHE, KRASNODAR, NANCY, make_uow, proposed

PID = "karlsruhe-krasnodar"


@pytest.fixture
def uow() -> UnitOfWork:
    return make_uow()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def project(uow, clock) -> dict[str, Any]:
    """Lena's Stadtgarten and Anna's Городской сад, confirmed: a project of both cities, Berlin and Moscow time."""
    uow.models.put_city("karlsruhe", "Karlsruhe", "de", {}, "Europe/Berlin")
    uow.models.put_city("krasnodar", "Краснодар", "ru", {}, "Europe/Moscow")
    uow.models.partnerships_[PID] = {"cities": ["karlsruhe", "krasnodar"]}
    uow.models.people.update({
        "lena": {"city": "karlsruhe", "name": "Lena Hoffmann", "email": "lena@example.org", "language": "de"},
        "anna": {"city": "krasnodar", "name": "Анна Смирнова", "email": "anna@example.org", "language": "ru"},
        "oleg": {"city": "krasnodar", "name": "Олег Петров", "email": "oleg@example.org", "language": "ru"},
        "dima": {"city": "krasnodar", "name": "Дмитрий", "email": "dima@example.org", "language": "ru"}})
    match = proposed(uow, clock)
    confirm(uow, clock, match.id)
    [doc] = uow.projects.docs.values()
    return doc


def confirm(uow, clock, match_id: str) -> str:
    usecases.answer_match(uow, KARLSRUHE, match_id, True, None, clock)
    usecases.answer_match(uow, KRASNODAR, match_id, True, None, clock)
    return usecases.form_project(uow, match_id, f"evt-{match_id}", clock)


def test_a_second_partner_idea_joins_the_idea_s_project_once(uow, clock, project):
    uow.models.ideas_["idea-ru2"] = {"city": "krasnodar", "title": "Сад на крыше"}
    sides = [{"city": "karlsruhe", "idea_id": "idea-de", "author_id": "lena", "title": "Stadtgarten",
              "language": "de"},
             {"city": "krasnodar", "idea_id": "idea-ru2", "author_id": "oleg", "title": "Сад на крыше",
              "language": "ru"}]
    second = proposed(uow, clock, pair=domain.pair_key("idea", "idea-de", "idea-ru2"), sides=sides)
    assert confirm(uow, clock, second.id) == project["_id"], "no second project for the same idea"
    assert usecases.form_project(uow, second.id, "again", clock) == project["_id"]
    [doc] = uow.projects.docs.values()
    assert doc["idea_ids"] == ["idea-de", "idea-ru", "idea-ru2"]
    assert [(m["participant_id"], m["role"]) for m in doc["members"]] == [("lena", "author"), ("anna", "author"),
                                                                         ("oleg", "author")]
    [joined] = uow.projects.events("project.member_joined")
    assert joined.payload["participant_id"] == "oleg" and joined.payload["idea_id"] == "idea-ru2"
    assert joined.payload["via"] == "match" and joined.payload["cities"] == ["karlsruhe", "krasnodar"]


def test_an_interest_match_names_the_person_as_a_member(uow, clock):
    uow.models.people["pavel"] = {"city": "krasnodar", "name": "Павел", "email": "p@example.org", "language": "ru"}
    sides = [{"city": "krasnodar", "idea_id": None, "participant_id": "pavel", "author_id": None, "title": None,
              "language": "ru"},
             {"city": "karlsruhe", "idea_id": "idea-de", "author_id": "lena", "participant_id": None,
              "title": "Stadtgarten", "language": "de"}]
    match = proposed(uow, clock, kind="interest", pair=domain.pair_key("interest", "pavel", "idea-de"), sides=sides)
    project_id = confirm(uow, clock, match.id)
    view = usecases.read_project(uow, KARLSRUHE, project_id)
    assert [(m["name"], m["role"], m["email"]) for m in view["members"]] == [
        ("Павел", "interested", "p@example.org"), ("", "author", None)]
    assert view["ideas"] == [{"idea_id": "idea-de", "title": "Stadtgarten", "city": "karlsruhe", "language": None,
                              "author_id": None}]


def test_members_are_named_and_only_keys_of_their_cities_see_addresses(uow, project):
    seen = usecases.read_project(uow, KRASNODAR, project["_id"])
    assert [(m["name"], m["city"], m["language"], m["role"]) for m in seen["members"]] == [
        ("Lena Hoffmann", "karlsruhe", "de", "author"), ("Анна Смирнова", "krasnodar", "ru", "author")]
    assert seen["members"][0]["email"] == "lena@example.org"
    assert all("email" not in m for m in usecases.read_project(uow, ADMIN, project["_id"])["members"])
    with pytest.raises(NotFound):
        usecases.read_project(uow, NANCY, project["_id"])


def test_the_plan_is_changed_by_a_member_city_on_the_version_it_read(uow, clock, project):
    view = usecases.change_project(uow, KRASNODAR, project["_id"], {
        "status": "active", "next_steps": ["Videocall im Januar", "Saatgut tauschen"], "version": 1}, clock)
    assert view["status"] == "active" and view["version"] == 2
    [updated] = uow.projects.events("project.updated")
    assert updated.payload["changed"] == ["status", "next_steps"] and updated.payload["city"] == "krasnodar"
    with pytest.raises(domain.RuleViolation, match="version 2, not 1"):
        usecases.change_project(uow, KARLSRUHE, project["_id"], {"summary": "x", "version": 1}, clock)
    usecases.change_project(uow, KARLSRUHE, project["_id"], {"status": "active"}, clock)
    assert len(uow.projects.events("project.updated")) == 1, "nothing changed: no event"
    with pytest.raises(Forbidden):
        usecases.change_project(uow, ADMIN, project["_id"], {"status": "done"}, clock)
    with pytest.raises(NotFound):
        usecases.change_project(uow, NANCY, project["_id"], {"status": "done"}, clock)
    with pytest.raises(NotFound):
        usecases.change_project(uow, replace(KARLSRUHE, participant="jonas"), project["_id"], {"status": "done"},
                                clock)


def test_members_write_to_each_other_and_nobody_else_reads_it(uow, clock, project):
    first = usecases.post_message(uow, KARLSRUHE, project["_id"], "lena", "Wann passt euch ein Videocall?", clock)
    assert first["author_name"] == "Lena Hoffmann" and first["city"] == "karlsruhe"
    clock.advance(minutes=5)
    usecases.post_message(uow, replace(KRASNODAR, participant="anna"), project["_id"], "anna", "В четверг!", clock)
    with pytest.raises(ValidationError, match="not a member of this project in karlsruhe"):
        usecases.post_message(uow, KARLSRUHE, project["_id"], "anna", "in Annas Namen", clock)
    with pytest.raises(ValidationError):
        usecases.post_message(uow, replace(KARLSRUHE, participant="lena"), project["_id"], "jonas", "x", clock)
    page, cursor = usecases.list_messages(uow, KRASNODAR, project["_id"], 1, None)
    assert [m["text"] for m in page] == ["Wann passt euch ein Videocall?"] and cursor == page[0]["_id"]
    rest, end = usecases.list_messages(uow, KRASNODAR, project["_id"], 1, cursor)
    assert [m["author_name"] for m in rest] == ["Анна Смирнова"] and end is None
    [posted, _] = uow.messages.events("project.message_posted")
    assert posted.payload["author_id"] == "lena" and [m["participant_id"] for m in posted.payload["members"]] == [
        "lena", "anna"]
    with pytest.raises(NotFound):
        usecases.list_messages(uow, NANCY, project["_id"], 10, None)
    with pytest.raises(Forbidden):
        usecases.list_messages(uow, ADMIN, project["_id"], 10, None)


def test_a_meeting_offered_in_berlin_time_is_set_to_one_of_its_times(uow, clock, project):
    meeting = usecases.propose_meeting(uow, KARLSRUHE, project["_id"], {
        "proposer_id": "lena", "title": "Kennenlernen", "duration_minutes": 60,
        "slots": ["2026-12-10T18:00", "2026-12-11T09:30:00+01:00"]}, clock)
    starts = [s["start"].isoformat() for s in meeting["slots"]]
    assert starts == ["2026-12-10T17:00:00+00:00", "2026-12-11T08:30:00+00:00"], "read in Karlsruhe's zone"
    # Anna answers in Moscow time: 20:00 there is 18:00 in Berlin.
    answered = usecases.answer_meeting(uow, KRASNODAR, meeting["id"], "anna", ["2026-12-10T20:00"], clock)
    assert answered["slots"][0]["suits"] == ["lena", "anna"] and answered["slots"][1]["suits"] == ["lena"], \
        "the proposer's times suit the proposer"
    with pytest.raises(ValidationError, match="was not offered"):
        usecases.answer_meeting(uow, KRASNODAR, meeting["id"], "anna", ["2026-12-10T21:00"], clock)
    with pytest.raises(ValidationError, match="not offered"):
        usecases.schedule_meeting(uow, KRASNODAR, meeting["id"], "2026-12-12T10:00:00Z", clock)
    scheduled = usecases.schedule_meeting(uow, KRASNODAR, meeting["id"], "2026-12-10T17:00:00Z", clock)
    assert scheduled["status"] == "scheduled" and scheduled["start"].isoformat() == "2026-12-10T17:00:00+00:00"
    [event] = uow.projects.events("meeting.scheduled")
    assert event.payload["start"] == "2026-12-10T17:00:00+00:00" and event.payload["duration_minutes"] == 60
    assert event.payload["meeting_title"] == "Kennenlernen" and event.payload["sequence"] == 0
    assert usecases.read_meeting(uow, KARLSRUHE, meeting["id"])["status"] == "scheduled"
    usecases.schedule_meeting(uow, KARLSRUHE, meeting["id"], "2026-12-10T18:00", clock)  # the same time, Berlin's
    assert len(uow.projects.events("meeting.scheduled")) == 1, "set to that time already: no second invitation"
    assert usecases.read_project(uow, KARLSRUHE, project["_id"])["version"] == 1, "meetings do not move the plan"


@pytest.mark.parametrize(("data", "field", "why"), [
    ({"slots": ["2026-12-01T10:00:00+01:00"]}, "slots", "in the past"),
    ({"slots": ["tomorrow at ten"]}, "slots", "not a date and time"),
    ({"slots": ["2026-12-10T18:00"], "timezone": "Europe/Karlsruhe"}, "timezone", "unknown time zone"),
    ({"proposer_id": "anna"}, "proposer_id", "not a member of this project in karlsruhe"),
    ({"slots": ["9999-12-31T23:59"]}, "slots", "more than 730 days ahead"),
    ({"slots": ["2027-03-28T02:30"]}, "slots", "does not exist in Europe/Berlin"),
])
def test_a_meeting_that_cannot_be_is_refused_with_the_field_and_why(uow, clock, project, data, field, why):
    body = {"proposer_id": "lena", "title": "Call", "duration_minutes": 30, "slots": ["2026-12-10T18:00"], **data}
    with pytest.raises(ValidationError) as refused:
        usecases.propose_meeting(uow, KARLSRUHE, project["_id"], body, clock)
    assert why in str(refused.value.messages[field])
    assert not uow.projects.events("meeting.proposed"), "nothing kept"


def test_a_person_of_a_partner_city_asks_to_join_and_is_answered(uow, clock, project):
    request = usecases.request_join(uow, KRASNODAR, project["_id"], "dima", "Я садовник", clock)
    with pytest.raises(domain.RuleViolation, match="asked to join already"):
        usecases.request_join(uow, KRASNODAR, project["_id"], "dima", "ещё раз", clock)
    with pytest.raises(domain.RuleViolation, match="member of this project already"):
        usecases.request_join(uow, KRASNODAR, project["_id"], "anna", "", clock)
    with pytest.raises(ValidationError):
        usecases.request_join(uow, KARLSRUHE, project["_id"], "dima", "", clock)  # dima is not of Karlsruhe
    assert usecases.read_project(uow, KARLSRUHE, project["_id"])["join_requests"][0]["name"] == "Дмитрий"
    answered = usecases.answer_join(uow, KARLSRUHE, request["id"], True, clock)
    assert answered["status"] == "accepted" and answered["by_city"] == "karlsruhe"
    assert [e.type for e in uow.projects.events()][-3:] == ["project.join_requested", "project.member_joined",
                                                            "project.join_answered"]
    members = usecases.read_project(uow, KARLSRUHE, project["_id"])["members"]
    assert [(m["participant_id"], m["role"]) for m in members][-1] == ("dima", "joined")
    with pytest.raises(domain.RuleViolation, match="accepted already"):
        usecases.answer_join(uow, KARLSRUHE, request["id"], False, clock)


def test_an_erased_member_leaves_with_their_answers_and_messages_and_the_project_goes_on(uow, clock, project):
    meeting = usecases.propose_meeting(uow, KRASNODAR, project["_id"], {
        "proposer_id": "anna", "title": "Созвон", "duration_minutes": 45, "slots": ["2026-12-10T20:00"]}, clock)
    usecases.answer_meeting(uow, KARLSRUHE, meeting["id"], "lena", ["2026-12-10T18:00"], clock)
    usecases.post_message(uow, KARLSRUHE, project["_id"], "lena", "Ich bin Lena", clock)
    usecases.participant_erased(uow, type("E", (), {"sync": lambda self: None})(), "lena", clock)
    view = usecases.read_project(uow, KRASNODAR, project["_id"])
    assert [m["participant_id"] for m in view["members"]] == ["anna"]
    assert [a["participant_id"] for a in view["meetings"][0]["answers"]] == ["anna"]
    assert view["meetings"][0]["proposer_id"] == "anna"
    [message] = usecases.list_messages(uow, KRASNODAR, project["_id"], 10, None)[0]
    assert message["text"] == "" and message["author_id"] is None
    assert "lena" not in repr(uow.projects.docs), "no trace of her in the project"
