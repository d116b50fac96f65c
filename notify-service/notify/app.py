"""Wiring of the notify service: its spec, the web app (`notify web`) and the worker (`notify worker`)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask

from notify import api, domain, handlers, repository
from notify.sender import Sender
from services.config import Settings
from services.runtime import Runtime, ServiceSpec

log = logging.getLogger(__name__)


def _secret(runtime: Runtime) -> str:
    if "secret" not in runtime.extras:
        secret = runtime.settings.notify_secret
        if not secret:
            secret = secrets.token_hex(32)
            if not runtime.settings.embedded:
                log.warning("NOTIFY_SECRET is not set: unsubscribe links made by one process will not work in "
                            "another; set it to the same random value for every notify process")
        runtime.extras["secret"] = secret
    return runtime.extras["secret"]


def _repo(runtime: Runtime) -> repository.Repository:
    return repository.Repository(runtime.db, on_events=runtime.relay.kick)


def _sender(runtime: Runtime) -> Sender:
    if "sender" not in runtime.extras:
        runtime.extras["sender"] = Sender(_repo(runtime), runtime.settings, _secret(runtime))
    return runtime.extras["sender"]


def _digests(runtime: Runtime) -> int:
    """Send the digests of every finished day (UTC) that still has e-mails waiting."""
    today = datetime.now(UTC).date().isoformat()
    days = [d for d in runtime.db[repository.NOTIFICATIONS].distinct("day", {"status": "digest"}) if d < today]
    return sum(_sender(runtime).send_digests(day) for day in sorted(days))


def _periodic(runtime: Runtime) -> list[tuple[float, Callable[[], object]]]:
    sender = _sender(runtime)
    return [
        # E-mails and webhooks on threads of their own: neither ever waits for the other (Sender's passes).
        # The methods are looked up on every run (not bound once), so that a test can take a channel "down" by
        # replacing them.
        (runtime.settings.notify_send_interval, lambda: sender.send_emails()),
        (runtime.settings.notify_send_interval, lambda: sender.send_webhooks()),
        (300.0, lambda: _digests(runtime)),
    ]


SPEC = ServiceSpec(
    name="notify",
    indexes=repository.INDEXES,
    outbox_collections=(repository.NOTIFICATIONS, repository.DELIVERIES),
    handlers=lambda runtime: handlers.build(handlers.Notifier(_repo(runtime), runtime.settings, _secret(runtime))),
    blueprints=lambda runtime: [api.build(_repo(runtime), runtime.settings, _secret(runtime),
                                          bindings=lambda: runtime.changing_bindings())],
    docs=api.DOCS,
    periodic=lambda runtime: _periodic(runtime),
    # Every idea event would reach notify for webhooks alone; the broker delivers them only while asked for.
    optional_events=domain.WEBHOOK_ONLY_EVENTS,
    wanted_events=lambda runtime: _repo(runtime).subscribed_events(),
)


def create_app(settings: Settings | None = None) -> Flask:
    return Runtime(SPEC, settings).create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    Runtime(SPEC, settings).run_worker(concurrency)
