"""The notify service's internal HTTP API: webhooks, the in-app inbox, unsubscribing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, render_template_string, request
from marshmallow import ValidationError

from notify import domain, render
from notify.repository import NotFound, Repository
from notify.schemas import (
    DeliveryPage,
    InboxQuery,
    NotificationOut,
    NotificationPage,
    PageQuery,
    SignInMailIn,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from notify.sender import resolve
from services import lease
from services.config import Settings
from services.contract import now_iso
from services.inbox import derived_id
from services.openapi import ApiDocs
from services.store import new_id
from services.tenancy import Caller, caller
from services.web import Problem, json_body, problem_response, query_args

log = logging.getLogger(__name__)

DOCS = ApiDocs("notify")
DOCS.operation("/webhooks", "post", "Subscribe a URL to events of your city", tag="Webhooks", scope="write",
               body=WebhookIn, responses={201: WebhookOut},
               description="Each delivery is a POST of the event envelope with X-Twincity-Signature: "
                           "sha256=HMAC-SHA256(secret, body). Failed deliveries are retried with growing delays; "
                           "after 10 failures in a row the subscription pauses.")
DOCS.operation("/webhooks", "get", "Your city's webhook subscriptions", tag="Webhooks", responses={200: WebhookList})
DOCS.operation("/webhooks/{webhook_id}", "get", "One subscription", tag="Webhooks", responses={200: WebhookOut})
DOCS.operation("/webhooks/{webhook_id}", "delete", "Remove a subscription", tag="Webhooks", scope="write",
               responses={204: "Removed; pending deliveries are cancelled"})
DOCS.operation("/webhooks/{webhook_id}/ping", "post", "Send a test delivery now", tag="Webhooks", scope="write",
               responses={202: "Queued; see the deliveries"})
DOCS.operation("/webhooks/{webhook_id}/resume", "post", "Resume a paused subscription", tag="Webhooks",
               scope="write", responses={200: WebhookOut})
DOCS.operation("/webhooks/{webhook_id}/deliveries", "get", "Deliveries and every attempt", tag="Webhooks",
               query=PageQuery, responses={200: DeliveryPage})
DOCS.operation("/participants/{participant_id}/notifications", "get", "A participant's in-app inbox",
               tag="Notifications", query=InboxQuery, responses={200: NotificationPage},
               description="404 until the notify service has heard of the participant (participant.registered), "
                           "a moment after registering; read with a key of the participant's own city or an admin key.")
DOCS.operation("/participants/{participant_id}/notifications/{notification_id}/read", "post",
               "Mark a notification read", tag="Notifications", scope="write", responses={200: NotificationOut})

UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Twin City Lab</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
{% if done %}<p>Done: no more e-mails from Twin City Lab. · Erledigt: keine E-Mails mehr. ·
Готово: писем больше не будет.</p>
{% else %}<form method="post"><p>Stop e-mails from Twin City Lab? · Keine E-Mails mehr? ·
Больше не присылать письма?</p>
<button type="submit">Unsubscribe · Abmelden · Отписаться</button></form>{% endif %}
</body></html>"""

webhook_out, notification_out = WebhookOut(), NotificationOut()


def build(repo: Repository, settings: Settings, secret: str,
          bindings: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext) -> Blueprint:
    """`bindings()` is held around a change of the subscriptions: the worker queue's bindings follow it before
    the request is answered (Runtime.changing_bindings)."""
    bp = Blueprint("notify", __name__)

    @bp.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return problem_response(404, "Not Found", f"no {exc} here")

    def own_subscription(who: Caller, sid: str) -> dict[str, Any]:
        doc = repo.subscription(sid)
        if not who.can_change(doc["city"]):
            raise NotFound("webhook", sid)  # another city's webhooks do not exist for this key
        return doc

    @bp.post("/webhooks")
    def subscribe() -> tuple[Response, int]:
        who = caller()
        data = json_body(WebhookIn)
        asked = data.pop("city")
        if who.admin:
            if not asked or asked not in who.visible_cities:
                raise ValidationError({"city": ["an admin key must name a known city this webhook listens for"]})
            city = asked
        else:
            if asked and asked != who.city:
                raise Problem(403, "Forbidden", f"your key belongs to {who.city}; it subscribes for that city only")
            city = who.city
        try:
            addresses = resolve(data["url"])
        except (OSError, UnicodeError):
            raise ValidationError({"url": [f"{urlsplit(data['url']).hostname} does not resolve"]}) from None
        try:
            domain.check_addresses(addresses, settings.webhook_allow)
        except domain.UnsafeTarget as exc:
            raise ValidationError({"url": [str(exc)]}) from None
        events = list(domain.WEBHOOK_EVENTS) if data["events"] == ["*"] else data["events"]
        doc = None
        try:
            with bindings():  # stored, then bound, before any other process may unbind (services/runtime.py)
                doc = repo.add_subscription(city, data["url"], events, data["secret"])
        except lease.LockBusy:
            raise Problem(503, "Service Unavailable", "webhooks are being changed by another request; nothing "
                          "was kept: try again shortly") from None
        except Exception as exc:
            if doc is None:
                raise
            repo.delete_subscription(doc["_id"])
            log.warning("webhook %s not kept: its events could not be bound (%r)", doc["_id"], exc)
            raise Problem(503, "Service Unavailable", "the message broker does not answer right now, so this "
                          "webhook would miss events; nothing was kept: try again shortly") from None
        return jsonify(webhook_out.dump(doc)), 201

    @bp.get("/webhooks")
    def list_webhooks() -> Response:
        who = caller()
        return jsonify(items=webhook_out.dump(repo.subscriptions_of(None if who.admin else who.city), many=True))

    @bp.get("/webhooks/<sid>")
    def read_webhook(sid: str) -> Response:
        return jsonify(webhook_out.dump(own_subscription(caller(), sid)))

    @bp.delete("/webhooks/<sid>")
    def unsubscribe_webhook(sid: str) -> tuple[str, int]:
        doc = own_subscription(caller(), sid)
        deleted = False
        try:
            with bindings():
                repo.delete_subscription(doc["_id"])
                deleted = True
        except lease.LockBusy:
            raise Problem(503, "Service Unavailable", "webhooks are being changed by another request; the webhook "
                          "is still there: try again shortly") from None
        except Exception as exc:
            if not deleted:
                raise
            # a binding left over only delivers events no one listens to, until the worker's next check
            log.warning("webhook %s removed; its events stay bound until the worker's next check (%r)", sid, exc)
        return "", 204

    @bp.post("/webhooks/<sid>/ping")
    def ping(sid: str) -> tuple[Response, int]:
        doc = own_subscription(caller(), sid)
        event_id = new_id("ping")
        envelope = {"id": event_id, "type": domain.PING, "version": 1, "occurred_at": now_iso(),
                    "city": doc["city"], "producer": "notify", "payload": {"webhook_id": sid}}
        repo.add_delivery({"key": event_id, "subscription_id": sid, "city": doc["city"], "event": envelope,
                           "event_id": event_id})
        return jsonify(status="queued", event_id=event_id), 202

    @bp.post("/webhooks/<sid>/resume")
    def resume(sid: str) -> Response:
        doc = own_subscription(caller(), sid)
        repo.resume_subscription(doc["_id"])
        return jsonify(webhook_out.dump(repo.subscription(sid)))

    @bp.get("/webhooks/<sid>/deliveries")
    def deliveries(sid: str) -> Response:
        own_subscription(caller(), sid)
        query = query_args(PageQuery)
        items, next_cursor = repo.deliveries_of(sid, query["limit"], query.get("cursor"))
        return jsonify(DeliveryPage().dump({"items": items, "next_cursor": next_cursor}))

    def own_person(who: Caller, pid: str) -> dict[str, Any]:
        person = repo.person(pid)
        if person is None or person.get("erased") or not who.can_change(person.get("city")):
            raise NotFound("participant", pid)  # an inbox is private to the person's own city
        return person

    @bp.get("/participants/<pid>/notifications")
    def inbox(pid: str) -> Response:
        own_person(caller(), pid)
        query = query_args(InboxQuery)
        items, next_cursor = repo.inbox_of(pid, query["limit"], query.get("cursor"), query["unread"])
        return jsonify(NotificationPage().dump({"items": items, "next_cursor": next_cursor}))

    @bp.post("/participants/<pid>/notifications/<nid>/read")
    def read(pid: str, nid: str) -> Response:
        own_person(caller(), pid)
        return jsonify(notification_out.dump(repo.mark_read(pid, nid)))

    @bp.post("/sign-in-mails")
    def sign_in_mail() -> tuple[Response, int]:
        """A sign-in link by e-mail (internal: the gateway's web pages ask; never routed from /api/v1)."""
        who = caller()
        if not who.admin:
            raise Problem(403, "Forbidden", "only the gateway itself asks for sign-in e-mails")
        data = json_body(SignInMailIn)
        lang = domain.language_of({"language": data["language"]})
        token = domain.unsubscribe_token(secret, data["participant_id"])
        unsubscribe_url = f"{settings.public_url}/unsubscribe/{token}"
        subject, text, html = render.render("sign_in", lang, {
            "recipient_name": data["name"], "link": data["link"], "minutes": data["minutes"],
            "unsubscribe_url": unsubscribe_url})
        # Sent even to people who unsubscribed from notifications: they asked for this one themselves.
        status = "pending" if settings.smtp_url else "skipped"
        extra = {} if settings.smtp_url else {"skipped_because": "no SMTP_URL configured"}
        repo.add_notification({
            **extra, "key": derived_id("sign-in", data["token_id"]), "recipient": data["participant_id"],
            "city": data["city"], "channel": "email", "template": "sign_in", "language": lang, "subject": subject,
            "text": text, "html": html, "to": data["to"], "status": status, "event_id": data["token_id"],
            "event_type": "sign_in", "link": None, "unsubscribe_url": unsubscribe_url})
        return jsonify(status=status), 202

    @bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
    def unsubscribe(token: str) -> Response:
        pid = domain.check_unsubscribe_token(secret, token)
        if pid is None:
            raise Problem(404, "Not Found", "this unsubscribe link is not valid")
        if request.method == "POST":  # a GET only shows the button: mail scanners follow links
            repo.unsubscribe(pid)
        return Response(render_template_string(UNSUBSCRIBE_PAGE, done=request.method == "POST"),
                        mimetype="text/html")

    return bp

