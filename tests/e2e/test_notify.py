"""Notifications end to end: e-mail through a real SMTP server process (aiosmtpd), webhooks to a real HTTP
receiver on loopback, the in-app inbox, the digest; on memory:// and with the real RabbitMQ."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services import bus, outbox
from tests.conftest import wait_for
from tests.e2e.conftest import Api, Receiver, SmtpServer, running_platform
from tests.e2e.test_matching import GARDEN_DE, GARDEN_RU, proposed_pair

SECRET = "receiver-shared-secret-0123456789"



def authors(api: Api, keys: dict[str, str], *, digest: str = "immediate") -> tuple[dict, dict]:
    lena = api.ok("POST", "/participants", keys["karlsruhe"], {
        "name": "Lena Hoffmann", "email": "lena@example.org", "language": "de",
        "preferences": {"channels": ["email", "inbox"], "digest": digest}})
    anna = api.ok("POST", "/participants", keys["krasnodar"], {
        "name": "Анна Смирнова", "email": "anna@example.org", "language": "ru",
        "preferences": {"channels": ["email", "inbox"], "digest": digest}})
    return lena, anna


def match_their_ideas(api: Api, keys: dict[str, str], lena: dict, anna: dict) -> tuple[dict, dict]:
    api.settle()  # the notify service knows both people before their ideas match
    de = api.ok("POST", "/ideas", keys["karlsruhe"], {**GARDEN_DE, "author_id": lena["id"]})
    ru = api.ok("POST", "/ideas", keys["krasnodar"], {**GARDEN_RU, "author_id": anna["id"]})
    return de, ru


def text_of(mail: email.message.EmailMessage) -> str:
    return mail.get_body(preferencelist=("plain",)).get_content()


def test_german_and_russian_authors_get_their_email_in_their_language(napi: Api, smtp: SmtpServer):
    keys = napi.lab()
    lena, anna = authors(napi, keys)
    match_their_ideas(napi, keys, lena, anna)
    wait_for(lambda: smtp.to("lena@example.org") and smtp.to("anna@example.org"), 30, 0.1,
             message="both e-mails")
    [to_lena], [to_anna] = smtp.to("lena@example.org"), smtp.to("anna@example.org")
    de_text, ru_text = text_of(to_lena), text_of(to_anna)
    assert "Lena Hoffmann" in de_text and GARDEN_RU["title"] in de_text, "the counterpart's idea title"
    assert "Gleiches Thema: Ökologie & Gesundheit" in de_text, "the reasons, in German"
    assert "Анна Смирнова" in ru_text and GARDEN_DE["title"] in ru_text
    assert "Общая тема: Экология и здоровье" in ru_text, "the reasons, in Russian"
    assert to_lena["Subject"] != to_anna["Subject"]
    html = to_lena.get_body(preferencelist=("html",)).get_content()
    assert "<li>" in html and "Gleiches Thema" in html
    # The link opens the web page of the match (the same path as the API, without /api/v1).
    link = re.search(r"http://lab\.example/ideas/[^/\s]+/matches", de_text)
    assert link and "/api/v1" not in de_text, de_text
    opened = napi.client.get(link.group(0).removeprefix("http://lab.example"))
    assert opened.status_code == 302 and "/signin?next=" in opened.headers["Location"], "signs in, then shows it"
    unsubscribe = to_lena["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith("http://lab.example/unsubscribe/") and unsubscribe in de_text
    # The unsubscribe link works through the gateway: GET shows a button, POST unsubscribes.
    path = unsubscribe.removeprefix("http://lab.example")
    assert napi.client.get(path).status_code == 200
    assert napi.client.post(path).status_code == 200
    assert napi.client.post("/unsubscribe/forged.token").status_code == 404
    napi.settle()
    delivered = napi.observer.of("notification.delivered", channel="email")
    assert sorted(e.payload["recipient"] for e in delivered) == sorted([lena["id"], anna["id"]])


def test_the_inbox_keeps_what_concerns_a_participant(napi: Api):
    keys = napi.lab()
    lena, anna = authors(napi, keys)
    match_their_ideas(napi, keys, lena, anna)
    inbox = f"/participants/{lena['id']}/notifications"
    wait_for(lambda: napi.ok("GET", inbox, keys["karlsruhe"])["items"], 30, message="the inbox entry")
    [entry] = napi.ok("GET", inbox, keys["karlsruhe"])["items"]
    assert entry["template"] == "match_proposed" and entry["language"] == "de" and entry["read_at"] is None
    read = napi.ok("POST", f"{inbox}/{entry['id']}/read", keys["karlsruhe"])
    assert read["read_at"] is not None
    assert napi.ok("GET", inbox + "?unread=true", keys["karlsruhe"])["items"] == []
    assert napi.call("GET", inbox, keys["krasnodar"]).status_code == 404, "an inbox is private to its city"


def test_a_webhook_receiver_gets_a_correctly_signed_match_proposed(napi: Api, receiver: Receiver):
    keys = napi.lab()
    made = napi.call("POST", "/webhooks", keys["krasnodar"],
                     {"url": receiver.url, "events": ["match.proposed"], "secret": SECRET})
    hook = made.json_body
    assert made.status_code == 201 and made.headers["Location"] == f"/api/v1/webhooks/{hook['id']}"
    assert hook["city"] == "krasnodar" and "secret" not in hook
    lena, anna = authors(napi, keys)
    match_their_ideas(napi, keys, lena, anna)
    wait_for(lambda: any(c["headers"].get("X-Twincity-Event") == "match.proposed" for c in receiver.calls), 30,
             message="the webhook call")
    call = next(c for c in receiver.calls if c["headers"]["X-Twincity-Event"] == "match.proposed")
    expected = "sha256=" + hmac.new(SECRET.encode(), call["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call["headers"]["X-Twincity-Signature"], expected)
    # V2 binds the delivery id and a recent time to the body: a replay later, or under another id, fails.
    sent_at, delivery = call["headers"]["X-Twincity-Timestamp"], call["headers"]["X-Twincity-Delivery"]
    assert abs(int(sent_at) - time.time()) < 60
    signed = f"{delivery}.{sent_at}.".encode() + call["body"]
    v2 = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call["headers"]["X-Twincity-Signature-V2"], v2)
    envelope = json.loads(call["body"])
    assert envelope["type"] == "match.proposed" and envelope["payload"]["kind"] == "idea"
    assert {s["city"] for s in envelope["payload"]["sides"]} == {"karlsruhe", "krasnodar"}
    # A test ping, and every attempt readable through the API.
    assert napi.call("POST", f"/webhooks/{hook['id']}/ping", keys["krasnodar"]).status_code == 202
    wait_for(lambda: any(c["headers"]["X-Twincity-Event"] == "webhook.ping" for c in receiver.calls), 15,
             message="the ping")
    ping = json.loads(next(c["body"] for c in receiver.calls if c["headers"]["X-Twincity-Event"] == "webhook.ping"))
    assert str(uuid.UUID(ping["id"])) == ping["id"], "a ping's id is a UUID, as every event's"
    assert {"partnership", "correlation_id", "causation_id", "occurred_at", "city"} <= set(ping), "the whole envelope"
    deliveries = f"/webhooks/{hook['id']}/deliveries"

    def recorded() -> list[dict[str, Any]]:  # the receiver may answer before the sender writes it down
        items = napi.ok("GET", deliveries, keys["krasnodar"])["items"]
        return items if items and all(d["status"] == "delivered" for d in items) else []

    wait_for(recorded, 15, message="the deliveries recorded as delivered")
    log = recorded()
    assert {d["event_type"] for d in log} >= {"match.proposed", "webhook.ping"}
    assert all(d["log"][0]["status_code"] == 200 and d["log"][0]["ok"] for d in log), log
    assert napi.call("GET", f"/webhooks/{hook['id']}/deliveries", keys["karlsruhe"]).status_code == 404


def test_the_first_to_accept_hears_of_the_project_not_that_it_is_their_turn(napi: Api):
    keys = napi.lab()
    lena, anna = authors(napi, keys)
    de, _ru = match_their_ideas(napi, keys, lena, anna)
    wait_for(lambda: napi.ok("GET", f"/ideas/{de['id']}/matches", keys["karlsruhe"])["items"], 30, message="the match")
    [match] = napi.ok("GET", f"/ideas/{de['id']}/matches", keys["karlsruhe"])["items"]
    napi.ok("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"])  # Lena first
    napi.ok("POST", f"/matches/{match['id']}/accept", keys["krasnodar"])  # then Anna: confirmed

    def templates(person: dict, key: str) -> list[str]:
        items = napi.ok("GET", f"/participants/{person['id']}/notifications", key)["items"]
        return sorted(n["template"] for n in items)

    wait_for(lambda: "project_formed" in templates(lena, keys["karlsruhe"])
             and "project_formed" in templates(anna, keys["krasnodar"]), 30, message="the project in both inboxes")
    napi.settle()
    assert templates(lena, keys["karlsruhe"]) == ["match_proposed", "project_formed"]
    assert templates(anna, keys["krasnodar"]) == ["match_accepted", "match_proposed", "project_formed"]


def test_webhooks_hear_of_a_project_whose_ideas_have_no_author(napi: Api, receiver: Receiver):
    keys = napi.lab()
    napi.ok("POST", "/webhooks", keys["krasnodar"], {"url": receiver.url, "events": ["project.formed"],
                                                     "secret": SECRET})
    _de, _ru, match = proposed_pair(napi, keys)  # ideas without an author: a project without members
    napi.ok("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"])
    napi.ok("POST", f"/matches/{match['id']}/accept", keys["krasnodar"])
    wait_for(lambda: receiver.calls, 30, message="project.formed at the webhook")
    [call] = receiver.calls
    payload = json.loads(call["body"])["payload"]
    assert call["headers"]["X-Twincity-Event"] == "project.formed" and payload["match_id"] == match["id"]
    assert payload["members"] == [] and sorted(payload["cities"]) == ["karlsruhe", "krasnodar"]


def test_smtp_down_the_mail_is_sent_when_it_comes_back(napi: Api, smtp: SmtpServer):
    keys = napi.lab()
    lena, anna = authors(napi, keys)
    smtp.stop()
    match_their_ideas(napi, keys, lena, anna)
    notifications = napi.platform.runtime("notify").db["notifications"]
    wait_for(lambda: notifications.count_documents({"channel": "email", "attempts": {"$gte": 2}}) == 2, 30,
             message="failed tries while SMTP is down")
    smtp.start()
    wait_for(lambda: smtp.to("lena@example.org") and smtp.to("anna@example.org"), 30, 0.1,
             message="the mails after SMTP came back")
    assert len(smtp.mails()) == 2
    doc = notifications.find_one({"recipient": lena["id"], "channel": "email"})
    assert doc["status"] == "delivered" and not doc["log"][0]["ok"] and doc["log"][-1]["ok"]


def test_a_redelivered_event_sends_nothing_twice(napi: Api, smtp: SmtpServer):
    keys = napi.lab()
    lena, anna = authors(napi, keys)
    match_their_ideas(napi, keys, lena, anna)
    wait_for(lambda: len(smtp.mails()) == 2, 30, 0.1, message="the first two mails")
    napi.settle()
    [proposed] = napi.observer.of("match.proposed")
    # The same event (same id) arrives again, as after a broker redelivery or a relay re-run.
    envelope = {"id": proposed.id, "type": proposed.type, "version": proposed.version,
                "occurred_at": proposed.occurred_at, "partnership": proposed.partnership, "city": proposed.city,
                "correlation_id": proposed.correlation_id, "causation_id": proposed.causation_id,
                "producer": proposed.producer, "payload": proposed.payload}
    db = napi.platform.runtime("matching").db
    relay = outbox.Relay("again", db, ["again"], lambda: bus.make_publisher(napi.platform.settings))
    db["again"].insert_one(outbox.with_events({"_id": 1}, [envelope, envelope]))
    relay.relay_once()
    relay.stop()
    napi.settle()
    notifications = napi.platform.runtime("notify").db["notifications"]
    wait_for(lambda: napi.platform.runtime("notify").running[0].ready.is_set(), 5)
    assert len(smtp.mails()) == 2, "no second mail"
    assert notifications.count_documents({"event_id": proposed.id}) == 4, "2 people x (e-mail + inbox), once each"


def test_the_digest_collects_a_days_events_in_one_mail(napi: Api, smtp: SmtpServer):
    keys = napi.lab()
    lena, anna = authors(napi, keys, digest="daily")
    match_their_ideas(napi, keys, lena, anna)
    second = {**GARDEN_RU, "title": "Зелёные дворы Краснодара", "author_id": anna["id"]}
    napi.ok("POST", "/ideas", keys["krasnodar"], second)
    notifications = napi.platform.runtime("notify").db["notifications"]
    wait_for(lambda: notifications.count_documents({"recipient": lena["id"], "status": "digest"}) == 2, 30,
             message="two e-mails waiting for Lena's digest")
    assert smtp.to("lena@example.org") == [], "nothing sent at once"
    sender = napi.platform.service("notify").sender
    today = datetime.now(UTC).date().isoformat()
    assert sender.send_digests(today) == 2  # one digest for Lena, one for Anna
    assert sender.send_digests(today) == 0, "a day is digested once"
    wait_for(lambda: smtp.to("lena@example.org"), 30, 0.1, message="Lena's digest")
    [digest] = smtp.to("lena@example.org")
    body = text_of(digest)
    assert GARDEN_RU["title"] in body and "Зелёные дворы Краснодара" in body and today in body


def test_webhooks_refuse_private_targets_unless_allowed(request: pytest.FixtureRequest):
    with running_platform("memory://") as api:  # no TWINCITY_WEBHOOK_ALLOW
        keys = api.lab()
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest",
                    "http://[::1]/hook"):
            r = api.call("POST", "/webhooks", keys["karlsruhe"], {"url": url, "events": ["*"], "secret": SECRET})
            assert r.status_code == 422 and "TWINCITY_WEBHOOK_ALLOW" in str(r.json_body["errors"]), url
        r = api.call("POST", "/webhooks", keys["karlsruhe"], {"url": "ftp://example.org", "events": ["*"],
                                                              "secret": SECRET})
        assert r.status_code == 422
        r = api.call("POST", "/webhooks", keys["karlsruhe"], {"url": "http://x.invalid", "events": ["nope"],
                                                              "secret": "short"})
        assert r.status_code == 422 and {"events", "secret"} <= set(r.json_body["errors"])


def test_a_failing_receiver_is_retried_and_every_attempt_logged(napi: Api, receiver: Receiver):
    keys = napi.lab()
    receiver.status = 500
    hook = napi.ok("POST", "/webhooks", keys["karlsruhe"], {"url": receiver.url, "events": ["*"], "secret": SECRET})
    napi.call("POST", f"/webhooks/{hook['id']}/ping", keys["karlsruhe"])
    wait_for(lambda: len(receiver.calls) >= 2, 30, message="a retry after the 500")
    receiver.status = 204
    deliveries = f"/webhooks/{hook['id']}/deliveries"
    wait_for(lambda: napi.ok("GET", deliveries, keys["karlsruhe"])["items"][0]["status"] == "delivered", 30,
             message="the delivery once the receiver is well")
    [delivery] = napi.ok("GET", deliveries, keys["karlsruhe"])["items"]
    assert [a["status_code"] for a in delivery["log"]][-1] == 204 and delivery["log"][0]["status_code"] == 500
    assert len({c["headers"]["X-Twincity-Delivery"] for c in receiver.calls}) == 1, "the same delivery id"


def test_a_subscription_pauses_after_failures_in_a_row_holds_its_deliveries_and_resumes(
        napi: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch):
    import notify.sender

    monkeypatch.setattr(notify.sender, "PAUSE_AFTER", 3)
    keys = napi.lab()
    receiver.status = 503
    hook = napi.ok("POST", "/webhooks", keys["karlsruhe"], {"url": receiver.url, "events": ["*"], "secret": SECRET})
    path = f"/webhooks/{hook['id']}"
    idea = napi.ok("POST", "/ideas", keys["karlsruhe"], {"title": "Radtour", "theme": "leisure-youth-social",
                                                         "description": "Eine Radtour zwischen den Partnerstädten."})

    def delivery(n: int = 0) -> dict[str, Any]:  # of the idea submitted n-th (newest first in the list)
        found = [d for d in napi.ok("GET", f"{path}/deliveries", keys["karlsruhe"])["items"]
                 if d["event_type"] == "idea.submitted"][::-1]
        return found[n] if len(found) > n else {}

    wait_for(lambda: napi.ok("GET", path, keys["karlsruhe"])["status"] == "paused", 30, message="the pause")
    assert napi.ok("GET", path, keys["karlsruhe"])["consecutive_failures"] >= 3
    wait_for(lambda: delivery().get("status") == "held", 30, message="the delivery held while paused")
    later = napi.ok("POST", "/ideas", keys["karlsruhe"], {"title": "Chorreise", "theme": "leisure-youth-social",
                                                          "description": "Ein Chor besucht die Partnerstadt."})
    wait_for(lambda: delivery(1).get("status") == "held", 30, message="an event of the pause held too")
    tried = len(receiver.calls)
    receiver.status = 200
    napi.call("POST", f"{path}/ping", keys["karlsruhe"])  # a ping tests the receiver even while paused
    wait_for(lambda: len(receiver.calls) > tried, 30, message="the ping")
    assert [c["headers"]["X-Twincity-Event"] for c in receiver.calls[tried:]] == ["webhook.ping"]
    assert delivery()["status"] == "held" and napi.ok("GET", path, keys["karlsruhe"])["status"] == "paused"
    resumed = napi.ok("POST", f"{path}/resume", keys["karlsruhe"])
    assert resumed["status"] == "active" and resumed["consecutive_failures"] == 0
    wait_for(lambda: delivery(0).get("status") == delivery(1).get("status") == "delivered", 30,
             message="the held deliveries after resuming")
    sent = [json.loads(c["body"])["payload"]["idea_id"] for c in receiver.calls
            if c["headers"]["X-Twincity-Event"] == "idea.submitted"]
    assert {idea["id"], later["id"]} <= set(sent[-2:])


def test_a_sender_restarted_mid_send_sends_each_mail_once(napi: Api, smtp: SmtpServer,
                                                         monkeypatch: pytest.MonkeyPatch):
    """The worker stops with mails pending and one claimed (as if killed while sending it): after the
    restart every mail arrives once; the one in flight is sent when its lease runs out."""
    import notify.repository

    monkeypatch.setattr(notify.repository, "LEASE", timedelta(seconds=1))
    keys = napi.lab()
    lena, anna = authors(napi, keys)
    runtime = napi.platform.runtime("notify")
    sender = napi.platform.service("notify").sender
    original = sender.send_emails
    sender.send_emails = lambda: 0  # the sending half is "down" while the events come in
    try:
        match_their_ideas(napi, keys, lena, anna)
        notifications = runtime.db["notifications"]
        wait_for(lambda: notifications.count_documents({"channel": "email", "status": "pending"}) == 2, 30,
                 message="two pending e-mails")
        claimed = sender.repo.claim(notifications, {"channel": "email"})  # the crash
        assert claimed is not None and claimed["status"] == "sending"
    finally:
        sender.send_emails = original  # the restart
    wait_for(lambda: len(smtp.mails()) == 2, 30, 0.1, message="both mails after the restart")
    for _ in range(15):  # and no third one while the lease of the claimed mail runs out and after
        time.sleep(0.1)
        assert len(smtp.mails()) == 2
    ids = {m["Message-ID"] for m in smtp.mails()}
    assert len(ids) == 2 and any(claimed["_id"] in i for i in ids)


def test_idea_events_reach_notify_only_while_a_webhook_asks_for_them(napi: Api, receiver: Receiver):
    """Webhook-only events (every idea.*) are bound to notify's queue while a subscription names them: without
    one the broker does not deliver them to notify at all; with one, its receiver gets them from its 201 on."""
    from services import metrics

    handled = metrics.EVENTS_HANDLED.labels("notify", "idea.submitted")
    keys = napi.lab()
    napi.settle()
    before = handled._value.get()
    napi.ok("POST", "/ideas", keys["karlsruhe"], {**GARDEN_DE, "title": "Before any webhook"})
    napi.settle()
    assert handled._value.get() == before, "no subscription: notify is not sent idea.submitted"

    hook = napi.ok("POST", "/webhooks", keys["karlsruhe"],
                   {"url": receiver.url, "events": ["idea.submitted"], "secret": SECRET})
    idea = napi.ok("POST", "/ideas", keys["karlsruhe"], {**GARDEN_DE, "title": "After the webhook"})
    wait_for(lambda: any(c["headers"].get("X-Twincity-Event") == "idea.submitted" for c in receiver.calls), 30,
             message="the idea.submitted webhook call")
    napi.settle()
    calls = [json.loads(c["body"]) for c in receiver.calls if c["headers"]["X-Twincity-Event"] == "idea.submitted"]
    assert [c["payload"]["idea_id"] for c in calls] == [idea["id"]], "only the idea after the subscription"

    assert napi.call("DELETE", f"/webhooks/{hook['id']}", keys["karlsruhe"]).status_code == 204
    napi.settle()
    after_delete = handled._value.get()
    napi.ok("POST", "/ideas", keys["karlsruhe"], {**GARDEN_DE, "title": "After the webhook is gone"})
    napi.settle()
    assert handled._value.get() == after_delete, "the last subscription gone: unbound again"


def test_a_webhook_is_not_kept_when_its_events_can_not_be_bound(napi: Api, receiver: Receiver):
    keys = napi.lab()
    runtime = napi.platform.runtime("notify")

    def broker_down() -> set[str]:
        raise ConnectionRefusedError("broker down")

    runtime._sync_bindings_locked = broker_down
    try:
        r = napi.call("POST", "/webhooks", keys["karlsruhe"],
                      {"url": receiver.url, "events": ["idea.submitted"], "secret": SECRET})
        assert r.status_code == 503 and "nothing was kept" in r.json_body["detail"]
        assert r.headers["Retry-After"] == "5", "the API's rule: a 503 with Retry-After did nothing, send it again"
        assert napi.ok("GET", "/webhooks", keys["karlsruhe"])["items"] == []
    finally:
        del runtime._sync_bindings_locked
