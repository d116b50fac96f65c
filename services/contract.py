"""The event contract: the envelope and one versioned marshmallow schema per event type.

Every event is checked twice: when it is made (`new_event`) and when it is consumed (`parse_event`).
Consumers ignore unknown fields, so adding an optional field is not a breaking change; a breaking change
is a new version, registered beside the old one with an upcaster so consumers keep reading both.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from services import context

LANGUAGES = ("de", "ru", "en", "fr", "uk", "pl", "it", "es", "tr")


class ContractError(ValueError):
    """An event does not fit the contract. `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: Any = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail is not None else reason)


class Lenient(Schema):
    class Meta:
        unknown = EXCLUDE  # consumers ignore fields they do not know


def _iso_datetime(value: str) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValidationError("must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValidationError("must carry a time zone (UTC: +00:00)")


def _uuid(value: str) -> None:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise ValidationError("must be a UUID") from None




def _key(**kw: Any) -> fields.Str:
    return fields.Str(validate=validate.Length(min=1, max=100), **kw)


def _text(max_len: int, **kw: Any) -> fields.Str:
    return fields.Str(validate=validate.Length(max=max_len), **kw)


class EnvelopeSchema(Lenient):
    id = fields.Str(required=True, validate=_uuid)
    type = fields.Str(required=True, validate=validate.Regexp(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$"))
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = fields.Str(required=True, validate=_iso_datetime)
    partnership = fields.Str(load_default=None, allow_none=True)
    city = fields.Str(load_default=None, allow_none=True)
    correlation_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    causation_id = fields.Str(load_default=None, allow_none=True)
    producer = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    payload = fields.Dict(required=True)


# --- payloads ------------------------------------------------------------------------------------

class IdeaV1(Lenient):
    """A full snapshot of an idea; `version` is the idea document's version (stale snapshots change nothing)."""

    idea_id = _key(required=True)
    city = _key(required=True)
    partnerships = fields.List(_key(), load_default=list)
    round_id = _key(load_default=None, allow_none=True)
    title = _text(300, required=True)
    description = _text(10_000, load_default="")
    theme = _key(required=True)
    tags = fields.List(_text(100), load_default=list)
    seeks = fields.List(_text(300), load_default=list)
    offers = fields.List(_text(300), load_default=list)
    language = fields.Str(required=True, validate=validate.OneOf(LANGUAGES))
    author_id = _key(load_default=None, allow_none=True)
    status = fields.Str(required=True, validate=validate.OneOf(("open", "matched", "in_project", "withdrawn")))
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class IdeaUpdatedV1(IdeaV1):
    changed = fields.List(fields.Str(), load_default=list)


class IdeaWithdrawnV1(Lenient):
    idea_id = _key(required=True)
    city = _key(required=True)
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class PreferencesV1(Lenient):
    channels = fields.List(fields.Str(validate=validate.OneOf(("email", "inbox", "webhook"))),
                           load_default=lambda: ["email", "inbox"])
    digest = fields.Str(validate=validate.OneOf(("immediate", "daily")), load_default="immediate")


class ParticipantV1(Lenient):
    participant_id = _key(required=True)
    city = _key(required=True)
    name = _text(200, required=True)
    email = fields.Email(load_default=None, allow_none=True)
    language = fields.Str(required=True, validate=validate.OneOf(LANGUAGES))
    languages = fields.List(fields.Str(validate=validate.OneOf(LANGUAGES)), load_default=list)
    interests = _text(5_000, load_default="")
    preferences = fields.Nested(PreferencesV1, load_default=dict)
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class ParticipantErasedV1(Lenient):
    participant_id = _key(required=True)
    city = _key(required=True)


class ReasonV1(Lenient):
    """A reason a person can read: a code with parameters, and the sentence in each language."""

    code = fields.Str(required=True)
    params = fields.Dict(load_default=dict)
    text = fields.Dict(keys=fields.Str(validate=validate.OneOf(LANGUAGES)), values=fields.Str(), required=True)


class MatchSideV1(Lenient):
    city = _key(required=True)
    idea_id = _key(load_default=None, allow_none=True)
    participant_id = _key(load_default=None, allow_none=True)
    author_id = _key(load_default=None, allow_none=True)
    title = _text(300, load_default=None, allow_none=True)
    language = fields.Str(load_default=None, allow_none=True)


class MatchProposedV1(Lenient):
    match_id = _key(required=True)
    partnership = _key(required=True)
    # "coordinator": two ideas a coordinator paired by hand (its note is among the reasons).
    kind = fields.Str(required=True, validate=validate.OneOf(("idea", "interest", "coordinator")))
    score = fields.Float(required=True, validate=validate.Range(min=0.0, max=1.0))
    parts = fields.Dict(keys=fields.Str(), values=fields.Float(), load_default=dict)
    reasons = fields.List(fields.Nested(ReasonV1), load_default=list)
    sides = fields.List(fields.Nested(MatchSideV1), required=True, validate=validate.Length(equal=2))
    expires_at = fields.Str(load_default=None, allow_none=True, validate=_iso_datetime)
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))

    @validates_schema
    def _two_cities(self, data: Mapping[str, Any], **_: Any) -> None:
        sides = data.get("sides") or []
        if len(sides) == 2 and sides[0]["city"] == sides[1]["city"]:
            raise ValidationError("a match pairs two different cities", "sides")


class MatchAnsweredV1(Lenient):
    """accepted / declined: one side answered."""

    match_id = _key(required=True)
    partnership = _key(required=True)
    city = _key(required=True)
    participant_id = _key(load_default=None, allow_none=True)
    status = fields.Str(required=True)
    sides = fields.List(fields.Nested(MatchSideV1), load_default=list)
    reason = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=100))
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class MatchClosedV1(Lenient):
    """confirmed / expired: the match as a whole changed state."""

    match_id = _key(required=True)
    partnership = _key(required=True)
    status = fields.Str(required=True)
    sides = fields.List(fields.Nested(MatchSideV1), load_default=list)
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class MatchWithdrawnV1(MatchClosedV1):
    """An open proposal was withdrawn: by a coordinator of `city`, or (city None) by matching when it no longer
    qualifies under its partnership's settings."""

    city = _key(load_default=None, allow_none=True)
    reason = _text(500, required=True)


class MatchingRunV1(Lenient):
    run_id = _key(required=True)
    partnership = _key(required=True)


class ProjectMemberV1(Lenient):
    participant_id = _key(required=True)
    city = _key(required=True)
    # Added later: how the person came in (author of one of its ideas, interested person, or joined on request).
    role = fields.Str(load_default=None, allow_none=True)


class ProjectCore(Lenient):
    """What every project event names: the project, its partnership, its title, its members and cities (for the
    webhooks of those cities)."""

    project_id = _key(required=True)
    partnership = _key(required=True)
    title = _text(300, load_default="")
    members = fields.List(fields.Nested(ProjectMemberV1), load_default=list)
    cities = fields.List(_key(), load_default=list)
    version = fields.Int(load_default=1, validate=validate.Range(min=1))


class ProjectUpdatedV1(ProjectCore):
    """The plan changed: title, status, summary, next steps (`changed` names which), by a key of `city`."""

    city = _key(load_default=None, allow_none=True)
    status = fields.Str(required=True, validate=validate.OneOf(("forming", "active", "paused", "done")))
    summary = _text(5_000, load_default="")
    next_steps = fields.List(_text(500), load_default=list)
    changed = fields.List(fields.Str(), load_default=list)
    actor_id = _key(load_default=None, allow_none=True)  # the member who changed it (not told), when one did


class ProjectMemberJoinedV1(ProjectCore):
    """A person joined: through another confirmed match (with their idea) or an accepted join request."""

    participant_id = _key(required=True)
    city = _key(required=True)
    idea_id = _key(load_default=None, allow_none=True)
    via = fields.Str(required=True, validate=validate.OneOf(("match", "join_request")))


class ProjectMessageV1(ProjectCore):
    """A member wrote to the others. Internal only: never handed to webhooks (the text is the members')."""

    message_id = _key(required=True)
    author_id = _key(required=True)
    city = _key(required=True)
    text = _text(4_000, required=True)


class JoinRequestV1(ProjectCore):
    """A person of a partner city asked to join (requested) or was answered (accepted / declined by `by_city`)."""

    request_id = _key(required=True)
    participant_id = _key(required=True)
    city = _key(required=True)
    status = fields.Str(required=True, validate=validate.OneOf(("requested", "accepted", "declined")))
    message = _text(1_000, load_default="")
    by_city = _key(load_default=None, allow_none=True)


class MeetingV1(ProjectCore):
    """A meeting of a project's members: offered with slots (proposed), or set to one of them (scheduled)."""

    meeting_id = _key(required=True)
    meeting_title = _text(200, required=True)
    proposer_id = _key(load_default=None, allow_none=True)
    duration_minutes = fields.Int(required=True, validate=validate.Range(min=5, max=24 * 60))
    slots = fields.List(fields.Str(validate=_iso_datetime), load_default=list)
    start = fields.Str(load_default=None, allow_none=True, validate=_iso_datetime)
    link = _text(500, load_default=None, allow_none=True)
    sequence = fields.Int(load_default=0, validate=validate.Range(min=0))


class ProjectFormedV1(Lenient):
    project_id = _key(required=True)
    match_id = _key(required=True)
    partnership = _key(required=True)
    title = _text(300, load_default="")
    idea_ids = fields.List(_key(), required=True)
    members = fields.List(fields.Nested(ProjectMemberV1), load_default=list)
    cities = fields.List(_key(), load_default=list)  # the cities of its sides, with or without members


class CityV1(Lenient):
    city = _key(required=True)
    name = _text(200, required=True)
    country = fields.Str(required=True, validate=validate.Regexp(r"^[A-Z]{2}$"))
    language = fields.Str(required=True, validate=validate.OneOf(LANGUAGES))
    # Added later (consumers of older events get none): the city's name in other languages, e.g. {"ru": "Карлсруэ"}.
    names = fields.Dict(keys=fields.Str(validate=validate.Regexp(r"^[a-z]{2}$")), values=_text(200),
                        load_default=dict)
    # Added later: its IANA time zone (Europe/Berlin); meetings are shown to its people in it. None: not said.
    timezone = _text(64, load_default=None, allow_none=True)


class ThemeV1(Lenient):
    key = _key(required=True)
    labels = fields.Dict(keys=fields.Str(validate=validate.OneOf(LANGUAGES)), values=fields.Str(), required=True)


class PartnershipV1(Lenient):
    partnership_id = _key(required=True)
    name = _text(200, required=True)
    cities = fields.List(_key(), required=True, validate=validate.Length(equal=2))
    themes = fields.List(fields.Nested(ThemeV1), load_default=list)


class RoundV1(Lenient):
    """A round of a partnership's lab: its dates (read in `timezone`) and its phase now."""

    round_id = _key(required=True)
    partnership = _key(required=True)
    cities = fields.List(_key(), load_default=list)
    name = _text(200, required=True)
    collect_until = fields.Str(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$"))
    workshop_at = fields.Str(required=True, validate=_iso_datetime)
    projects_from = fields.Str(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$"))
    timezone = _text(64, load_default="UTC")
    phase = fields.Str(required=True, validate=validate.OneOf(("collecting", "matching", "projects", "closed")))
    previous_phase = fields.Str(load_default=None, allow_none=True)


class NotificationV1(Lenient):
    notification_id = _key(required=True)
    recipient = _key(required=True)
    channel = fields.Str(required=True, validate=validate.OneOf(("email", "inbox", "webhook")))
    cause_event_id = fields.Str(required=True, validate=_uuid)
    attempt = fields.Int(load_default=1, validate=validate.Range(min=1))


class NotificationFailedV1(NotificationV1):
    error = _text(2_000, required=True)
    final = fields.Bool(load_default=False)


@dataclass(frozen=True)
class EventType:
    type: str
    version: int
    schema: type[Schema]
    summary: str


def _types(*entries: tuple[str, int, type[Schema], str]) -> dict[tuple[str, int], EventType]:
    return {(t, v): EventType(t, v, s, doc) for t, v, s, doc in entries}


# The whole contract: (type, version) -> schema. A new version goes beside the old, with an upcaster.
EVENT_TYPES: dict[tuple[str, int], EventType] = _types(
    ("city.registered", 1, CityV1, "A city joined the deployment."),
    ("city.updated", 1, CityV1, "A city's name or its names in other languages changed (the whole city)."),
    ("partnership.formed", 1, PartnershipV1, "Two cities were twinned; their own themes included."),
    ("partnership.updated", 1, PartnershipV1, "A partnership's name or own themes changed."),
    ("idea.submitted", 1, IdeaV1, "A participant submitted an idea (full snapshot)."),
    ("idea.updated", 1, IdeaUpdatedV1, "An idea changed (full snapshot and the changed fields)."),
    ("idea.withdrawn", 1, IdeaWithdrawnV1, "An idea was withdrawn; its open proposals close."),
    ("participant.registered", 1, ParticipantV1, "A participant joined a city."),
    ("participant.updated", 1, ParticipantV1, "A participant changed their profile or preferences."),
    ("participant.erased", 1, ParticipantErasedV1, "A participant asked to be erased; every service forgets them."),
    ("match.proposed", 1, MatchProposedV1, "Two things of partner cities fit; score and reasons included."),
    ("match.accepted", 1, MatchAnsweredV1, "One side accepted a match."),
    ("match.declined", 1, MatchAnsweredV1, "One side declined a match; it is closed."),
    ("match.confirmed", 1, MatchClosedV1, "Both sides accepted; a project forms."),
    ("match.expired", 1, MatchClosedV1, "Nobody answered in time; the match is closed."),
    ("matching.run_requested", 1, MatchingRunV1, "A partnership's matching settings changed: the matching service "
                                                 "matches its open ideas again (and says so in GET .../matching)."),
    ("match.withdrawn", 1, MatchWithdrawnV1, "An open proposal was withdrawn (by a coordinator, or because it no "
                                             "longer qualifies); the reason says why."),
    ("project.formed", 1, ProjectFormedV1, "A confirmed match became a joint project."),
    ("project.updated", 1, ProjectUpdatedV1, "A project's title, status, summary or next steps changed."),
    ("project.member_joined", 1, ProjectMemberJoinedV1, "A person joined a project (another match, or a join "
                                                        "request accepted)."),
    ("project.message_posted", 1, ProjectMessageV1, "A member wrote to the project (internal: no webhook)."),
    ("project.join_requested", 1, JoinRequestV1, "A person of a partner city asked to join a project."),
    ("project.join_answered", 1, JoinRequestV1, "A join request was accepted or declined."),
    ("meeting.proposed", 1, MeetingV1, "A member offered a meeting with time slots to choose from."),
    ("meeting.scheduled", 1, MeetingV1, "A meeting was set to one of its slots (start in UTC)."),
    ("round.opened", 1, RoundV1, "A partnership opened a round of its lab (name, dates, phase)."),
    ("round.updated", 1, RoundV1, "A round's name or dates changed (its phase as the new dates give it)."),
    ("round.phase_changed", 1, RoundV1, "A round moved on: collecting -> matching -> projects -> closed."),
    ("round.closed", 1, RoundV1, "A round was closed."),
    ("round.closing_soon", 1, RoundV1, "A round stops collecting ideas soon (two days before): its cities' people "
                                       "are reminded."),
    ("notification.delivered", 1, NotificationV1, "A notification reached its recipient over one channel."),
    ("notification.failed", 1, NotificationFailedV1, "A notification could not be delivered (final or retrying)."),
)

# (type, from_version) -> function turning that version's payload into the next version's.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def latest_version(event_type: str) -> int:
    versions = [v for (t, v) in EVENT_TYPES if t == event_type]
    if not versions:
        raise ContractError("unknown event type", event_type)
    return max(versions)


def known_types() -> list[str]:
    return sorted({t for (t, _) in EVENT_TYPES})


@dataclass(frozen=True)
class Event:
    """A received event: the envelope, with a payload checked against (and upcast to) the latest version."""

    id: str
    type: str
    version: int
    occurred_at: str
    correlation_id: str
    producer: str
    payload: dict[str, Any]
    partnership: str | None = None
    city: str | None = None
    causation_id: str | None = None
    received_version: int = field(default=0, compare=False)


@functools.cache
def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class, shared: building one copies every field (two thirds of parsing an event),
    and loading or dumping keeps no state in it (marshmallow 4), so every thread may use it."""
    return schema()


def _load_payload(event_type: str, version: int, payload: Any) -> dict[str, Any]:
    spec = EVENT_TYPES.get((event_type, version))
    if spec is None:
        if any(t == event_type for (t, _) in EVENT_TYPES):
            raise ContractError("unsupported version", f"{event_type} v{version}")
        raise ContractError("unknown event type", event_type)
    try:
        return schema_instance(spec.schema).load(payload)
    except ValidationError as exc:
        raise ContractError("invalid payload", {event_type: exc.messages}) from None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_event(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    producer: str,
    city: str | None = None,
    partnership: str | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Make an envelope ready for the outbox. The payload is checked now, not when it is published.

    The correlation and causation come from the work in hand (the web request or the event being handled).
    """
    version = version or latest_version(event_type)
    checked = _load_payload(event_type, version, dict(payload))
    correlation = context.correlation_id.get() or context.new_id()
    envelope = {
        "id": context.new_id(),
        "type": event_type,
        "version": version,
        "occurred_at": now_iso(),
        "partnership": partnership,
        "city": city,
        "correlation_id": correlation,
        "causation_id": context.event_id.get(),
        "producer": producer,
        "payload": _jsonable(checked),
    }
    return envelope


def _jsonable(value: Any) -> Any:
    # Schemas load into plain types already; this only guards against dates sneaking in.
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def parse_event(raw: Any) -> Event:
    """Check a received envelope and its payload; upcast old versions. Raises ContractError."""
    if not isinstance(raw, dict):
        raise ContractError("not an event envelope", type(raw).__name__)
    try:
        env = schema_instance(EnvelopeSchema).load(raw)
    except ValidationError as exc:
        raise ContractError("invalid envelope", exc.messages) from None
    event_type, version = env["type"], env["version"]
    payload = _load_payload(event_type, version, env["payload"])
    latest = latest_version(event_type)
    received = version
    while version < latest:
        upcast = UPCASTERS.get((event_type, version))
        if upcast is None:
            raise ContractError("no upcaster", f"{event_type} v{version} -> v{version + 1}")
        version += 1
        payload = _load_payload(event_type, version, upcast(payload))
    return Event(
        id=env["id"],
        type=event_type,
        version=version,
        occurred_at=env["occurred_at"],
        correlation_id=env["correlation_id"],
        producer=env["producer"],
        payload=payload,
        partnership=env["partnership"],
        city=env["city"],
        causation_id=env["causation_id"],
        received_version=received,
    )
