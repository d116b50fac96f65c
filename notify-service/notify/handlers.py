"""The events the notify service consumes, each a thin call of a use case: who must know, over which channels, in
which language; which webhooks get the event. Every effect happens once per event (the notification's key)."""

from __future__ import annotations

from notify import domain, usecases
from notify.repository import Repository
from services.contract import Event
from services.registry import Entry, Registry


def person_changed(event: Event, repo: Repository) -> None:
    usecases.person_changed(repo, event.payload)


def person_erased(event: Event, repo: Repository) -> None:
    usecases.person_erased(repo, event.payload["participant_id"])


def city_registered(event: Event, repo: Repository) -> None:
    p = event.payload
    usecases.city_registered(repo, p["city"], p["name"], p["language"], p.get("names"), p.get("timezone"))


def notify_people(event: Event, repo: Repository, letterhead: usecases.Letterhead) -> None:
    usecases.notify_people(repo, letterhead, event)


def notify_webhooks(event: Event, repo: Repository) -> None:
    usecases.notify_webhooks(repo, event)


def _table() -> dict[str, list[Entry]]:
    handlers: dict[str, list[Entry]] = {
        "participant.registered": [person_changed],
        "participant.updated": [person_changed],
        "participant.erased": [person_erased],
        "city.registered": [city_registered],
        "city.updated": [city_registered],
    }
    for event_type in domain.PEOPLE_EVENTS:
        handlers.setdefault(event_type, []).append(notify_people)
    for event_type in domain.WEBHOOK_EVENTS:
        handlers.setdefault(event_type, []).append(notify_webhooks)
    # Those are bound only while a webhook asks for them (SPEC.optional_events): no other handler may need them.
    for event_type in domain.WEBHOOK_ONLY_EVENTS:
        if handlers[event_type] != [notify_webhooks]:
            raise RuntimeError(f"{event_type} is delivered only while a webhook wants it, but another handler "
                               "needs it: take it out of domain.WEBHOOK_ONLY_EVENTS")
    return handlers


EVENT_HANDLERS: Registry = _table()
