"""The events the ideas service consumes, each a thin call of a use case. Every effect happens once per event."""

from __future__ import annotations

from ideas import domain, usecases
from ideas.repository import UnitOfWork
from services.contract import Event
from services.registry import Registry


def project_formed(event: Event, uow: UnitOfWork, clock: usecases.Clock) -> None:
    usecases.move_ideas(uow, event.payload["idea_ids"], domain.IN_PROJECT, because_of=event.id,
                        event_type=event.type, clock=clock)


def member_joined(event: Event, uow: UnitOfWork, clock: usecases.Clock) -> None:
    """A partner idea joined a project through another confirmed match: it is in that project now."""
    idea_id = event.payload.get("idea_id")
    if idea_id:
        usecases.move_ideas(uow, [idea_id], domain.IN_PROJECT, because_of=event.id, event_type=event.type,
                            clock=clock)


def match_confirmed(event: Event, uow: UnitOfWork, clock: usecases.Clock) -> None:
    usecases.move_ideas(uow, [s["idea_id"] for s in event.payload["sides"] if s.get("idea_id")], domain.MATCHED,
                        because_of=event.id, event_type=event.type, clock=clock)


def participant_erased(event: Event, uow: UnitOfWork) -> None:
    usecases.forget_author(uow, event.payload["participant_id"])


EVENT_HANDLERS: Registry = {
    "project.formed": [project_formed],
    "project.member_joined": [member_joined],
    "match.confirmed": [match_confirmed],
    "participant.erased": [participant_erased],
}
