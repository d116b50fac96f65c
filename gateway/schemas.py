"""HTTP in and out of the gateway's own resources: cities, partnerships, API keys, themes."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from gateway.domain import SCOPES, zone_of
from services.contract import LANGUAGES
from services.text import OneLine
from services.web import cursor_field

KEY = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,63}$", error="must be lower-case letters, digits, '-' or '_'")


class Strict(Schema):
    class Meta:
        unknown = RAISE


def city_names(**kw: object) -> fields.Dict:
    """A city's names in other languages (new and changed cities alike)."""
    return fields.Dict(keys=fields.Str(validate=validate.Regexp(r"^[a-z]{2}$", error="ISO 639-1 code, e.g. ru")),
                       values=OneLine(validate=validate.Length(min=1, max=200)), **kw,
                       validate=validate.Length(max=20),
                       metadata={"description": "Its name in other languages, e.g. {\"ru\": \"Карлсруэ\"}: shown to "
                                                "readers of that language, and never taken for what an idea is "
                                                "about when ideas are matched."})


def time_zone(**kw: object) -> fields.Str:
    return fields.Str(validate=_known_zone, metadata={"description": "Its IANA time zone, e.g. Europe/Berlin or "
                                                                   "Europe/Moscow: its people see meeting times in "
                                                                   "it. Default: its country's (DE Europe/Berlin, "
                                                                   "RU Europe/Moscow), else UTC."}, **kw)


def _known_zone(value: str) -> None:
    if value not in _zones():
        raise ValidationError(f"unknown time zone {value!r}: an IANA name such as Europe/Berlin or Europe/Moscow")


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class CityIn(Strict):
    key = fields.Str(required=True, validate=KEY, metadata={"description": "Short id, e.g. karlsruhe."})
    name = OneLine(required=True, validate=validate.Length(min=1, max=200))
    country = fields.Str(required=True, validate=validate.Regexp(r"^[A-Z]{2}$", error="ISO 3166 code, e.g. DE"))
    language = fields.Str(required=True, validate=validate.OneOf(LANGUAGES),
                          metadata={"description": "The city's default language (ISO 639-1)."})
    names = city_names(load_default=dict)
    timezone = time_zone()


class CityPatch(Strict):
    name = OneLine(validate=validate.Length(min=1, max=200))
    names = city_names()
    timezone = time_zone()


class CityOut(Schema):
    key = fields.Str(attribute="_id")
    sign_up = fields.Str(dump_default="closed", metadata={"description": "Whether people may sign up by themselves: "
                                                                       "closed, open or approval."})
    name = fields.Str()
    country = fields.Str()
    language = fields.Str()
    names = fields.Dict(keys=fields.Str(), values=fields.Str())
    timezone = fields.Function(zone_of)


class ThemeIn(Strict):
    key = fields.Str(required=True, validate=KEY)
    labels = fields.Dict(keys=fields.Str(validate=validate.OneOf(LANGUAGES)),
                         values=OneLine(validate=validate.Length(min=1, max=100)),
                         required=True, validate=validate.Length(min=1))


class PartnershipIn(Strict):
    cities = fields.List(fields.Str(validate=KEY), required=True, validate=validate.Length(equal=2))
    name = OneLine(required=True, validate=validate.Length(min=1, max=200))
    id = fields.Str(validate=KEY, metadata={"description": "Optional; default <city-a>-<city-b>."})
    themes = fields.List(fields.Nested(ThemeIn), load_default=list, validate=validate.Length(max=20),
                         metadata={"description": "The partnership's own themes, beside the common four."})


class ThemeOut(Schema):
    key = fields.Str()
    labels = fields.Dict(keys=fields.Str(), values=fields.Str())
    partnership = fields.Str(allow_none=True, metadata={"description": "null for the common themes."})


class PartnershipOut(Schema):
    id = fields.Str(attribute="_id")
    name = fields.Str()
    cities = fields.List(fields.Str())
    themes = fields.List(fields.Nested(ThemeOut))


class ApiKeyIn(Strict):
    city = fields.Str(load_default=None, allow_none=True, validate=KEY,
                      metadata={"description": "The city the key acts for; leave out for an admin key."})
    scopes = fields.List(fields.Str(validate=validate.OneOf(SCOPES)), required=True,
                         validate=validate.Length(min=1, max=3))
    label = OneLine(load_default="", validate=validate.Length(max=200))
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=UTC,
                                      metadata={"description": "When the key stops working (ISO 8601; UTC when no "
                                                               "offset is given); none: it works until revoked."})


class ApiKeyOut(Schema):
    id = fields.Str()
    city = fields.Str(allow_none=True)
    scopes = fields.List(fields.Str())
    label = fields.Str()
    revoked = fields.Bool()
    created_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True, metadata={"description": "To the minute."})
    rotated_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "null: works until revoked."})
    expired = fields.Bool()
    key = fields.Str(metadata={"description": "The secret: shown once, at creation or rotation, never again."})


class CityList(Schema):
    items = fields.List(fields.Nested(CityOut))


class PartnershipList(Schema):
    items = fields.List(fields.Nested(PartnershipOut))


class ThemeList(Schema):
    items = fields.List(fields.Nested(ThemeOut))


class ApiKeyList(Schema):
    items = fields.List(fields.Nested(ApiKeyOut))


class ThemeQuery(Strict):
    partnership = fields.Str(validate=KEY)


class NoQuery(Strict):
    """A list that comes whole (cities, partnerships, keys): it takes no query parameters."""


class PageQuery(Strict):
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("aud")


class AuditEntry(Schema):
    id = fields.Str(attribute="_id")
    at = fields.DateTime()
    key_id = fields.Str(metadata={"description": "The admin key that acted, or cli for `twincity admin`."})
    action = fields.Str()
    target = fields.Str()
    status = fields.Int(allow_none=True)
    request_id = fields.Str(allow_none=True)


class AuditPage(Schema):
    items = fields.List(fields.Nested(AuditEntry))
    next_cursor = fields.Str(allow_none=True)


class _Counts(fields.Dict):
    def __init__(self, **kw: object) -> None:
        super().__init__(keys=fields.Str(), values=fields.Int(), **kw)


class ReportIdeas(Schema):
    total = fields.Int()
    by_theme_and_city = fields.Dict(keys=fields.Str(), values=_Counts(),
                                    metadata={"description": "theme -> city -> ideas"})
    by_city = _Counts()
    by_language = _Counts()
    by_status = _Counts()


class ReportTotals(Schema):
    total = fields.Int()
    by_status = _Counts()
    by_kind = _Counts()


class ReportProjects(Schema):
    total = fields.Int()
    by_status = _Counts(metadata={"description": "forming, active, paused, done"})


class ReportParticipants(Schema):
    authors_by_city = _Counts(metadata={"description": "People who wrote ideas of the round"})
    registered_by_city = _Counts(metadata={"description": "Participants of each city"})


class ReportWaiting(Schema):
    ideas_proposed = fields.Int()
    ideas_waiting = fields.Int(metadata={"description": "Ideas of the round without any proposal yet"})
    median_hours = fields.Float(allow_none=True)
    p90_hours = fields.Float(allow_none=True)
    max_hours = fields.Float(allow_none=True)


class RoundReport(Schema):
    round = fields.Dict(metadata={"description": "The round, as GET /rounds/{id} gives it"})
    ideas = fields.Nested(ReportIdeas)
    matches = fields.Nested(ReportTotals)
    projects = fields.Nested(ReportProjects)
    participants = fields.Nested(ReportParticipants)
    first_proposal = fields.Nested(ReportWaiting)


class InvitationIn(Strict):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = OneLine(load_default="", validate=validate.Length(max=200),
                   metadata={"description": "How the e-mail greets them (they confirm their name themselves)."})
    language = fields.Str(required=True, validate=validate.OneOf(LANGUAGES),
                          metadata={"description": "The language of the e-mail and of their pages."})
    city = fields.Str(validate=KEY, metadata={"description": "Only for admin keys: the inviting city."})


class InvitationOut(Schema):
    id = fields.Str(attribute="_id")
    city = fields.Str()
    email = fields.Str()
    name = fields.Str()
    language = fields.Str()
    status = fields.Str(metadata={"description": "sent, or accepted"})
    participant_id = fields.Str(allow_none=True, metadata={"description": "Whom it made, once accepted."})
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    accepted_at = fields.DateTime(allow_none=True)
    link = fields.Str(metadata={"description": "Only under twincity dev (no mail server): the invitation's link, "
                                               "to open it yourself."})


class InvitationList(Schema):
    items = fields.List(fields.Nested(InvitationOut))


class InvitationQuery(Strict):
    city = fields.Str(validate=KEY, metadata={"description": "Only for admin keys: whose invitations."})


class SignUpMode(Strict):
    mode = fields.Str(required=True, validate=validate.OneOf(("closed", "open", "approval")),
                      metadata={"description": "closed, open, or approval (a coordinator says yes to each)"})


class SignUpOut(Schema):
    id = fields.Str(attribute="_id")
    city = fields.Str()
    email = fields.Str()
    name = fields.Str()
    language = fields.Str()
    interests = fields.Str()
    status = fields.Str(metadata={"description": "requested (address not confirmed yet), confirmed (waiting for "
                                               "a yes or no), accepted, declined"})
    participant_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()


class SignUpList(Schema):
    items = fields.List(fields.Nested(SignUpOut))
