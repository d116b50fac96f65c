"""Wiring of the matching service: its spec, the web app (`matching web`) and the worker (`matching worker`)."""

from __future__ import annotations

from flask import Flask

from matching import api, handlers, repository
from matching.engine import Engine, expire_due
from matching.vectors import Encoder, hold_blas_to_one_thread
from services.config import Settings
from services.runtime import Runtime, ServiceSpec


def _repo(runtime: Runtime) -> repository.Repository:
    return repository.Repository(runtime.db, on_events=runtime.relay.kick)


def _engine(runtime: Runtime) -> Engine:
    """One engine (and so one index and one loaded model) for all consumer threads of the process."""
    if "engine" not in runtime.extras:
        hold_blas_to_one_thread()
        encoder = Encoder(threads=1)
        runtime.extras["engine"] = Engine(_repo(runtime), encoder, runtime.settings.sync_overlap)
    return runtime.extras["engine"]


SPEC = ServiceSpec(
    name="matching",
    indexes=repository.INDEXES,
    outbox_collections=(repository.MATCHES, repository.PROJECTS),
    handlers=lambda runtime: handlers.build(_repo(runtime), _engine(runtime)),
    blueprints=lambda runtime: [api.build(_repo(runtime))],
    docs=api.DOCS,
    periodic=lambda runtime: [(runtime.settings.expiry_sweep, lambda: expire_due(_repo(runtime)))],
)


def create_app(settings: Settings | None = None) -> Flask:
    return Runtime(SPEC, settings).create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    Runtime(SPEC, settings).run_worker(concurrency)
