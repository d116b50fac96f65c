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
import threading
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
from services.config import Settings
from services.inbox import derived_id

log = logging.getLogger(__name__)
PAUSE_AFTER = 10  # failed deliveries in a row that pause a webhook subscription


def resolve(url: str) -> list[str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return sorted({info[4][0] for info in socket.getaddrinfo(parts.hostname or "", port)})


class Sender:
    def __init__(self, repo: Repository, settings: Settings, secret: str,
                 smtp: Callable[[], smtplib.SMTP] | None = None) -> None:
        self.repo = repo
        self.settings = settings
        self.secret = secret
        self._smtp = smtp or self._connect_smtp
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=3.0, read=5.0))
        self.wake = threading.Event()

    # --- the loop -------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.pass_once()
            except Exception:
                log.exception("a send pass failed; the next pass tries again")
            self.wake.wait(self.settings.notify_send_interval)
            self.wake.clear()

    def pass_once(self) -> int:
        done = 0
        while (doc := self.repo.claim(self.repo.notifications, {"channel": "email"})) is not None:
            self.send_email(doc)
            done += 1
        while (doc := self.repo.claim(self.repo.deliveries)) is not None:
            self.deliver_webhook(doc)
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
        message["Subject"] = doc["subject"]
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
            with self._smtp() as client:
                client.send_message(self.build_email(doc))
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

    def _failed(self, collection: Any, doc: dict[str, Any], record: dict[str, Any], started: float,
                channel: str) -> None:
        attempt = doc.get("attempts", 0) + 1
        record = {"at": _now(), "ms": _ms(started), "ok": False, **record}
        final = attempt >= self.settings.notify_max_attempts
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
        body = json.dumps(doc["event"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "TwinCityLab-Webhooks/1",
            "X-Twincity-Event": doc["event"]["type"],
            "X-Twincity-Delivery": doc["_id"],
            domain.SIGNATURE_HEADER: domain.signature(subscription["secret"], body),
        }
        try:
            domain.check_addresses(resolve(subscription["url"]), self.settings.webhook_allow)
            response = self.http.request("POST", subscription["url"], body=body, headers=headers, redirect=False)
            status = response.status
        except (domain.UnsafeTarget, OSError, urllib3.exceptions.HTTPError) as exc:
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
            person = self.repo.person(recipient)
            if not person or person.get("erased") or not person.get("email") or person.get("unsubscribed"):
                self.repo.fold_into_digest([i["_id"] for i in items], "skipped")
                continue
            lang = domain.language_of(person)
            unsubscribe_url = items[0]["unsubscribe_url"]
            subject, text, html = render.render("digest", lang, {
                "recipient_name": person.get("name", ""), "day": day, "unsubscribe_url": unsubscribe_url,
                "items": [{"subject": i["subject"], "text": i.get("summary") or i["subject"]} for i in items]})
            digest = {"key": derived_id("digest", recipient, day), "recipient": recipient, "city": person["city"],
                      "channel": "email", "template": "digest", "language": lang, "subject": subject,
                      "text": text, "html": html, "to": person["email"], "status": "pending", "day": day,
                      "event_id": items[0]["event_id"], "unsubscribe_url": unsubscribe_url}
            if self.repo.add_notification(digest):
                sent += 1
            self.repo.fold_into_digest([i["_id"] for i in items], digest["key"])
        return sent


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
