"""The matching service put together: its spec, its wiring (`bootstrap`), the web app and the worker.

One engine (one index, one loaded model) serves every consumer thread of the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from matching import api, repository
from matching.engine import Engine, expire_due
from matching.handlers import EVENT_HANDLERS
from matching.vectors import Encoder, hold_blas_to_one_thread
from services import registry
from services.config import Settings
from services.runtime import Runtime, ServiceSpec, Wiring

SPEC = ServiceSpec(
    name="matching",
    indexes=repository.INDEXES,
    outbox_collections=(repository.MATCHES, repository.PROJECTS),
    event_types=registry.event_types(EVENT_HANDLERS),
    docs=api.DOCS,
)


@dataclass
class MatchingService:
    runtime: Runtime
    repo: repository.Repository
    engine: Engine


def bootstrap(settings: Settings | None = None) -> MatchingService:
    runtime = Runtime(SPEC, settings)
    repo = repository.Repository(runtime.db, on_events=runtime.relay.kick)
    hold_blas_to_one_thread()
    engine = Engine(repo, Encoder(threads=1), runtime.settings.sync_overlap)
    service = MatchingService(runtime, repo, engine)
    runtime.wire(Wiring(
        handlers=registry.bind(EVENT_HANDLERS, repo=repo, engine=engine),
        blueprints=[api.build(repo)],
        periodic=[(runtime.settings.expiry_sweep, lambda: expire_due(repo))],
        extension_name="twincity.matching", extension=service,
    ))
    return service


def create_app(settings: Settings | None = None) -> Flask:
    return bootstrap(settings).runtime.create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    bootstrap(settings).runtime.run_worker(concurrency)
