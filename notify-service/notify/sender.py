"""Sends what waits: e-mails over SMTP and signed webhook calls; retries with growing delays; the digest.

A pass claims one due item at a time (with a lease, so two senders never take the same one), sends it,
then records the outcome and its event in one write. A crash while sending leaves the item claimed; when
the lease ends it is sent again with the same Message-ID / delivery id, so receivers can tell a repeat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import smtplib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

import urllib3

from notify import domain, render
from notify.repository import NotFound, Repository
from services import text
from services.config import Settings
from services.inbox import derived_id

log = logging.getLogger(__name__)
PAUSE_AFTER = 10  # failed deliveries in a row that pause a webhook subscription


def resolve(url: str) -> list[str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return sorted({info[4][0] for info in socket.getaddrinfo(parts.hostname or "", port)})


def post_pinned(url: str, address: str, body: bytes, headers: dict[str, str], timeout: urllib3.Timeout,
                ca_certs: str | None = None) -> int:
    """POST to `url`, connecting to `address` (resolved and checked by the caller) rather than resolving the host
    name again: between a check and a second lookup, DNS could answer with another address (rebinding). The
    request still names the host (Host header) and HTTPS still checks the certificate against it (SNI too), with
    the system's certificate authorities (`ca_certs`: others, for tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    default_port = port == (443 if https else 80)
    pool: urllib3.HTTPConnectionPool
    if https:
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=host, assert_hostname=host, ca_certs=ca_certs)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    name = f"[{host}]" if ":" in host else host
    try:
        response = pool.urlopen("POST", target, body=body, redirect=False, assert_same_host=False,
                                headers={**headers, "Host": name if default_port else f"{name}:{port}"})
        return response.status
    finally:
        pool.close()


class Sender:
    def __init__(self, repo: Repository, settings: Settings, secret: str,
                 smtp: Callable[[], smtplib.SMTP] | None = None) -> None:
        self.repo = repo
        self.settings = settings
        self.secret = secret
        self._smtp = smtp or self._connect_smtp
        self.timeout = urllib3.Timeout(connect=3.0, read=5.0)

    # --- the passes ------------------------------------------------------------------------------------------
    # E-mails and webhooks are sent by passes of their own (each on its own thread in the worker), so that a slow
    # webhook receiver never holds an e-mail back, nor a slow mail server a webhook. Within a pass the cities take
    # turns: one due item of each city with due items, then again, so that one city's backlog (a receiver that
    # times out, a thousand mails of a workshop import) delays another city's items by one send, not by the backlog.

    def pass_once(self) -> int:
        """One pass over each channel (tests; the worker runs send_emails and send_webhooks on threads of their own)."""
        return self.send_emails() + self.send_webhooks()

    def send_emails(self) -> int:
        return self._take_turns(self.repo.notifications, {"channel": "email"}, self.send_email, "email")

    def send_webhooks(self) -> int:
        return self._take_turns(self.repo.deliveries, {}, self.deliver_webhook, "webhook")

    def _take_turns(self, collection: Any, ready: dict[str, Any], send: Callable[[dict[str, Any]], None],
                    channel: str) -> int:
        done = 0
        while cities := self.repo.due_cities(collection, ready):
            for city in cities:
                doc = self.repo.claim(collection, {**ready, "city": city})
                if doc is None:
                    continue  # another sender took it
                try:
                    send(doc)
                except Exception as exc:  # noqa: BLE001 - an item must never stop the pass: it is retried, later
                    log.exception("%s %s could not be sent", channel, doc["_id"])
                    self._failed(collection, doc, {"error": f"could not be sent: {exc!r}"[:300]},
                                 time.perf_counter(), channel)
                done += 1
        return done

    # --- e-mail -------------------------------------------------------------------------------------------

    def _connect_smtp(self) -> smtplib.SMTP:
        parts = urlsplit(self.settings.smtp_url)
        cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        client = cls(parts.hostname or "localhost", parts.port or (465 if parts.scheme == "smtps" else 25),
                     timeout=10)
        if parts.username:
            client.login(parts.username, parts.password or "")
        return client

    def build_email(self, doc: dict[str, Any]) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = doc["to"]
        message["Subject"] = text.one_line(doc["subject"])  # stored before titles were checked, or by a template
        message["Message-ID"] = make_msgid(idstring=doc["_id"], domain="twincity")
        message["List-Unsubscribe"] = f"<{doc['unsubscribe_url']}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(doc["text"])
        if doc.get("html"):  # stored for the e-mails sent on their own (see Notifier._store)
            message.add_alternative(doc["html"], subtype="html")
        return message

    def send_email(self, doc: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            message = self.build_email(doc)
        except Exception as exc:  # noqa: BLE001 - the item itself is unusable (a header it cannot carry...)
            self._give_up(self.repo.notifications, doc, f"the e-mail could not be built: {exc!r}", started, "email")
            return
        try:
            with self._smtp() as client:
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            self._failed(self.repo.notifications, doc, {"error": repr(exc)[:300]}, started, "email")
            return
        self.repo.sent(self.repo.notifications, doc, {"at": _now(), "ms": _ms(started), "ok": True},
                       "notification.delivered", self._payload(doc, "email"))

    def _payload(self, doc: dict[str, Any], channel: str, error: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"notification_id": doc["_id"], "recipient": doc.get("recipient")
                                   or doc.get("subscription_id"), "channel": channel,
                                   "cause_event_id": doc["event_id"], "attempt": doc.get("attempts", 0) + 1}
        if error is not None:
            payload.update(error=error, final=True)
        return payload

    def _give_up(self, collection: Any, doc: dict[str, Any], error: str, started: float, channel: str) -> None:
        """Failed for good at once: trying again would fail again the same way."""
        self._failed(collection, doc, {"error": error[:300]}, started, channel, final=True)

    def _failed(self, collection: Any, doc: dict[str, Any], record: dict[str, Any], started: float,
                channel: str, *, final: bool = False) -> None:
        attempt = doc.get("attempts", 0) + 1
        record = {"at": _now(), "ms": _ms(started), "ok": False, **record}
        final = final or attempt >= self.settings.notify_max_attempts
        retry_in = None if final else domain.backoff(attempt, self.settings.notify_retry_base)
        log.warning("%s %s failed (try %d)%s: %s", channel, doc["_id"], attempt,
                    "; giving up" if final else f"; again in {retry_in:.1f}s", record.get("error"))
        self.repo.failed(collection, doc, record, retry_in=retry_in,
                         event_type="notification.failed" if final else None,
                         payload=self._payload(doc, channel, record.get("error", "failed")) if final else None)

    # --- webhooks -------------------------------------------------------------------------------------------

    def deliver_webhook(self, doc: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            subscription = self.repo.subscription(doc["subscription_id"])
        except Exception:
            self.repo.failed(self.repo.deliveries, doc, {"at": _now(), "ok": False, "error": "subscription deleted"},
                             retry_in=None, event_type=None, payload=None)
            return
        if subscription.get("status") == "paused" and doc["event"]["type"] != domain.PING:
            self.repo.hold(doc)  # sent when the subscription is resumed; a ping still tests the receiver
            # A resume between reading the subscription and holding would have left it held: look again.
            with contextlib.suppress(NotFound):  # deleted meanwhile: its deliveries are cancelled
                if self.repo.subscription(subscription["_id"]).get("status") != "paused":
                    self.repo.release_held(subscription["_id"])
            return
        try:
            body = json.dumps(doc["event"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            event_type = text.one_line(str(doc["event"]["type"]))
        except Exception as exc:  # noqa: BLE001 - an event that cannot be written as JSON never will be
            self._give_up(self.repo.deliveries, doc, f"the event could not be written as JSON: {exc!r}", started,
                          "webhook")
            return
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "TwinCityLab-Webhooks/1",
            "X-Twincity-Event": event_type,
            "X-Twincity-Delivery": doc["_id"],
            domain.SIGNATURE_HEADER: domain.signature(subscription["secret"], body),
        }
        try:
            # Resolved once, checked, and that very address connected to (post_pinned).
            addresses = resolve(subscription["url"])
            domain.check_addresses(addresses, self.settings.webhook_allow)
            status = post_pinned(subscription["url"], addresses[0], body, headers, self.timeout)
        except (domain.UnsafeTarget, OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
            self._failed(self.repo.deliveries, doc, {"error": repr(exc)[:300]}, started, "webhook")
            self.repo.count_failure(subscription["_id"], PAUSE_AFTER)
            return
        if 200 <= status < 300:
            self.repo.sent(self.repo.deliveries, doc, {"at": _now(), "ms": _ms(started), "ok": True,
                                                        "status_code": status}, None, None)
            self.repo.set_subscription(subscription["_id"], consecutive_failures=0)
            return
        self._failed(self.repo.deliveries, doc, {"status_code": status, "error": f"HTTP {status}"}, started,
                     "webhook")
        if self.repo.count_failure(subscription["_id"], PAUSE_AFTER):
            log.warning("webhook %s paused after %d failures in a row", subscription["_id"], PAUSE_AFTER)

    # --- the daily digest ------------------------------------------------------------------------------------

    def send_digests(self, day: str) -> int:
        """One e-mail per person with everything of `day` that waited for the digest."""
        sent = 0
        for recipient, items in self.repo.digest_items(day).items():
            try:
                sent += self._send_digest(day, recipient, items)
            except Exception:  # noqa: BLE001 - one person's digest must not keep everyone else's back
                log.exception("the digest of %s for %s could not be made; its items stay for the next try",
                              recipient, day)
        return sent

    def _send_digest(self, day: str, recipient: str, items: list[dict[str, Any]]) -> int:
        person = self.repo.person(recipient)
        if not person or person.get("erased") or not person.get("email") or person.get("unsubscribed"):
            self.repo.fold_into_digest([i["_id"] for i in items], "skipped")
            return 0
        lang = domain.language_of(person)
        unsubscribe_url = items[0]["unsubscribe_url"]
        subject, body, html = render.render("digest", lang, {
            "recipient_name": person.get("name", ""), "day": day, "unsubscribe_url": unsubscribe_url,
            "items": [{"subject": i["subject"], "text": i.get("summary") or i["subject"]} for i in items]})
        digest = {"key": derived_id("digest", recipient, day), "recipient": recipient, "city": person["city"],
                  "channel": "email", "template": "digest", "language": lang, "subject": subject,
                  "text": body, "html": html, "to": person["email"], "status": "pending", "day": day,
                  "event_id": items[0]["event_id"], "unsubscribe_url": unsubscribe_url}
        sent = 1 if self.repo.add_notification(digest) else 0
        self.repo.fold_into_digest([i["_id"] for i in items], digest["key"])
        return sent


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
