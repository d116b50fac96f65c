"""The correlation of the work in hand (a web request or an event being handled), for events and logs."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
causation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("causation_id", default=None)
event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)


def new_id() -> str:
    return str(uuid.uuid4())


@contextmanager
def correlated(correlation: str | None, causation: str | None = None, event: str | None = None) -> Iterator[None]:
    """Run a block as part of one correlated piece of work (restores the previous context after)."""
    tokens = (
        correlation_id.set(correlation),
        causation_id.set(causation),
        event_id.set(event),
    )
    try:
        yield
    finally:
        event_id.reset(tokens[2])
        causation_id.reset(tokens[1])
        correlation_id.reset(tokens[0])
