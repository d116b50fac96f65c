"""Wiring of the ideas service: its spec, the web app factory (`ideas web`) and the worker (`ideas worker`)."""

from __future__ import annotations

from flask import Flask

from ideas import api, handlers, repository
from services.config import Settings
from services.runtime import Runtime, ServiceSpec


def _repo(runtime: Runtime) -> repository.Repository:
    return repository.Repository(runtime.db, on_events=runtime.relay.kick)


SPEC = ServiceSpec(
    name="ideas",
    indexes=repository.INDEXES,
    outbox_collections=(repository.IDEAS, repository.PARTICIPANTS),
    handlers=lambda runtime: handlers.build(_repo(runtime)),
    blueprints=lambda runtime: [api.build(_repo(runtime))],
    docs=api.DOCS,
)


def create_app(settings: Settings | None = None) -> Flask:
    return Runtime(SPEC, settings).create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    Runtime(SPEC, settings).run_worker(concurrency)
