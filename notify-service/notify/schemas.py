"""HTTP in and out of the notify service (marshmallow)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, pre_dump, validate, validates

from notify.domain import WEBHOOK_EVENTS
from services.web import cursor_field


class Strict(Schema):
    class Meta:
        unknown = RAISE


class WebhookIn(Strict):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2000))
    events = fields.List(fields.Str(validate=validate.OneOf((*WEBHOOK_EVENTS, "*"))), required=True,
                         validate=validate.Length(min=1, max=len(WEBHOOK_EVENTS)),
                         metadata={"description": "Event types to receive, or [\"*\"] for all."})
    secret = fields.Str(required=True, validate=validate.Length(min=16, max=200),
                        metadata={"description": "Key of each delivery's HMAC-SHA256 signature "
                                                 "(X-Twincity-Signature-V2)."})
    city = fields.Str(load_default=None, metadata={"description": "Only for admin keys: the city it listens for."})

    @validates("url")
    def _port(self, value: str, **_: object) -> None:
        try:
            port = urlsplit(value).port
        except ValueError:
            port = 0
        if port == 0:
            raise ValidationError("the port must be a number from 1 to 65535")

    @validates("events")
    def _no_mix(self, value: list[str], **_: object) -> None:
        if "*" in value and len(value) > 1:
            raise ValidationError("give [\"*\"] alone, or the event types")


class WebhookOut(Schema):
    id = fields.Str(attribute="_id")
    city = fields.Str()
    url = fields.Str()
    events = fields.List(fields.Str())
    status = fields.Str(metadata={"description": "active, or paused after repeated failures: its deliveries "
                                                 "are held until you resume it"})
    consecutive_failures = fields.Int()
    created_at = fields.DateTime()


class WebhookList(Schema):
    items = fields.List(fields.Nested(WebhookOut))


class Attempt(Schema):
    at = fields.DateTime()
    ok = fields.Bool()
    status_code = fields.Int(allow_none=True)
    error = fields.Str(allow_none=True)
    ms = fields.Float(allow_none=True)


class PingOut(Schema):
    status = fields.String(required=True, metadata={"description": "`queued`: the test delivery goes out next"})
    event_id = fields.String(required=True, metadata={"description": "the ping event's id; its delivery is in "
                                                                     "GET /webhooks/{id}/deliveries"})


class DeliveryOut(Schema):
    id = fields.Str(attribute="_id")
    event_id = fields.Str()
    event_type = fields.Function(lambda d: d["event"]["type"])
    status = fields.Str(metadata={"description": "pending, sending, delivered, failed, cancelled, or held "
                                                 "while its subscription is paused"})
    attempts = fields.Int()
    next_attempt_at = fields.DateTime()
    log = fields.List(fields.Nested(Attempt))


class DeliveryPage(Schema):
    items = fields.List(fields.Nested(DeliveryOut))
    next_cursor = fields.Str(allow_none=True)


class NotificationOut(Schema):
    id = fields.Str(attribute="_id")
    template = fields.Str()
    language = fields.Str()
    # What an inbox shows: the title, one line of what happened, and the link to open.
    title = fields.Str(metadata={"description": "The notification's title (its e-mail's subject)."})
    line = fields.Str(metadata={"description": "One short line of what happened, e.g. \"Anna Smirnova (Krasnodar): "
                                               "When shall we meet?\"."})
    subject = fields.Str()
    text = fields.Str(metadata={"description": "The whole message, as its e-mail says it."})
    link = fields.Str(allow_none=True, metadata={"description": "The page it is about (/projects/..., ...)."})
    event_type = fields.Str()
    created_at = fields.DateTime()
    read_at = fields.DateTime(allow_none=True)

    @pre_dump
    def _stored_before_lines(self, doc: Mapping[str, Any], **_: object) -> Mapping[str, Any]:
        """Notifications stored before they had a title and a line: their subject is both."""
        if doc.get("title") and doc.get("line"):
            return doc
        return {**doc, "title": doc.get("title") or doc.get("subject", ""),
                "line": doc.get("line") or doc.get("subject", "")}


class NotificationPage(Schema):
    items = fields.List(fields.Nested(NotificationOut))
    next_cursor = fields.Str(allow_none=True)


class InboxQuery(Strict):
    unread = fields.Bool(load_default=False)
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("ntf")


class PageQuery(Strict):
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("dlv")


class SignInMailIn(Strict):
    """The gateway asks for a sign-in e-mail: it made the link, notify writes and sends the mail."""

    participant_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    city = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    to = fields.Email(required=True, validate=validate.Length(max=254))
    # As the ideas service stored it (the template puts it on one line): a name kept from before today's rules for
    # names must not cost its owner the sign-in link.
    name = fields.Str(load_default="", validate=validate.Length(max=200))
    language = fields.Str(load_default="en", validate=validate.Length(max=8))
    link = fields.Url(required=True, require_tld=False, schemes={"http", "https"}, validate=validate.Length(max=2000))
    minutes = fields.Int(load_default=30, validate=validate.Range(min=1, max=24 * 60))
    token_id = fields.Str(required=True, validate=validate.Length(min=8, max=64),
                          metadata={"description": "The link's single-use id: one e-mail per link."})


class InvitationMailIn(Strict):
    """The gateway asks for an invitation e-mail: a city invites someone who is no participant yet."""

    invitation_id = fields.Str(required=True, validate=validate.Length(min=8, max=64))
    city = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    to = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.Str(load_default="", validate=validate.Length(max=200))
    language = fields.Str(load_default="en", validate=validate.Length(max=8))
    link = fields.Url(required=True, require_tld=False, schemes={"http", "https"}, validate=validate.Length(max=2000))
    days = fields.Int(load_default=14, validate=validate.Range(min=1, max=90))
    template = fields.Str(load_default="invitation", validate=validate.OneOf(
        ("invitation", "signup_confirm", "signup_approved", "signup_declined")),
        metadata={"description": "An invitation, or a sign-up's mail: confirm the address, approved, declined."})
