"""The events the ideas service consumes, and what each changes. Every effect happens once per event."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ideas import domain
from ideas.repository import NotFound, Repository
from services.contract import Event

log = logging.getLogger(__name__)


def _move_ideas(repo: Repository, event: Event, idea_ids: Sequence[str], status: str) -> None:
    """Move each idea to `status` where the rules allow it; a stale or impossible move changes nothing."""

    def move(doc: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]] | None:
        if doc["status"] == status or (doc["status"], status) not in domain.TRANSITIONS:
            return None
        return {"status": status}, "idea.updated", ["status"]

    for idea_id in idea_ids:
        try:
            repo.change_idea(idea_id, move, event_id=event.id)
        except NotFound:
            log.warning("%s names idea %s, which this service does not know", event.type, idea_id)


def project_formed(repo: Repository, event: Event) -> None:
    _move_ideas(repo, event, event.payload["idea_ids"], domain.IN_PROJECT)


def match_confirmed(repo: Repository, event: Event) -> None:
    _move_ideas(repo, event, [s["idea_id"] for s in event.payload["sides"] if s.get("idea_id")], domain.MATCHED)


def participant_erased(repo: Repository, event: Event) -> None:
    repo.anonymize_author(event.payload["participant_id"])  # idempotent: a second run matches nothing


def build(repo: Repository) -> Mapping[str, Sequence[Callable[[Event], None]]]:
    bind = lambda handler: lambda event: handler(repo, event)  # noqa: E731
    return {
        "project.formed": [bind(project_formed)],
        "match.confirmed": [bind(match_confirmed)],
        "participant.erased": [bind(participant_erased)],
    }
