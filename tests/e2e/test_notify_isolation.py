"""One city's troubles never hold another city's e-mails and webhooks back.

A mail that cannot be built (a header it cannot carry, a field missing) is failed with its reason and the pass goes
on; e-mails and webhooks are sent by passes of their own; within a pass the cities take turns, so a backlog of one
(here: a receiver that takes a second a call) delays another city's items by one send, not by the backlog.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.inbox import derived_id
from tests.conftest import wait_for
from tests.e2e.conftest import Api, Receiver, SmtpServer
from tests.e2e.test_notify import SECRET


@pytest.fixture
def slow_receiver() -> Iterator[Receiver]:
    r = Receiver(delay=1.0)
    yield r
    r.close()


def mail(city: str, to: str, subject: str = "Hallo", **changes: Any) -> dict[str, Any]:
    """An e-mail as notify stores it (pending), for a made-up person of `city`."""
    event = str(uuid.uuid4())
    doc = {"recipient": f"person-{city}", "city": city, "template": "match_proposed", "language": "de",
           "subject": subject, "text": "Hallo!\n", "event_id": event, "event_type": "match.proposed", "link": "",
           "unsubscribe_url": "http://lab.example/unsubscribe/x", "summary": "", "day": "2026-12-02",
           "key": derived_id(event, f"person-{city}", "email"), "channel": "email", "status": "pending", "to": to}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def test_poisoned_and_slow_items_of_one_city_do_not_hold_another_citys_back(
        napi: Api, smtp: SmtpServer, receiver: Receiver, slow_receiver: Receiver):
    keys = napi.lab()
    notify = napi.platform.runtime("notify")
    sender = napi.platform.service("notify").sender
    repo = sender.repo
    # Karlsruhe's troubles: a receiver that takes a second a call, with 12 deliveries waiting for it...
    slow = napi.ok("POST", "/webhooks", keys["karlsruhe"],
                   {"url": slow_receiver.url, "events": ["match.proposed"], "secret": SECRET})
    # ... and e-mails that cannot be built or sent as they are (stored as an older version or another producer might).
    original = sender.send_emails
    sender.send_emails = lambda: 0  # held while the backlog is laid out, so that it is all due at once
    original_hooks = sender.send_webhooks
    sender.send_webhooks = lambda: 0
    try:
        for _ in range(12):
            napi.ok("POST", f"/webhooks/{slow['id']}/ping", keys["karlsruhe"])
        poisoned = [mail("karlsruhe", "lena@example.org\r\nBcc: everyone@example.org") for _ in range(20)]
        poisoned += [mail("karlsruhe", "lena@example.org", unsubscribe_url=None) for _ in range(10)]
        for doc in poisoned:
            repo.add_notification(doc)
        odd_subject = mail("karlsruhe", "lena@example.org", subject="Radtour\x85Karlsruhe\u2028Krasnodar")
        repo.add_notification(odd_subject)
        # Krasnodar's ordinary business, due after all of that.
        time.sleep(0.05)
        fast = napi.ok("POST", "/webhooks", keys["krasnodar"],
                       {"url": receiver.url, "events": ["match.proposed"], "secret": SECRET})
        napi.ok("POST", f"/webhooks/{fast['id']}/ping", keys["krasnodar"])
        repo.add_notification(mail("krasnodar", "anna@example.org", subject="Привет"))
    finally:
        sender.send_emails = original
        sender.send_webhooks = original_hooks
    started = time.monotonic()
    wait_for(lambda: smtp.to("anna@example.org"), 10, 0.05, message="Krasnodar's e-mail")
    mail_after = time.monotonic() - started
    wait_for(lambda: receiver.calls, 10, 0.05, message="Krasnodar's webhook")
    hook_after = time.monotonic() - started
    # Before: the first unbuildable mail aborted every pass, so nothing after it went out, ever; and webhooks waited
    # for the e-mails. Now each waits at most for one of Karlsruhe's items (a slow call is 1 s).
    assert mail_after < 3 and hook_after < 3, (mail_after, hook_after)
    assert len(slow_receiver.calls) < 6, "Krasnodar did not wait for Karlsruhe's whole backlog"

    notifications = notify.db["notifications"]
    wait_for(lambda: notifications.count_documents({"status": "failed"}) == len(poisoned), 10,
             message="every unusable mail failed")
    for doc in notifications.find({"status": "failed"}):
        assert doc["attempts"] == 1, "failed at once: trying again would fail the same way"
        assert doc["log"][-1]["error"].startswith("the e-mail could not be built"), doc["log"]
    # The odd subject went out on one line; the failures are told as events, for whoever follows them.
    wait_for(lambda: any(m["Subject"] == "Radtour Karlsruhe Krasnodar" for m in smtp.to("lena@example.org")), 10,
             message="the mail whose subject had line separators")
    napi.settle()
    failed = napi.observer.of("notification.failed", channel="email")
    assert len(failed) == len(poisoned) and all("could not be built" in e.payload["error"] for e in failed)
