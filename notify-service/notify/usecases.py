"""What the notify service does, one function per use case: keep what it hears of people and cities; tell people of
what concerns them, in their language, over their channels; hand events to the webhooks that asked for them;
manage a city's webhooks; show a person's inbox; write sign-in mails; unsubscribe.

Each takes the repository, the caller where a key acts (services.tenancy) and, where a message is written, the
`Letterhead` (where links point, the unsubscribe key, whether e-mail can go out); api.py and handlers.py only
parse, call one of these, and answer. Sending is sender.py's.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError

from notify import domain, invitation, render
from notify.repository import Repository
from notify.sender import resolve
from services import lease
from services.contract import Event
from services.errors import Forbidden, Gone, Unavailable
from services.inbox import derived_id
from services.store import NotFound, now
from services.tenancy import Caller

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Bindings = Callable[[], AbstractContextManager[None]]  # held around a change of what webhooks want


@dataclass(frozen=True)
class Letterhead:
    """What every message carries: where its links point, the key of its unsubscribe link, whether mail goes out."""

    public_url: str
    secret: str
    email: bool  # an SMTP server is configured

    def unsubscribe_url(self, participant_id: str) -> str:
        return f"{self.public_url}/unsubscribe/{domain.unsubscribe_token(self.secret, participant_id)}"


# --- what notify hears of people and cities -------------------------------------------------------------------

def person_changed(repo: Repository, payload: Mapping[str, Any]) -> None:
    prefs = payload.get("preferences") or {}
    repo.put_person(payload["participant_id"], payload["version"], {
        "city": payload["city"], "name": payload["name"], "email": payload.get("email"),
        "language": payload["language"], "channels": prefs.get("channels", list(domain.CHANNELS)),
        "digest": prefs.get("digest", "immediate")})


def person_erased(repo: Repository, participant_id: str) -> None:
    repo.erase_person(participant_id)


def city_registered(repo: Repository, city: str, name: str, language: str,
                    names: Mapping[str, str] | None = None, timezone: str | None = None) -> None:
    """A city's names and language, and its time zone (meetings are shown to its people in it) when it says one."""
    repo.put_city(city, name, language, names, timezone)


# --- telling people -----------------------------------------------------------------------------------------

def notify_people(repo: Repository, letterhead: Letterhead, event: Event, clock: Clock = now) -> None:
    """Everyone this event concerns hears of it (domain.messages_for), once per event, channel and person."""
    def lang_of(pid: str) -> str:
        return domain.language_of(repo.person(pid))

    def name_of(pid: str) -> str:
        person = repo.person(pid)
        return "" if person is None or person.get("erased") else person.get("name") or ""

    def zone_of(pid: str) -> str | None:
        person = repo.person(pid)
        return repo.city_zone(person["city"]) if person and person.get("city") else None

    for message in domain.messages_for(event.type, event.payload, repo.city_name, lang_of, name_of=name_of,
                                       zone_of=zone_of, people_in=repo.people_in):
        person = repo.person(message.recipient)
        if person is None or person.get("erased"):
            log.info("%s: no one to tell for recipient %s (unknown or erased)", event.type, message.recipient)
            continue
        _store(repo, letterhead, event, message, person, clock().date().isoformat())


def _email_status(person: Mapping[str, Any], letterhead: Letterhead) -> tuple[str | None, dict[str, str]]:
    status, why = domain.email_status(person, can_send=letterhead.email)
    return status, ({"skipped_because": why} if why else {})


def _invitation(event: Event, message: domain.Message, link: str) -> dict[str, str]:
    """The calendar invitation an e-mail carries (kept in it: a mail sent again carries the same one)."""
    if message.invitation is None:
        return {}
    return {"ics": invitation.ics(message.invitation, link, datetime.fromisoformat(event.occurred_at))}


def _store(repo: Repository, letterhead: Letterhead, event: Event, message: domain.Message,
           person: Mapping[str, Any], day: str) -> None:
    lang = domain.language_of(person)
    unsubscribe_url = letterhead.unsubscribe_url(person["_id"])
    # The gateway's web pages answer the same paths as the API (without /api/v1): a person's e-mail opens a page.
    link = f"{letterhead.public_url}{message.link}" if message.link else ""
    status, extra = _email_status(person, letterhead)
    # HTML only for an e-mail sent on its own: the inbox shows the text, a digest is rendered when it is sent,
    # and a skipped e-mail is never sent. Rendering and storing it was a third of the work of a notification.
    sent_alone = status == "pending"
    rendered = render.render(message.template, lang, {
        **message.context, "recipient_name": person.get("name", ""), "link": link,
        "unsubscribe_url": unsubscribe_url}, html=sent_alone)
    base = {"recipient": person["_id"], "city": person["city"], "template": message.template, "language": lang,
            "subject": rendered.subject, "text": rendered.text, "event_id": event.id, "event_type": event.type,
            # What an inbox shows of it: its title, one line of what happened, and its link.
            "title": rendered.subject, "line": rendered.line, "link": link, "unsubscribe_url": unsubscribe_url,
            # What a daily digest shows of it: the reasons (or its line), the link; not a whole mail's greeting.
            "summary": domain.digest_summary(message, rendered.line, link),
            "day": day,  # the digest of that day (UTC) carries it
            **({"about": list(message.about)} if message.about else {})}  # erased with any of them
    if "inbox" in domain.channels_of(person):
        repo.add_notification({**base, "key": derived_id(event.id, person["_id"], "inbox"),
                               "channel": "inbox", "status": "delivered", "read_at": None})
    if status is not None:
        repo.add_notification({**base, **extra, **_invitation(event, message, link),
                               **({"html": rendered.html} if sent_alone else {}),
                               "key": derived_id(event.id, person["_id"], "email"),
                               "channel": "email", "status": status, "to": person.get("email")})


def notify_webhooks(repo: Repository, event: Event) -> None:
    """Each webhook of a city concerned that asked for this event type gets a delivery (held while paused)."""
    cities = sorted(domain.webhook_cities({"city": event.city, "payload": event.payload}))
    subscriptions = repo.listeners(cities, event.type)
    if not subscriptions:
        return  # most events: no one listens. The envelope is a deep copy of the event, made only if needed
    envelope = {k: v for k, v in asdict(event).items() if k != "received_version"}
    for subscription in subscriptions:
        repo.add_delivery({"key": derived_id(event.id, subscription["_id"]), "subscription_id": subscription["_id"],
                           "city": subscription["city"], "event": envelope, "event_id": event.id},
                          held=subscription.get("status") == "paused")


# --- a city's webhooks ----------------------------------------------------------------------------------------

def own_subscription(repo: Repository, who: Caller, sid: str) -> dict[str, Any]:
    doc = repo.subscription(sid)
    if not who.can_change(doc["city"]):
        raise NotFound("webhook", sid)  # another city's webhooks do not exist for this key
    return doc


def subscribe(repo: Repository, who: Caller, data: Mapping[str, Any], allow: Sequence[str],
              bindings: Bindings) -> dict[str, Any]:
    """A webhook for the caller's city: its URL checked (public addresses only), stored, and its event types bound
    to notify's queue before the answer (else nothing is kept)."""
    city = who.acting_city(data.get("city"))
    try:
        addresses = resolve(data["url"])
    except (OSError, UnicodeError):
        raise ValidationError({"url": [f"{urlsplit(data['url']).hostname} does not resolve"]}) from None
    try:
        domain.check_addresses(addresses, allow)
    except domain.UnsafeTarget as exc:
        raise ValidationError({"url": [str(exc)]}) from None
    events = list(domain.WEBHOOK_EVENTS) if data["events"] == ["*"] else data["events"]
    doc = None
    try:
        with bindings():  # stored, then bound, before any other process may unbind (services/runtime.py)
            doc = repo.add_subscription(city, data["url"], events, data["secret"])
    except lease.LockBusy:
        raise Unavailable("webhooks are being changed by another request; nothing was kept: try again "
                          "shortly") from None
    except Exception as exc:
        if doc is None:
            raise
        repo.delete_subscription(doc["_id"])
        log.warning("webhook %s not kept: its events could not be bound (%r)", doc["_id"], exc)
        raise Unavailable("the message broker does not answer right now, so this webhook would miss events; "
                          "nothing was kept: try again shortly") from None
    return doc


def unsubscribe_webhook(repo: Repository, who: Caller, sid: str, bindings: Bindings) -> None:
    doc = own_subscription(repo, who, sid)
    deleted = False
    try:
        with bindings():
            repo.delete_subscription(doc["_id"])
            deleted = True
    except lease.LockBusy:
        raise Unavailable("webhooks are being changed by another request; the webhook "
                      "is still there: try again shortly") from None
    except Exception as exc:
        if not deleted:
            raise
        # a binding left over only delivers events no one listens to, until the worker's next check
        log.warning("webhook %s removed; its events stay bound until the worker's next check (%r)", sid, exc)


def list_webhooks(repo: Repository, who: Caller) -> list[dict[str, Any]]:
    return repo.subscriptions_of(None if who.admin else who.city)


def ping(repo: Repository, who: Caller, sid: str, clock: Clock = now) -> str:
    """A test delivery to the webhook now (even while it is paused); its event id."""
    doc = own_subscription(repo, who, sid)
    event_id = str(uuid.uuid4())  # an envelope like every event's, so a receiver that checks them takes a ping too
    envelope = {"id": event_id, "type": domain.PING, "version": 1,
                "occurred_at": clock().isoformat(timespec="microseconds"), "partnership": None, "city": doc["city"],
                "correlation_id": None, "causation_id": None, "producer": "notify", "payload": {"webhook_id": sid}}
    repo.add_delivery({"key": event_id, "subscription_id": sid, "city": doc["city"], "event": envelope,
                       "event_id": event_id})
    return event_id


def resume(repo: Repository, who: Caller, sid: str) -> dict[str, Any]:
    repo.resume_subscription(own_subscription(repo, who, sid)["_id"])
    return repo.subscription(sid)


def deliveries(repo: Repository, who: Caller, sid: str, limit: int,
               cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    own_subscription(repo, who, sid)
    return repo.deliveries_of(sid, limit, cursor)


# --- a person's inbox, sign-in mails, unsubscribing -----------------------------------------------------------------

def _own_person(repo: Repository, who: Caller, pid: str) -> dict[str, Any]:
    person = repo.person(pid)
    if person is None or person.get("erased") or not who.can_change(person.get("city")) or not who.acts_for(pid):
        raise NotFound("participant", pid)  # an inbox is private: the person's own city's keys, or the person
    return person


def inbox(repo: Repository, who: Caller, pid: str, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    _own_person(repo, who, pid)
    return repo.inbox_of(pid, query["limit"], query.get("cursor"), query["unread"])


def mark_read(repo: Repository, who: Caller, pid: str, nid: str) -> dict[str, Any]:
    _own_person(repo, who, pid)
    return repo.mark_read(pid, nid)


def sign_in_mail(repo: Repository, who: Caller, letterhead: Letterhead, data: Mapping[str, Any]) -> str:
    """A sign-in link by e-mail, in the person's language (the gateway made the link); the mail's status.
    Sent even to people who unsubscribed from notifications: they asked for this one themselves."""
    if not who.admin:
        raise Forbidden("only the gateway itself asks for sign-in e-mails")
    lang = domain.language_of({"language": data["language"]})
    unsubscribe_url = letterhead.unsubscribe_url(data["participant_id"])
    subject, text, html, _line = render.render("sign_in", lang, {
        "recipient_name": data["name"], "link": data["link"], "minutes": data["minutes"],
        "unsubscribe_url": unsubscribe_url})
    status = "pending" if letterhead.email else "skipped"
    extra = {} if letterhead.email else {"skipped_because": "no SMTP_URL configured"}
    repo.add_notification({
        **extra, "key": derived_id("sign-in", data["token_id"]), "recipient": data["participant_id"],
        "city": data["city"], "channel": "email", "template": "sign_in", "language": lang, "subject": subject,
        "text": text, "html": html, "to": data["to"], "status": status, "event_id": data["token_id"],
        "event_type": "sign_in", "link": None, "unsubscribe_url": unsubscribe_url})
    return status


def invitation_mail(repo: Repository, who: Caller, letterhead: Letterhead, data: Mapping[str, Any]) -> str:
    """An invitation to join a city's lab (or a sign-up's mail: confirm the address, approved, declined), in the
    person's language, with the link the gateway made; the mail's status. Nobody is a participant yet: no
    unsubscribe link, one mail per invitation and template."""
    if not who.admin:
        raise Forbidden("only the gateway itself asks for invitation e-mails")
    lang = domain.language_of({"language": data["language"]})
    template = data.get("template", "invitation")
    rendered = render.render(template, lang, {
        "recipient_name": data["name"], "link": data["link"], "days": data["days"],
        "city_name": repo.city_name(data["city"], lang)})
    status = "pending" if letterhead.email else "skipped"
    extra = {} if letterhead.email else {"skipped_because": "no SMTP_URL configured"}
    repo.add_notification({
        **extra, "key": derived_id(template, data["invitation_id"]), "recipient": data["invitation_id"],
        "city": data["city"], "channel": "email", "template": template, "language": lang,
        "subject": rendered.subject, "text": rendered.text, "html": rendered.html, "to": data["to"],
        "status": status, "event_id": data["invitation_id"], "event_type": "invitation", "link": data["link"],
        "unsubscribe_url": None})
    return status


def unsubscribe(repo: Repository, letterhead: Letterhead, token: str, *, confirm: bool) -> None:
    """The link in every e-mail: the token proves who it is for; only a confirmed one (POST) unsubscribes."""
    pid = domain.check_unsubscribe_token(letterhead.secret, token)
    if pid is None:
        raise Gone("this unsubscribe link is not valid")
    if confirm:
        with contextlib.suppress(NotFound):
            repo.unsubscribe(pid)
