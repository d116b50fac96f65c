"""Where an idea is shown (issue 21): limited to some of its city's partnerships, a partner city outside them does
not see it; a new partnership adopts its cities' open ideas."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from ideas import usecases
from ideas.repository import UnitOfWork
from services.errors import Forbidden
from services.store import NotFound
from services.tenancy import Caller, PartnershipRef
from tests.unit.fakes import Clock
from tests.unit.test_ideas_usecases import THEMES, make_uow

KA_KR = PartnershipRef("karlsruhe-krasnodar", ("karlsruhe", "krasnodar"))
KA_NA = PartnershipRef("karlsruhe-nancy", ("karlsruhe", "nancy"))
KARLSRUHE = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar", "nancy"),
                   partnerships=(KA_KR, KA_NA), default_themes=THEMES)
KRASNODAR = Caller(city="krasnodar", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"),
                   partnerships=(KA_KR,), default_themes=THEMES)
NANCY = Caller(city="nancy", scopes=("read", "write"), visible_cities=("karlsruhe", "nancy"),
               partnerships=(KA_NA,), default_themes=THEMES)
IDEA = {"title": "Queere Jugendtreffs", "description": "Ein Austausch queerer Jugendgruppen.",
        "theme": "leisure-youth-social"}


@pytest.fixture
def uow() -> UnitOfWork:
    return make_uow()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_an_idea_limited_to_one_partnership_is_not_there_for_the_other_partner_city(uow, clock):
    limited = usecases.submit_idea(uow, KARLSRUHE, {**IDEA, "partnerships": ["karlsruhe-nancy"]}, clock)
    everywhere = usecases.submit_idea(uow, KARLSRUHE, {**IDEA, "title": "Stadtradeln"}, clock)
    assert limited.get("partnerships") == ["karlsruhe-nancy"]
    assert everywhere.get("partnerships") == ["karlsruhe-krasnodar", "karlsruhe-nancy"], "default: all"
    seen_by = {who.city: [i["_id"] for i in usecases.list_ideas(uow, who, {"limit": 50})[0]]
               for who in (KARLSRUHE, KRASNODAR, NANCY)}
    assert set(seen_by["karlsruhe"]) == set(seen_by["nancy"]) == {limited.id, everywhere.id}
    assert seen_by["krasnodar"] == [everywhere.id]
    with pytest.raises(NotFound):
        usecases.read_idea(uow, KRASNODAR, limited.id)
    with pytest.raises(ValidationError, match="not a partnership of karlsruhe"):
        usecases.submit_idea(uow, KARLSRUHE, {**IDEA, "partnerships": ["krasnodar-x"]}, clock)


def test_its_author_s_city_limits_it_later_and_the_idea_says_so(uow, clock):
    idea = usecases.submit_idea(uow, KARLSRUHE, IDEA, clock)
    usecases.change_idea(uow, KARLSRUHE, idea.id, {"partnerships": ["karlsruhe-nancy"]}, clock)
    [*_, updated] = uow.ideas.events()
    assert updated.type == "idea.updated" and updated.payload["changed"] == ["partnerships"]
    with pytest.raises(NotFound):
        usecases.read_idea(uow, KRASNODAR, idea.id)


def test_a_new_partnership_adopts_its_cities_open_ideas(uow, clock):
    old = usecases.submit_idea(uow, KRASNODAR, IDEA, clock)  # Krasnodar before it was twinned with Nancy
    kr_na = PartnershipRef("krasnodar-nancy", ("krasnodar", "nancy"))
    krasnodar_now = Caller(city="krasnodar", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar",
                                                                                       "nancy"),
                           partnerships=(KA_KR, kr_na), default_themes=THEMES)
    with pytest.raises(NotFound):
        usecases.adopt_ideas(uow, KARLSRUHE, "krasnodar-nancy", clock)
    assert usecases.adopt_ideas(uow, krasnodar_now, "krasnodar-nancy", clock) == 1
    assert usecases.adopt_ideas(uow, krasnodar_now, "krasnodar-nancy", clock) == 0, "once"
    assert uow.ideas.get(old.id).get("partnerships") == ["karlsruhe-krasnodar", "krasnodar-nancy"]
    with pytest.raises(Forbidden):
        from dataclasses import replace
        usecases.adopt_ideas(uow, replace(krasnodar_now, participant="anna"), "krasnodar-nancy", clock)
