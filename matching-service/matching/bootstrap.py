"""The matching service put together: its spec, its wiring (`bootstrap`), the web app and the worker.

One engine (one index, one loaded model) serves every consumer thread of the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from matching import api, repository, usecases
from matching.engine import Engine
from matching.handlers import EVENT_HANDLERS
from matching.vectors import Encoder, hold_blas_to_one_thread
from services import registry
from services.config import Settings
from services.runtime import Runtime, ServiceSpec, Wiring
from services.store import now

SPEC = ServiceSpec(
    name="matching",
    indexes=repository.INDEXES,
    outbox_collections=(repository.MATCHES, repository.PROJECTS, repository.RUNS, repository.MESSAGES),
    event_types=registry.event_types(EVENT_HANDLERS),
    docs=api.DOCS,
)


@dataclass
class MatchingService:
    runtime: Runtime
    uow: repository.UnitOfWork
    engine: Engine
    clock: usecases.Clock

    @property
    def repo(self) -> repository.ReadModels:
        return self.uow.models


def bootstrap(settings: Settings | None = None, *, clock: usecases.Clock = now) -> MatchingService:
    runtime = Runtime(SPEC, settings)
    uow = repository.unit_of_work(runtime.db, on_events=runtime.relay.kick)
    hold_blas_to_one_thread()
    engine = Engine(uow.models, Encoder(threads=1), runtime.settings.sync_overlap)
    service = MatchingService(runtime, uow, engine, clock)
    runtime.wire(Wiring(
        handlers=registry.bind(EVENT_HANDLERS, uow=uow, engine=engine, clock=clock),
        blueprints=[api.bp],
        periodic=[(runtime.settings.expiry_sweep, lambda: usecases.expire_due(uow, clock))],
        extension_name=api.EXTENSION, extension=service,
    ))
    return service


def create_app(settings: Settings | None = None) -> Flask:
    return bootstrap(settings).runtime.create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    bootstrap(settings).runtime.run_worker(concurrency)
