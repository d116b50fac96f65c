"""Rounds of a partnership's lab in the ideas service, against its fakes: dates, phases, moving on, and which
round a new idea joins (issue 21)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from marshmallow import ValidationError

from ideas import domain, usecases
from ideas.repository import UnitOfWork
from services.aggregate import Conflict
from services.errors import Forbidden
from services.store import NotFound
from services.tenancy import Caller
from tests.unit.fakes import Clock
from tests.unit.test_ideas_usecases import ADMIN, KARLSRUHE, KRASNODAR, make_uow

PID = "karlsruhe-krasnodar"
NANCY = Caller(city="nancy", scopes=("read", "write"), visible_cities=("nancy",))
LAB = {"name": "Twin City Lab 2027", "collect_until": date(2026, 12, 10),
       "workshop_at": datetime(2026, 12, 12, 9, 0, tzinfo=UTC), "projects_from": date(2026, 12, 14),
       "timezone": "Europe/Berlin"}
IDEA = {"title": "Radtour an den Rhein", "description": "Eine gemeinsame Radtour.", "theme": "ecology-health"}


@pytest.fixture
def uow() -> UnitOfWork:
    return make_uow()


@pytest.fixture
def clock() -> Clock:
    return Clock()  # 2026-12-02 09:00 UTC


def test_a_city_of_the_partnership_opens_a_round_that_collects_until_its_day_ends(uow, clock):
    opened = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    assert opened.phase_at(clock()) == "collecting" and opened.get("cities") == ["karlsruhe", "krasnodar"]
    [event] = uow.rounds.events()
    assert event.type == "round.opened" and event.payload["collect_until"] == "2026-12-10"
    assert event.payload["phase"] == "collecting" and event.partnership == PID
    # the 10th ends at midnight in Berlin: 23:00 UTC
    assert opened.phase_at(datetime(2026, 12, 10, 22, 59, tzinfo=UTC)) == "collecting"
    assert opened.phase_at(datetime(2026, 12, 10, 23, 0, tzinfo=UTC)) == "matching"
    assert opened.phase_at(datetime(2026, 12, 13, 23, 0, tzinfo=UTC)) == "projects"
    assert [r["name"] for r in usecases.list_rounds(uow, KRASNODAR, PID, clock)] == ["Twin City Lab 2027"]


def test_who_may_open_a_round_and_which_dates_are_refused(uow, clock):
    with pytest.raises(NotFound):
        usecases.open_round(uow, NANCY, PID, LAB, clock)
    with pytest.raises(Forbidden):
        usecases.open_round(uow, replace(KARLSRUHE, participant="lena"), PID, LAB, clock)
    with pytest.raises(ValidationError) as early:
        usecases.open_round(uow, KARLSRUHE, PID, {**LAB, "workshop_at": datetime(2026, 12, 10, 12, tzinfo=UTC)},
                            clock)
    assert "after collecting ends" in str(early.value.messages["workshop_at"])
    with pytest.raises(ValidationError):
        usecases.open_round(uow, KARLSRUHE, PID, {**LAB, "projects_from": date(2026, 12, 11)}, clock)
    assert usecases.open_round(uow, ADMIN, PID, LAB, clock).get("partnership") == PID
    with pytest.raises(NotFound):
        usecases.read_round(uow, NANCY, uow.rounds.of_partnerships([PID])[0].id, clock)


def test_a_new_idea_joins_the_current_round_and_a_late_one_is_refused_naming_the_round(uow, clock):
    assert usecases.submit_idea(uow, KARLSRUHE, IDEA, clock).get("round_id") is None, "no round yet: none"
    opened = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    assert usecases.submit_idea(uow, KRASNODAR, IDEA, clock).get("round_id") == opened.id
    clock.at = datetime(2026, 12, 11, 8, 0, tzinfo=UTC)
    with pytest.raises(domain.RuleViolation) as late:
        usecases.submit_idea(uow, KARLSRUHE, {**IDEA, "round_id": opened.id}, clock)
    assert "'Twin City Lab 2027' collected ideas until 2026-12-10" in str(late.value)
    assert "2026-12-12 10:00 Europe/Berlin" in str(late.value)
    assert usecases.submit_idea(uow, KARLSRUHE, IDEA, clock).get("round_id") is None, "after collecting: none"
    with pytest.raises(ValidationError):
        usecases.submit_idea(uow, KARLSRUHE, {**IDEA, "round_id": "round_unknown"}, clock)


def test_an_import_chooses_its_round_by_id_or_name_and_a_late_round_is_that_row_s_error(uow, clock):
    first = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    with pytest.raises(domain.RuleViolation, match="still collects ideas"):
        usecases.open_round(uow, KARLSRUHE, PID, {**LAB, "name": "Zweite Runde"}, clock)
    stored = usecases.import_ideas(uow, KARLSRUHE, [IDEA, IDEA], dry_run=False, clock=clock, round_id=first.id)
    assert {i.get("round_id") for i in stored} == {first.id}
    by_name = usecases.import_ideas(uow, KARLSRUHE, [IDEA], dry_run=False, clock=clock,
                                    round_id="twin city lab 2027")
    assert by_name[0].get("round_id") == first.id, "a workshop's CSV names its round"
    usecases.advance_round(uow, KARLSRUHE, first.id, clock, expected="collecting")
    with pytest.raises(domain.RuleViolation, match="named 'Twin City Lab 2027' already"):
        usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    second = usecases.open_round(uow, KARLSRUHE, PID, {**LAB, "name": "Zweite Runde"}, clock)
    with pytest.raises(usecases.RowErrors) as late:
        usecases.import_ideas(uow, KARLSRUHE, [IDEA, {**IDEA, "round_id": first.id}], dry_run=True, clock=clock)
    assert list(late.value.errors) == ["1"] and "stopped collecting ideas early" in str(late.value.errors["1"])
    assert usecases.submit_idea(uow, KRASNODAR, IDEA, clock).get("round_id") == second.id


def test_a_second_click_does_not_move_a_round_on_twice(uow, clock):
    opened = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    usecases.advance_round(uow, KARLSRUHE, opened.id, clock, expected="collecting")
    with pytest.raises(domain.RuleViolation, match="moved on meanwhile"):
        usecases.advance_round(uow, KRASNODAR, opened.id, clock, expected="collecting")
    assert usecases.read_round(uow, KARLSRUHE, opened.id, clock)["phase"] == "matching"


def test_a_round_moves_on_with_its_dates_and_when_a_coordinator_says_so(uow, clock):
    opened = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    assert usecases.follow_rounds(uow, clock) == 0
    clock.at = datetime(2026, 12, 11, 8, 0, tzinfo=UTC)
    assert usecases.follow_rounds(uow, clock) == 1 and usecases.follow_rounds(uow, clock) == 0
    [changed] = uow.rounds.events("round.phase_changed")
    assert (changed.payload["previous_phase"], changed.payload["phase"]) == ("collecting", "matching")
    assert usecases.advance_round(uow, KRASNODAR, opened.id, clock)["phase"] == "projects"
    assert usecases.advance_round(uow, KARLSRUHE, opened.id, clock)["phase"] == "closed"
    assert [e.type for e in uow.rounds.events()][-3:] == ["round.phase_changed", "round.phase_changed",
                                                          "round.closed"]
    with pytest.raises(domain.RuleViolation, match="is closed"):
        usecases.advance_round(uow, KARLSRUHE, opened.id, clock)
    with pytest.raises(Forbidden):
        usecases.advance_round(uow, replace(KARLSRUHE, participant="lena"), opened.id, clock)


def test_two_days_before_collecting_ends_the_round_reminds_once(uow, clock):
    usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    clock.at = datetime(2026, 12, 8, 22, 0, tzinfo=UTC)  # the 10th ends at 23:00 UTC: 49 h before
    usecases.follow_rounds(uow, clock)
    assert not uow.rounds.events("round.closing_soon")
    clock.at = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)
    usecases.follow_rounds(uow, clock)
    usecases.follow_rounds(uow, clock)
    [reminder] = uow.rounds.events("round.closing_soon")
    assert reminder.payload["cities"] == ["karlsruhe", "krasnodar"] and reminder.payload["phase"] == "collecting"


def test_a_round_is_renamed_or_its_dates_moved_while_it_is_not_closed(uow, clock):
    opened = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    later = {"collect_until": date(2026, 12, 17), "workshop_at": datetime(2026, 12, 19, 9, tzinfo=UTC),
             "projects_from": date(2026, 12, 21)}
    changed = usecases.change_round(uow, KRASNODAR, opened.id, {"name": "Lab 2027", **later, "version": 1}, clock)
    assert (changed["name"], changed["collect_until"], changed["version"]) == ("Lab 2027", "2026-12-17", 2)
    [event] = uow.rounds.events("round.updated")
    assert event.payload["name"] == "Lab 2027" and event.payload["workshop_at"] == "2026-12-19T09:00:00+00:00"
    with pytest.raises(Conflict, match="version 2"):
        usecases.change_round(uow, KARLSRUHE, opened.id, {"name": "x", "version": 1}, clock)
    with pytest.raises(ValidationError) as early:  # checked as when it was opened: a workshop while collecting
        usecases.change_round(uow, KARLSRUHE, opened.id, {"workshop_at": datetime(2026, 12, 15, tzinfo=UTC)}, clock)
    assert "after collecting ends" in str(early.value.messages["workshop_at"])
    with pytest.raises(Forbidden):
        usecases.change_round(uow, replace(KARLSRUHE, participant="lena"), opened.id, {"name": "x"}, clock)
    with pytest.raises(NotFound):
        usecases.change_round(uow, NANCY, opened.id, {"name": "x"}, clock)


def test_a_round_collects_again_when_its_last_day_moves_later_unless_another_round_collects(uow, clock):
    first = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    clock.at = datetime(2026, 12, 11, 8, 0, tzinfo=UTC)  # first stopped collecting yesterday
    assert usecases.follow_rounds(uow, clock) == 1
    second = usecases.open_round(uow, KARLSRUHE, PID, {**LAB, "name": "Nachzügler", "collect_until": date(
        2026, 12, 20), "workshop_at": datetime(2026, 12, 22, 9, tzinfo=UTC), "projects_from": date(2026, 12, 23)},
        clock)
    assert second.phase_at(clock()) == "collecting"
    with pytest.raises(domain.RuleViolation, match="'Nachzügler' still collects"):
        usecases.change_round(uow, KARLSRUHE, first.id, {"collect_until": date(2026, 12, 11)}, clock)
    with pytest.raises(domain.RuleViolation, match="named 'Nachzügler' already"):
        usecases.change_round(uow, KARLSRUHE, first.id, {"name": "nachzügler"}, clock)
    usecases.advance_round(uow, KARLSRUHE, second.id, clock)  # the late round stops collecting
    again = usecases.change_round(uow, KARLSRUHE, first.id, {"collect_until": date(2026, 12, 11)}, clock)
    assert again["phase"] == "collecting"
    assert [e.payload["phase"] for e in uow.rounds.events("round.phase_changed")][-1] == "collecting"
    for _ in range(3):
        usecases.advance_round(uow, KARLSRUHE, first.id, clock)
    with pytest.raises(domain.RuleViolation, match="is closed"):
        usecases.change_round(uow, KARLSRUHE, first.id, {"name": "x"}, clock)


def test_once_its_projects_started_no_new_date_takes_a_round_back_and_a_new_last_day_reminds_again(uow, clock):
    opened = usecases.open_round(uow, KARLSRUHE, PID, LAB, clock)
    clock.at = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)
    usecases.follow_rounds(uow, clock)
    assert len(uow.rounds.events("round.closing_soon")) == 1
    usecases.change_round(uow, KARLSRUHE, opened.id, {"collect_until": date(2026, 12, 11)}, clock)
    clock.at = datetime(2026, 12, 9, 23, 30, tzinfo=UTC)
    usecases.follow_rounds(uow, clock)
    assert len(uow.rounds.events("round.closing_soon")) == 2, "the new last day is announced too"
    clock.at = datetime(2026, 12, 15, 8, 0, tzinfo=UTC)
    assert usecases.read_round(uow, KARLSRUHE, opened.id, clock)["phase"] == "projects"
    with pytest.raises(domain.RuleViolation, match="have started"):
        usecases.change_round(uow, KARLSRUHE, opened.id, {"collect_until": date(2026, 12, 20),
                                                          "workshop_at": datetime(2026, 12, 22, 9, tzinfo=UTC),
                                                          "projects_from": date(2026, 12, 23)}, clock)
    assert usecases.change_round(uow, KARLSRUHE, opened.id, {"name": "Lab 2027"}, clock)["phase"] == "projects"
