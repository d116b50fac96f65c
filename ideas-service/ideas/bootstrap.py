"""The ideas service put together: its spec, its wiring (`bootstrap`), the web app (`ideas web`) and the worker.

The one place that knows the concrete parts: the store's unit of work, the clock, the relay. Tests call
`bootstrap(settings, clock=...)` or the use cases with fakes (tests/unit/fakes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from ideas import api, repository, usecases
from ideas.handlers import EVENT_HANDLERS
from ideas.translation import LibreTranslate, Translator
from services import registry
from services.config import Settings
from services.runtime import Runtime, ServiceSpec, Wiring
from services.store import now

ROUND_SWEEP = 30.0  # seconds between looks at whether a round's dates moved it on (round.phase_changed)

SPEC = ServiceSpec(
    name="ideas",
    indexes=repository.INDEXES,
    outbox_collections=(repository.IDEAS, repository.PARTICIPANTS, repository.ROUNDS),
    event_types=registry.event_types(EVENT_HANDLERS),
    docs=api.DOCS,
)


@dataclass
class IdeasService:
    runtime: Runtime
    uow: repository.UnitOfWork
    clock: usecases.Clock
    translations: repository.TranslationCache
    translator: Translator | None  # None: translation is off (no TWINCITY_TRANSLATE_URL)


def bootstrap(settings: Settings | None = None, *, clock: usecases.Clock = now) -> IdeasService:
    runtime = Runtime(SPEC, settings)
    uow = repository.unit_of_work(runtime.db, on_events=runtime.relay.kick)
    url = runtime.settings.translate_url
    service = IdeasService(runtime, uow, clock, repository.TranslationCache(runtime.db),
                           LibreTranslate(url, runtime.settings.translate_key) if url else None)
    runtime.wire(Wiring(handlers=registry.bind(EVENT_HANDLERS, uow=uow, clock=clock), blueprints=[api.bp],
                        periodic=[(ROUND_SWEEP, lambda: usecases.follow_rounds(uow, clock))],
                        extension_name=api.EXTENSION, extension=service))
    return service


def create_app(settings: Settings | None = None) -> Flask:
    return bootstrap(settings).runtime.create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    bootstrap(settings).runtime.run_worker(concurrency)
