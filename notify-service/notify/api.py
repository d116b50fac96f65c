"""The notify service's internal HTTP API: webhooks, the in-app inbox, sign-in mails, unsubscribing. Thin routes,
each parsing its request, calling one use case (usecases.py) and answering."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from flask import Blueprint, Response, current_app, jsonify, render_template_string, request

from notify import usecases
from notify.repository import Repository
from notify.schemas import (
    DeliveryPage,
    InboxQuery,
    InvitationMailIn,
    NotificationOut,
    NotificationPage,
    PageQuery,
    PingOut,
    SignInMailIn,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from services.openapi import ApiDocs
from services.store import NotFound
from services.tenancy import caller
from services.web import json_body, problem_response, query_args

DOCS = ApiDocs("notify")
DOCS.operation("/webhooks", "post", "Subscribe a URL to events of your city",
               operation_id="createWebhook", tag="Webhooks", scope="write",
               body=WebhookIn, responses={201: WebhookOut},
               description="Each delivery is a POST of the event envelope with X-Twincity-Timestamp (Unix "
                           "seconds) and X-Twincity-Signature-V2: sha256=HMAC-SHA256(secret, \"<X-Twincity-Delivery>."
                           "<X-Twincity-Timestamp>.<body>\"): refuse a timestamp more than five minutes off "
                           "(docs/integrate.md). Failed deliveries are retried with growing delays; after 10 "
                           "failures in a row the subscription pauses.")
DOCS.operation("/webhooks", "get", "Your city's webhook subscriptions", tag="Webhooks", responses={200: WebhookList})
DOCS.operation("/webhooks/{webhook_id}", "get", "One subscription", tag="Webhooks", responses={200: WebhookOut})
DOCS.operation("/webhooks/{webhook_id}", "delete", "Remove a subscription",
               operation_id="deleteWebhook", tag="Webhooks", scope="write",
               responses={204: "Removed; pending deliveries are cancelled"})
DOCS.operation("/webhooks/{webhook_id}/ping", "post", "Send a test delivery now",
               operation_id="pingWebhook", tag="Webhooks", scope="write",
               responses={202: PingOut})
DOCS.operation("/webhooks/{webhook_id}/resume", "post", "Resume a paused subscription",
               operation_id="resumeWebhook", tag="Webhooks",
               scope="write", responses={200: WebhookOut})
DOCS.operation("/webhooks/{webhook_id}/deliveries", "get", "Deliveries and every attempt",
               operation_id="listWebhookDeliveries", tag="Webhooks",
               query=PageQuery, responses={200: DeliveryPage})
DOCS.operation("/participants/{participant_id}/notifications", "get", "A participant's in-app inbox",
               operation_id="listNotifications",
               tag="Notifications", query=InboxQuery, responses={200: NotificationPage},
               description="404 until the notify service has heard of the participant (participant.registered), "
                           "a moment after registering; read with a key of the participant's own city or an admin key.")
DOCS.operation("/participants/{participant_id}/notifications/{notification_id}/read", "post",
               "Mark a notification read", operation_id="markNotificationRead", tag="Notifications", scope="write",
               responses={200: NotificationOut})

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
bp = Blueprint("notify", __name__)
EXTENSION = "twincity.notify"  # app.extensions[EXTENSION]: the service's wiring (bootstrap.NotifyService)


class Wired(Protocol):
    repo: Repository
    letterhead: usecases.Letterhead
    webhook_allow: Sequence[str]

    def bindings(self) -> AbstractContextManager[None]: ...


def wired() -> Wired:
    return current_app.extensions[EXTENSION]


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return problem_response(404, "Not Found", f"no {exc} here")


@bp.post("/webhooks")
def subscribe() -> tuple[Response, int, dict[str, str]]:
    doc = usecases.subscribe(wired().repo, caller(), json_body(WebhookIn), wired().webhook_allow, wired().bindings)
    return jsonify(webhook_out.dump(doc)), 201, {"Location": f"/webhooks/{doc['_id']}"}


@bp.get("/webhooks")
def list_webhooks() -> Response:
    return jsonify(items=webhook_out.dump(usecases.list_webhooks(wired().repo, caller()), many=True))


@bp.get("/webhooks/<sid>")
def read_webhook(sid: str) -> Response:
    return jsonify(webhook_out.dump(usecases.own_subscription(wired().repo, caller(), sid)))


@bp.delete("/webhooks/<sid>")
def unsubscribe_webhook(sid: str) -> tuple[str, int]:
    usecases.unsubscribe_webhook(wired().repo, caller(), sid, wired().bindings)
    return "", 204


@bp.post("/webhooks/<sid>/ping")
def ping(sid: str) -> tuple[Response, int]:
    return jsonify(status="queued", event_id=usecases.ping(wired().repo, caller(), sid)), 202


@bp.post("/webhooks/<sid>/resume")
def resume(sid: str) -> Response:
    return jsonify(webhook_out.dump(usecases.resume(wired().repo, caller(), sid)))


@bp.get("/webhooks/<sid>/deliveries")
def deliveries(sid: str) -> Response:
    who, query = caller(), query_args(PageQuery)
    items, next_cursor = usecases.deliveries(wired().repo, who, sid, query["limit"], query.get("cursor"))
    return jsonify(DeliveryPage().dump({"items": items, "next_cursor": next_cursor}))


@bp.get("/participants/<pid>/notifications")
def inbox(pid: str) -> Response:
    who, query = caller(), query_args(InboxQuery)
    items, next_cursor = usecases.inbox(wired().repo, who, pid, query)
    return jsonify(NotificationPage().dump({"items": items, "next_cursor": next_cursor}))


@bp.post("/participants/<pid>/notifications/<nid>/read")
def read(pid: str, nid: str) -> Response:
    return jsonify(notification_out.dump(usecases.mark_read(wired().repo, caller(), pid, nid)))


@bp.post("/sign-in-mails")
def sign_in_mail() -> tuple[Response, int]:
    """A sign-in link by e-mail (internal: the gateway's web pages ask; never routed from /api/v1)."""
    who = caller()
    status = usecases.sign_in_mail(wired().repo, who, wired().letterhead, json_body(SignInMailIn) if who.admin else {})
    return jsonify(status=status), 202


@bp.post("/invitation-mails")
def invitation_mail() -> tuple[Response, int]:
    """An invitation by e-mail (internal: the gateway asks; never routed from /api/v1)."""
    who = caller()
    status = usecases.invitation_mail(wired().repo, who, wired().letterhead,
                                      json_body(InvitationMailIn) if who.admin else {})
    return jsonify(status=status), 202


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Response:
    confirm = request.method == "POST"  # a GET only shows the button: mail scanners follow links
    usecases.unsubscribe(wired().repo, wired().letterhead, token, confirm=confirm)
    return Response(render_template_string(UNSUBSCRIBE_PAGE, done=confirm), mimetype="text/html")
