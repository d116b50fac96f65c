"""The events the notify service consumes: who must know, over which channels, in which language."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime

from notify import domain, render
from notify.repository import Repository
from services.config import Settings
from services.contract import Event
from services.inbox import derived_id
from services.registry import Entry, Registry

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, repo: Repository, settings: Settings, secret: str) -> None:
        self.repo = repo
        self.settings = settings
        self.secret = secret

    def person_changed(self, event: Event) -> None:
        p = event.payload
        prefs = p.get("preferences") or {}
        self.repo.put_person(p["participant_id"], p["version"], {
            "city": p["city"], "name": p["name"], "email": p.get("email"), "language": p["language"],
            "channels": prefs.get("channels", ["email", "inbox"]), "digest": prefs.get("digest", "immediate"),
        })

    def person_erased(self, event: Event) -> None:
        self.repo.erase_person(event.payload["participant_id"])

    def city_registered(self, event: Event) -> None:
        p = event.payload
        self.repo.put_city(p["city"], p["name"], p["language"])

    def notify_people(self, event: Event) -> None:
        def lang_of(pid: str) -> str:
            return domain.language_of(self.repo.person(pid))

        for message in domain.messages_for(event.type, event.payload, self.repo.city_name, lang_of):
            person = self.repo.person(message.recipient)
            if person is None or person.get("erased"):
                log.info("%s: no one to tell for recipient %s (unknown or erased)", event.type, message.recipient)
                continue
            self._store(event, message, person)

    def _store(self, event: Event, message: domain.Message, person: Mapping) -> None:
        lang = domain.language_of(person)
        token = domain.unsubscribe_token(self.secret, person["_id"])
        unsubscribe_url = f"{self.settings.public_url}/unsubscribe/{token}"
        # The gateway's web pages answer the same paths as the API (without /api/v1): a person's e-mail opens a page.
        link = f"{self.settings.public_url}{message.link}" if message.link else ""
        channels = person.get("channels") or ["email", "inbox"]
        status, extra = None, {}  # of the e-mail, if one is stored
        if "email" in channels:
            if not person.get("email") or person.get("unsubscribed") or not self.settings.smtp_url:
                why = ("no e-mail address" if not person.get("email") else
                       "unsubscribed" if person.get("unsubscribed") else "no SMTP_URL configured")
                status, extra = "skipped", {"skipped_because": why}
            else:
                status = "digest" if person.get("digest") == "daily" else "pending"
        # HTML only for an e-mail sent on its own: the inbox shows the text, a digest is rendered when it is sent,
        # and a skipped e-mail is never sent. Rendering and storing it was a third of the work of a notification.
        sent_alone = status == "pending"
        subject, text, html = render.render(message.template, lang, {
            **message.context, "recipient_name": person.get("name", ""), "link": link,
            "unsubscribe_url": unsubscribe_url}, html=sent_alone)
        base = {"recipient": person["_id"], "city": person["city"], "template": message.template, "language": lang,
                "subject": subject, "text": text, "event_id": event.id, "event_type": event.type,
                "link": link, "unsubscribe_url": unsubscribe_url,
                # What a daily digest shows of it: the reasons and the link, not a whole mail's greeting.
                "summary": "\n\n".join(part for part in (
                    "\n".join(f"- {r}" for r in message.context.get("reasons", [])), link) if part),
                "day": datetime.now(UTC).date().isoformat()}
        if "inbox" in channels:
            self.repo.add_notification({**base, "key": derived_id(event.id, person["_id"], "inbox"),
                                        "channel": "inbox", "status": "delivered", "read_at": None})
        if status is not None:
            self.repo.add_notification({**base, **extra, **({"html": html} if sent_alone else {}),
                                        "key": derived_id(event.id, person["_id"], "email"),
                                        "channel": "email", "status": status, "to": person.get("email")})

    def notify_webhooks(self, event: Event) -> None:
        cities = sorted(domain.webhook_cities({"city": event.city, "payload": event.payload}))
        subscriptions = self.repo.listeners(cities, event.type)
        if not subscriptions:
            return  # most events: no one listens. The envelope is a deep copy of the event, made only if needed
        envelope = {k: v for k, v in asdict(event).items() if k != "received_version"}
        for subscription in subscriptions:
            self.repo.add_delivery({"key": derived_id(event.id, subscription["_id"]),
                                    "subscription_id": subscription["_id"], "city": subscription["city"],
                                    "event": envelope, "event_id": event.id},
                                   held=subscription.get("status") == "paused")


def person_changed(event: Event, notifier: Notifier) -> None:
    notifier.person_changed(event)


def person_erased(event: Event, notifier: Notifier) -> None:
    notifier.person_erased(event)


def city_registered(event: Event, notifier: Notifier) -> None:
    notifier.city_registered(event)


def notify_people(event: Event, notifier: Notifier) -> None:
    notifier.notify_people(event)


def notify_webhooks(event: Event, notifier: Notifier) -> None:
    notifier.notify_webhooks(event)


def _table() -> dict[str, list[Entry]]:
    handlers: dict[str, list[Entry]] = {
        "participant.registered": [person_changed],
        "participant.updated": [person_changed],
        "participant.erased": [person_erased],
        "city.registered": [city_registered],
    }
    for event_type in domain.PEOPLE_EVENTS:
        handlers.setdefault(event_type, []).append(notify_people)
    for event_type in domain.WEBHOOK_EVENTS:
        handlers.setdefault(event_type, []).append(notify_webhooks)
    # Those are bound only while a webhook asks for them (SPEC.optional_events): no other handler may need them.
    for event_type in domain.WEBHOOK_ONLY_EVENTS:
        if handlers[event_type] != [notify_webhooks]:
            raise RuntimeError(f"{event_type} is delivered only while a webhook wants it, but another handler "
                               "needs it: take it out of domain.WEBHOOK_ONLY_EVENTS")
    return handlers


EVENT_HANDLERS: Registry = _table()
