"""Static handler tables: which use case each event type calls, declared at import and wired once at start.

A service's handlers.py ends with `EVENT_HANDLERS = {"project.formed": [project_formed], ...}`: plain functions
that take the event and, by the names of their other parameters, the dependencies they use (`uow`, `clock`,
`engine`...). `bind(EVENT_HANDLERS, uow=..., clock=...)` gives the table the bus consumes, each handler a call with
its dependencies filled in; a handler that asks for a dependency nobody gave fails at start, not at its first event.
`Batched(handler)` marks a handler that takes a list of the events waiting in the queue (bus.batched).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services import bus
from services.contract import Event


@dataclass(frozen=True)
class Batched:
    """A handler of several events at once: `handle(events, **dependencies)`."""

    handle: Callable[..., None]


Entry = Callable[..., None] | Batched
Registry = Mapping[str, Sequence[Entry]]


def _dependencies_of(handler: Callable[..., Any], available: Mapping[str, Any]) -> dict[str, Any]:
    names = list(inspect.signature(handler).parameters)[1:]  # the first is the event (or the events)
    missing = [name for name in names if name not in available]
    if missing:
        raise TypeError(f"{handler.__module__}.{handler.__qualname__} needs {', '.join(missing)}, which the "
                        f"bootstrap does not give (it gives {', '.join(sorted(available)) or 'nothing'})")
    return {name: available[name] for name in names}


def bind(registry: Registry, **dependencies: Any) -> dict[str, list[bus.Handler]]:
    """The registry with each handler's dependencies filled in (one bound handler per function: a batched handler
    that serves several event types stays one, so the bus batches their events together)."""
    bound: dict[int, bus.Handler] = {}

    def one(entry: Entry) -> bus.Handler:
        if id(entry) not in bound:
            if isinstance(entry, Batched):
                many = functools.partial(entry.handle, **_dependencies_of(entry.handle, dependencies))
                bound[id(entry)] = bus.batched(many)
            else:
                handler = functools.partial(entry, **_dependencies_of(entry, dependencies))
                bound[id(entry)] = _named(handler, entry)
        return bound[id(entry)]

    return {event_type: [one(entry) for entry in entries] for event_type, entries in registry.items()}


def _named(handler: functools.partial[None], original: Callable[..., None]) -> bus.Handler:
    def call(event: Event) -> None:
        handler(event)

    call.__name__ = call.__qualname__ = original.__name__
    call.__module__ = original.__module__
    return call


def event_types(registry: Registry) -> tuple[str, ...]:
    """The event types a service consumes (its queue's bindings), read from its table without wiring anything."""
    return tuple(sorted(registry))
