"""The events the matching service consumes, each a thin call of a use case. Every effect is safe to repeat."""

from __future__ import annotations

from collections.abc import Sequence

from matching import usecases
from matching.engine import Engine
from matching.repository import UnitOfWork
from services.contract import Event
from services.registry import Batched, Registry


def city_registered(event: Event, uow: UnitOfWork, engine: Engine) -> None:
    p = event.payload
    usecases.city_registered(uow, p["city"], p["name"], p["language"], p.get("names"), p.get("timezone"))
    engine.forget_city_names()


def partnership_changed(event: Event, uow: UnitOfWork) -> None:
    p = event.payload
    usecases.partnership_changed(uow, p["partnership_id"], p["name"], p["cities"], p["themes"])


def ideas_changed(events: Sequence[Event], uow: UnitOfWork, engine: Engine, clock: usecases.Clock) -> None:
    usecases.take_ideas(uow, engine, events, clock)


def idea_withdrawn(event: Event, uow: UnitOfWork, engine: Engine, clock: usecases.Clock) -> None:
    p = event.payload
    usecases.idea_withdrawn(uow, engine, p["idea_id"], p["version"], p["city"], clock)


def participant_changed(event: Event, uow: UnitOfWork, engine: Engine, clock: usecases.Clock) -> None:
    usecases.participant_changed(uow, engine, event.payload, clock)


def participant_erased(event: Event, uow: UnitOfWork, engine: Engine, clock: usecases.Clock) -> None:
    usecases.participant_erased(uow, engine, event.payload["participant_id"], clock)


def run_requested(event: Event, uow: UnitOfWork, engine: Engine, clock: usecases.Clock) -> None:
    usecases.run_matching(uow, engine, event.payload["run_id"], clock)


def match_confirmed(event: Event, uow: UnitOfWork, clock: usecases.Clock) -> None:
    usecases.form_project(uow, event.payload["match_id"], event.id, clock)


IDEAS_CHANGED = Batched(ideas_changed)  # one handler: submitted and updated ideas batch together

EVENT_HANDLERS: Registry = {
    "city.registered": [city_registered],
    "city.updated": [city_registered],
    "partnership.formed": [partnership_changed],
    "partnership.updated": [partnership_changed],
    "idea.submitted": [IDEAS_CHANGED],
    "idea.updated": [IDEAS_CHANGED],
    "idea.withdrawn": [idea_withdrawn],
    "participant.registered": [participant_changed],
    "participant.updated": [participant_changed],
    "participant.erased": [participant_erased],
    "match.confirmed": [match_confirmed],
    "matching.run_requested": [run_requested],
}
