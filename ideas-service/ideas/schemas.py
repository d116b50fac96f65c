"""HTTP in and out of the ideas service (marshmallow); the gateway's OpenAPI document is built from these."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate

from ideas.domain import STATUSES
from services.contract import LANGUAGES
from services.text import OneLine, Text
from services.web import cursor_field


def _known_zone(value: str) -> None:
    if value != "UTC" and "/" not in value:  # not a place's zone ("localtime", "Factory", "posixrules")
        raise ValidationError(f"unknown time zone {value!r}: an IANA name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {value!r}: an IANA name such as Europe/Berlin") from None


KEY = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,63}$", error="must be lower-case letters, digits, '-' or '_'")


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class Strict(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error the client should hear about

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            return {k: _stripped(v) for k, v in data.items()}
        return data


def _short_list(max_items: int, max_len: int) -> fields.List:
    return fields.List(
        OneLine(validate=validate.Length(min=1, max=max_len)),
        validate=validate.Length(max=max_items),
        load_default=list,
    )


class IdeaIn(Strict):
    title = OneLine(required=True, validate=validate.Length(min=3, max=200),
                       metadata={"description": "A short title, in the author's language."})
    description = Text(load_default="", validate=validate.Length(max=5000))
    # Checked against the themes of the idea's city (GET /themes): "unknown theme 'X'; one of: ..." names them.
    theme = fields.Str(required=True, validate=validate.Length(max=64),
                       metadata={"description": "A theme key of the partnership, see GET /themes."})
    tags = _short_list(20, 50)
    seeks = _short_list(10, 300)
    offers = _short_list(10, 300)
    language = fields.Str(validate=validate.OneOf(LANGUAGES), load_default=None,
                          metadata={"description": "ISO 639-1 code; detected from the text when left out."})
    author_id = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=64))
    round_id = OneLine(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "A round of the idea's partnerships, by id or name, that still "
                                                "collects ideas; default the current round."})
    city = fields.Str(load_default=None, validate=KEY,
                      metadata={"description": "Only for admin keys: the city the idea belongs to."})
    partnerships = fields.List(fields.Str(validate=KEY), validate=validate.Length(min=1, max=50), load_default=None,
                               metadata={"description": "The partnerships it is shown in and matched in (default: "
                                                        "all of its city's). A partner city outside them never sees "
                                                        "it: an idea meant for one partner city only."})

    @post_load
    def _tags_lower(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "tags" in data:
            data["tags"] = list(dict.fromkeys(t.lower() for t in data["tags"]))
        return data


class IdeaRow(IdeaIn):
    """One idea of an import (a workshop's CSV): the author may be named by e-mail address."""

    author_email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=254),
                                metadata={"description": "The author, by e-mail address in the idea's city."})


class ImportIn(Strict):
    ideas = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1, max=500),
                        metadata={"description": "The ideas (fields as for POST /ideas, or author_email)."})
    dry_run = fields.Bool(load_default=False,
                          metadata={"description": "Only check every row; store nothing."})
    round_id = OneLine(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "The round the rows join, by id or name (a row may name its own); "
                                                "default the partnership's current round."})


class RoundIn(Strict):
    name = OneLine(required=True, validate=validate.Length(min=1, max=200),
                   metadata={"description": "e.g. Twin City Lab 2027"})
    collect_until = fields.Date(required=True, metadata={"description": "The last day ideas are collected."})
    workshop_at = fields.AwareDateTime(required=True, metadata={
        "description": "When the bilateral workshop is (RFC 3339 with offset): after collecting ends."})
    projects_from = fields.Date(required=True, metadata={"description": "The day projects start: on or after the "
                                                                       "workshop's day."})
    timezone = fields.Str(load_default="UTC", validate=_known_zone, metadata={
        "description": "IANA zone the days are read in (collecting ends at midnight there), default UTC."})


class RoundPatch(Strict):
    name = OneLine(validate=validate.Length(min=1, max=200))
    collect_until = fields.Date(metadata={"description": "The last day ideas are collected (a later day collects "
                                                         "again, when no other round of the partnership does)."})
    workshop_at = fields.AwareDateTime(metadata={"description": "When the bilateral workshop is (RFC 3339 with "
                                                                "offset)."})
    projects_from = fields.Date()
    timezone = fields.Str(validate=_known_zone, metadata={"description": "IANA zone the days are read in."})
    version = fields.Int(strict=True, metadata={"description": "The version you read: 409 when it changed since."})


class RoundOut(Schema):
    id = fields.Str(attribute="_id")
    partnership = fields.Str()
    cities = fields.List(fields.Str())
    name = fields.Str()
    collect_until = fields.Str()
    workshop_at = fields.DateTime()
    projects_from = fields.Str()
    timezone = fields.Str()
    phase = fields.Str(metadata={"description": "collecting, matching, projects or closed: from the dates, or further "
                                               "when a coordinator moved it on (POST /rounds/{id}/advance)."})
    created_at = fields.DateTime()
    version = fields.Int()


class RoundList(Schema):
    items = fields.List(fields.Nested(RoundOut))


class RoundIdea(Schema):
    id = fields.Str(attribute="_id")
    city = fields.Str()
    theme = fields.Str()
    language = fields.Str()
    status = fields.Str()
    created_at = fields.DateTime()


class RoundFigures(Schema):
    round = fields.Nested(RoundOut)
    ideas = fields.List(fields.Nested(RoundIdea))
    authors_by_city = fields.Dict(keys=fields.Str(), values=fields.Int())
    registered_by_city = fields.Dict(keys=fields.Str(), values=fields.Int())


class IdeaPatch(IdeaIn):
    version = fields.Int(strict=True, validate=validate.Range(min=1),
                         metadata={"description": "The version you read; a newer one gives 409."})

    class Meta:
        unknown = RAISE
        exclude = ("author_id", "city")


class IdeaOut(Schema):
    id = fields.Str(attribute="_id")
    city = fields.Str()
    partnerships = fields.List(fields.Str())
    round_id = fields.Str(allow_none=True)
    title = fields.Str()
    description = fields.Str()
    theme = fields.Str()
    tags = fields.List(fields.Str())
    seeks = fields.List(fields.Str())
    offers = fields.List(fields.Str())
    language = fields.Str()
    language_detected = fields.Bool()
    author_id = fields.Str(allow_none=True)
    status = fields.Str(validate=validate.OneOf(STATUSES))
    version = fields.Int()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ImportOut(Schema):
    count = fields.Int()
    dry_run = fields.Bool()
    items = fields.List(fields.Nested(IdeaOut), metadata={"description": "The stored ideas (empty on a dry run)."})


class IdeaPage(Schema):
    items = fields.List(fields.Nested(IdeaOut))
    next_cursor = fields.Str(allow_none=True)


class TranslationOut(Schema):
    language = fields.Str(metadata={"description": "The language asked for."})
    title = fields.Str()
    description = fields.Str()
    machine = fields.Bool(metadata={"description": "Always true: a machine translation, not the author's words."})
    provider = fields.Str(metadata={"description": "Which service translated it (e.g. LibreTranslate)."})
    translated_at = fields.DateTime()
    error = fields.Str(metadata={"description": "Why there is no translation now (the service is off, down or "
                                                "slow); the idea is shown as written."})


class IdeaRead(IdeaOut):
    translation = fields.Nested(TranslationOut, allow_none=True,
                                metadata={"description": "With ?translate=: the title and description in that "
                                                         "language (null when written in it)."})


class ReadQuery(Strict):
    translate = fields.Str(validate=validate.Regexp(r"^[a-z]{2}$", error="an ISO 639-1 code, e.g. ru"),
                           metadata={"description": "A language to translate the title and description into "
                                                    "(machine translation, when the platform has it set up)."})


class IdeaQuery(Strict):
    city = fields.Str(validate=KEY)
    theme = fields.Str(validate=KEY)
    status = fields.Str(validate=validate.OneOf(STATUSES))
    language = fields.Str(validate=validate.OneOf(LANGUAGES))
    author_id = fields.Str(validate=validate.Length(max=64))
    q = fields.Str(validate=validate.Length(min=1, max=200))
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("idea")


class Preferences(Strict):
    # A person's channels; webhooks belong to a city (POST /webhooks), not to a person.
    channels = fields.List(fields.Str(validate=validate.OneOf(("email", "inbox"))),
                           validate=validate.Length(max=2), load_default=lambda: ["email", "inbox"])

    @pre_load
    def _no_webhook_channel(self, data: Any, **_: Any) -> Any:
        """"webhook" was accepted once and did nothing: preferences read back with it still save."""
        if isinstance(data, dict) and isinstance(data.get("channels"), list):
            return {**data, "channels": [c for c in data["channels"] if c != "webhook"]}
        return data
    digest = fields.Str(validate=validate.OneOf(("immediate", "daily")), load_default="immediate")


class ParticipantIn(Strict):
    name = OneLine(required=True, validate=validate.Length(min=1, max=200))
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=254))
    language = fields.Str(required=True, validate=validate.OneOf(LANGUAGES))
    languages = fields.List(fields.Str(validate=validate.OneOf(LANGUAGES)), validate=validate.Length(max=9),
                            load_default=list)
    interests = Text(load_default="", validate=validate.Length(max=2000))
    preferences = fields.Nested(Preferences, load_default=lambda: Preferences().load({}))
    city = fields.Str(load_default=None, validate=KEY,
                      metadata={"description": "Only for admin keys: the participant's city."})


class ParticipantPatch(ParticipantIn):
    version = fields.Int(strict=True, validate=validate.Range(min=1))

    class Meta:
        unknown = RAISE
        exclude = ("city",)


class ParticipantQuery(Strict):
    email = fields.Email(required=True, validate=validate.Length(max=254))


class ParticipantOut(Schema):
    id = fields.Str(attribute="_id")
    city = fields.Str()
    name = fields.Str()
    email = fields.Str(allow_none=True)
    language = fields.Str()
    languages = fields.List(fields.Str())
    interests = fields.Str()
    preferences = fields.Nested(Preferences)
    version = fields.Int()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ParticipantList(Schema):
    items = fields.List(fields.Nested(ParticipantOut))


class ParticipantPage(Schema):
    items = fields.List(fields.Nested(ParticipantOut))
    next_cursor = fields.Str(allow_none=True)


class ParticipantsQuery(Strict):
    q = OneLine(validate=validate.Length(max=100), metadata={"description": "Part of a name or e-mail address."})
    city = fields.Str(validate=KEY, metadata={"description": "Only for admin keys: whose participants."})
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("prt")


class AdoptedOut(Schema):
    adopted = fields.Int(metadata={"description": "How many ideas the partnership took in."})


class AdvanceIn(Strict):
    from_phase = fields.Str(validate=validate.OneOf(("collecting", "matching", "projects", "closed")),
                            metadata={"description": "The phase you saw it in: 409 when it moved on meanwhile."})
