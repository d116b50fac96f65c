"""The notify service put together: its spec, its wiring (`bootstrap`), the web app and the worker.

The worker sends on threads of its own: e-mails, webhook calls, and once in a while the digests of days past.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask

from notify import api, domain, repository, usecases
from notify.handlers import EVENT_HANDLERS
from notify.sender import Sender
from services import registry
from services.config import Settings
from services.runtime import Runtime, ServiceSpec, Wiring

log = logging.getLogger(__name__)
DIGEST_EVERY = 300.0  # seconds between looks for finished days whose digests wait

SPEC = ServiceSpec(
    name="notify",
    indexes=repository.INDEXES,
    outbox_collections=(repository.NOTIFICATIONS, repository.DELIVERIES),
    event_types=registry.event_types(EVENT_HANDLERS),
    docs=api.DOCS,
    # Every idea event would reach notify for webhooks alone; the broker delivers them only while asked for.
    optional_events=domain.WEBHOOK_ONLY_EVENTS,
)


@dataclass
class NotifyService:
    runtime: Runtime
    repo: repository.Repository
    sender: Sender
    letterhead: usecases.Letterhead
    webhook_allow: Sequence[str]

    def bindings(self) -> AbstractContextManager[None]:
        """Held around a change of the subscriptions: the queue's bindings follow before the answer."""
        return self.runtime.changing_bindings()

    def send_digests(self) -> int:
        """Send the digests of every finished day (UTC) that still has e-mails waiting."""
        today = datetime.now(UTC).date().isoformat()
        days = [d for d in self.repo.notifications.distinct("day", {"status": "digest"}) if d < today]
        return sum(self.sender.send_digests(day) for day in sorted(days))


def _secret(settings: Settings) -> str:
    if settings.notify_secret:
        return settings.notify_secret
    if not settings.embedded:
        log.warning("NOTIFY_SECRET is not set: unsubscribe links made by one process will not work in another; "
                    "set it to the same random value for every notify process")
    return secrets.token_hex(32)


def bootstrap(settings: Settings | None = None) -> NotifyService:
    runtime = Runtime(SPEC, settings)
    settings = runtime.settings
    letterhead = usecases.Letterhead(settings.public_url, _secret(settings), email=bool(settings.smtp_url))
    repo = repository.Repository(runtime.db, on_events=runtime.relay.kick)
    sender = Sender(repo, settings, letterhead.secret)
    service = NotifyService(runtime, repo, sender, letterhead, settings.webhook_allow)
    interval = settings.notify_send_interval
    runtime.wire(Wiring(
        handlers=registry.bind(EVENT_HANDLERS, repo=repo, letterhead=letterhead),
        blueprints=[api.bp],
        # E-mails and webhooks on threads of their own: neither ever waits for the other (Sender's passes). The
        # methods are looked up on every run (not bound once), so that a test can take a channel "down".
        periodic=[(interval, lambda: sender.send_emails()), (interval, lambda: sender.send_webhooks()),
                  (DIGEST_EVERY, service.send_digests)],
        wanted_events=repo.subscribed_events,
        extension_name=api.EXTENSION, extension=service,
    ))
    return service


def create_app(settings: Settings | None = None) -> Flask:
    return bootstrap(settings).runtime.create_app()


def run_worker(concurrency: int = 1, settings: Settings | None = None) -> None:
    bootstrap(settings).runtime.run_worker(concurrency)
