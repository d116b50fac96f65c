"""Wiring of the ideas service: its spec, the web app factory (`ideas web`) and the worker (`ideas worker`)."""

from __future__ import annotations

from flask import Flask

from services.config import Settings
from services.runtime import Runtime, ServiceSpec

# The service's rooms (domain, repository, schemas, handlers, api) plug in here as its capability grows.
SPEC = ServiceSpec(name="ideas")


def create_app(settings: Settings | None = None) -> Flask:
    return Runtime(SPEC, settings).create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    Runtime(SPEC, settings).run_worker(concurrency)
