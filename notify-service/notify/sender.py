"""Sends what waits: e-mails over SMTP and signed webhook calls; retries with growing delays; the digest.

A pass claims one due item at a time (with a lease, so two senders never take the same one), sends it,
then records the outcome and its event in one write. A crash while sending leaves the item claimed; when
the lease ends it is sent again with the same Message-ID / delivery id, so receivers can tell a repeat.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

from notify import domain, invitation, render, webhook_http
from notify.repository import NotFound, Repository
from services import text
from services.config import Settings
from services.inbox import derived_id

log = logging.getLogger(__name__)
PAUSE_AFTER = 10  # failed deliveries in a row that pause a webhook subscription
WEBHOOK_CALLS = 4  # webhook calls a sender makes at once (each to another city's receiver)


def resolve(url: str) -> list[str]:
    """The host's addresses, in the order the system prefers them (RFC 6724: IPv6 first only where it is routed)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(parts.hostname or "", port)))


class Sender:
    def __init__(self, repo: Repository, settings: Settings, secret: str,
                 smtp: Callable[[], smtplib.SMTP] | None = None) -> None:
        self.repo = repo
        self.settings = settings
        self.secret = secret
        self._smtp = smtp or self._connect_smtp
        self.limits = webhook_http.Limits()
        self._turn = 0
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()

    # --- the passes ------------------------------------------------------------------------------------------
    # E-mails and webhooks are sent by passes of their own (each on its own thread in the worker), so that a slow
    # webhook receiver never holds an e-mail back, nor a slow mail server a webhook. Within a pass the cities take
    # turns: one due item of each city with due items, then again, so that one city's backlog (a receiver that
    # times out, a thousand mails of a workshop import) delays another city's items by one send, not by the backlog.

    def pass_once(self) -> int:
        """One pass over each channel (tests; the worker runs send_emails and send_webhooks on threads of their own)."""
        return self.send_emails() + self.send_webhooks()

    def send_emails(self) -> int:
        # One at a time: every city's mails go through the same mail server, which a second connection would not
        # make quicker; a mail that cannot be built or sent fails alone (send_email).
        return self._take_turns(self.repo.notifications, {"channel": "email"}, self.send_email, "email", 1)

    def send_webhooks(self) -> int:
        # Each city's receivers are their own: up to WEBHOOK_CALLS calls at once, one per city, so that a receiver
        # that takes its whole deadline holds back only its own city's deliveries.
        return self._take_turns(self.repo.deliveries, {}, self.deliver_webhook, "webhook", WEBHOOK_CALLS)

    def _take_turns(self, collection: Any, ready: dict[str, Any], send: Callable[[dict[str, Any]], None],
                    channel: str, at_once: int) -> int:
        """Send what is due, the cities taking turns: at most one item of a city in hand at a time, `at_once` items
        in all; the city that went first last time goes last this time."""
        done = 0
        in_hand: dict[Future[None], Any] = {}
        pool = self._pool(channel, at_once)
        try:
            while True:
                busy = set(in_hand.values())
                cities = [c for c in self.repo.due_cities(collection, ready) if c not in busy]
                self._turn += 1
                for city in (cities[self._turn % len(cities):] + cities[:self._turn % len(cities)]) if cities else []:
                    if len(in_hand) >= at_once:
                        break
                    doc = self.repo.claim(collection, {**ready, "city": city})
                    if doc is not None:  # else another sender took it
                        in_hand[pool.submit(self._send_one, collection, doc, send, channel)] = city
                if not in_hand:
                    return done
                finished, _ = wait(in_hand, return_when=FIRST_COMPLETED)
                for future in finished:
                    del in_hand[future]
                    future.result()  # _send_one lets through only what the store raised: the pass ends with it
                    done += 1
        finally:
            wait(in_hand)

    def _send_one(self, collection: Any, doc: dict[str, Any], send: Callable[[dict[str, Any]], None],
                  channel: str) -> None:
        try:
            send(doc)
        except Exception as exc:  # noqa: BLE001 - an item must never stop the pass: it is retried, later
            log.exception("%s %s could not be sent", channel, doc["_id"])
            self._failed(collection, doc, {"error": f"could not be sent: {exc!r}"[:300]}, time.perf_counter(),
                         channel)

    def _pool(self, channel: str, size: int) -> ThreadPoolExecutor:
        with self._pools_lock:
            if channel not in self._pools:
                self._pools[channel] = ThreadPoolExecutor(size, thread_name_prefix=f"notify-{channel}")
            return self._pools[channel]

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
        if doc.get("html"):  # stored for the e-mails sent on their own (see usecases._store)
            message.add_alternative(doc["html"], subtype="html")
        if doc.get("ics"):  # a meeting's invitation, made when it was stored: every try attaches the same
            message.add_attachment(doc["ics"], subtype="calendar", filename=invitation.FILENAME,
                                   params={"method": invitation.METHOD})
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
                       domain.outcome(doc, "email"))

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
                         events=domain.outcome(doc, channel, error=record.get("error", "failed")) if final else [])

    # --- webhooks -------------------------------------------------------------------------------------------

    def deliver_webhook(self, doc: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            subscription = self.repo.subscription(doc["subscription_id"])
        except Exception:
            self.repo.failed(self.repo.deliveries, doc, {"at": _now(), "ok": False, "error": "subscription deleted"},
                             retry_in=None, events=[])
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
        sent_at = int(time.time())  # each attempt signed anew: a retry is as recent as its time
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "TwinCityLab-Webhooks/1",
            "X-Twincity-Event": event_type,
            "X-Twincity-Delivery": doc["_id"],
            domain.TIMESTAMP_HEADER: str(sent_at),
            domain.SIGNATURE_HEADER: domain.signature(subscription["secret"], body),
            domain.SIGNATURE_V2_HEADER: domain.signature_v2(subscription["secret"], doc["_id"], sent_at, body),
        }
        try:
            # Resolved once, every address checked, and only those connected to (webhook_http.post).
            addresses = resolve(subscription["url"])
            domain.check_addresses(addresses, self.settings.webhook_allow)
            status = webhook_http.post(subscription["url"], addresses, body, headers, self.limits)
        except (domain.UnsafeTarget, OSError, ValueError, http.client.HTTPException) as exc:
            self._failed(self.repo.deliveries, doc, {"error": repr(exc)[:300]}, started, "webhook")
            self.repo.count_failure(subscription["_id"], PAUSE_AFTER)
            return
        if 200 <= status < 300:
            self.repo.sent(self.repo.deliveries, doc, {"at": _now(), "ms": _ms(started), "ok": True,
                                                        "status_code": status}, [])
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
        # The same rule as when the items were stored, asked again now: the person may have left, unsubscribed
        # or chosen the inbox alone since (one who chose single e-mails since still gets what waited).
        if not person or person.get("erased") or domain.email_status(person, can_send=True)[0] not in ("digest",
                                                                                                       "pending"):
            self.repo.fold_into_digest([i["_id"] for i in items], "skipped")
            return 0
        lang = domain.language_of(person)
        unsubscribe_url = items[0]["unsubscribe_url"]
        subject, body, html, _line = render.render("digest", lang, {
            "recipient_name": person.get("name", ""), "day": day, "unsubscribe_url": unsubscribe_url,
            "items": [{"subject": i["subject"], "text": i.get("summary") or i["subject"]} for i in items]})
        calendar = invitation.merge([i["ics"] for i in items if i.get("ics")])  # the meetings of the day
        about = sorted({pid for i in items for pid in i.get("about") or []})  # whom its items name besides
        digest = {"key": derived_id("digest", recipient, day), "recipient": recipient, "city": person["city"],
                  "channel": "email", "template": "digest", "language": lang, "subject": subject,
                  "text": body, "html": html, "to": person["email"], "status": "pending", "day": day,
                  "event_id": items[0]["event_id"], "unsubscribe_url": unsubscribe_url,
                  **({"ics": calendar} if calendar else {}), **({"about": about} if about else {})}
        sent = 1 if self.repo.add_notification(digest) else 0
        self.repo.fold_into_digest([i["_id"] for i in items], digest["key"])
        return sent


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
