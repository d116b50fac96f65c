"""Who must know about an event, in which words; signatures, unsubscribe tokens, safe webhook targets. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime, format_skeleton

from services.aggregate import Recorded

LANGUAGES = ("de", "ru", "en")
CHANNELS = ("email", "inbox")  # per person (both unless they chose); webhooks are per city (subscriptions)


def channels_of(person: Mapping[str, Any]) -> tuple[str, ...]:
    """The channels a person gets messages on: those they chose, else both."""
    return tuple(person.get("channels") or CHANNELS)


def email_status(person: Mapping[str, Any], *, can_send: bool) -> tuple[str | None, str | None]:
    """What becomes of the e-mail of a message to this person, and why when it is skipped: None (they did not ask
    for e-mail), "skipped" (no address, unsubscribed, or no mail server: `can_send` False), "digest" (once a day)
    or "pending" (sent on its own)."""
    if "email" not in channels_of(person):
        return None, None
    if not person.get("email") or person.get("unsubscribed") or not can_send:
        return "skipped", ("no e-mail address" if not person.get("email") else
                           "unsubscribed" if person.get("unsubscribed") else "no SMTP_URL configured")
    return ("digest" if person.get("digest") == "daily" else "pending"), None
# Events a webhook may subscribe to (everything the platform publishes).
WEBHOOK_EVENTS = (
    "idea.submitted", "idea.updated", "idea.withdrawn",
    "match.proposed", "match.accepted", "match.declined", "match.confirmed", "match.expired", "match.withdrawn",
    "project.formed", "project.updated", "project.member_joined", "meeting.scheduled",
    "round.opened", "round.updated", "round.phase_changed", "round.closed", "round.closing_soon",
)  # never project.message_posted nor join requests: they carry the members' own words
# What people hear about (notify_people); the other webhook events matter only while a subscription names them,
# and the worker's queue is bound to them only then (Runtime.sync_bindings).
PEOPLE_EVENTS = ("match.proposed", "match.accepted", "match.declined", "match.withdrawn", "project.formed",
                 "project.updated", "project.member_joined", "project.message_posted", "project.join_requested",
                 "project.join_answered", "meeting.proposed", "meeting.scheduled", "round.closing_soon",
                 "round.phase_changed")
WEBHOOK_ONLY_EVENTS = tuple(t for t in WEBHOOK_EVENTS if t not in PEOPLE_EVENTS)


def language_of(person: Mapping[str, Any] | None) -> str:
    """The language we write to someone in: theirs when we have templates for it, English otherwise."""
    lang = (person or {}).get("language")
    return lang if lang in LANGUAGES else "en"


@dataclass(frozen=True)
class Invitation:
    """A meeting as a calendar entry: the same for every member (its uid and sequence let a calendar update it)."""

    uid: str
    start: datetime  # UTC
    minutes: int
    summary: str
    video_link: str | None = None
    sequence: int = 0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)


@dataclass(frozen=True)
class Message:
    """One notification to one person, before it is rendered: the template and what to fill in."""

    recipient: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    details: tuple[str, ...] = ()  # what a daily digest shows under its line (reasons are shown instead of both)
    invitation: Invitation | None = None  # attached to its e-mail as an .ics
    about: tuple[str, ...] = ()  # the other people it names or quotes: it goes when one of them is erased


def _reasons(reasons: Sequence[Mapping[str, Any]], lang: str) -> list[str]:
    return [r.get("text", {}).get(lang) or r.get("text", {}).get("en", "") for r in reasons]


Names = Callable[[str], str]  # a person's language (or name), by their id
CityNames = Callable[[str, str], str]  # a city's name in a language, by its key
Zones = Callable[[str], str | None]  # a person's time zone (IANA name, their city's), by their id


@dataclass(frozen=True)
class Readers:
    """What the rules look up of the people they write to and of: language, name, city names, time zone."""

    city_name: CityNames
    lang_of: Names
    name_of: Names
    zone_of: Zones
    people_in: Callable[[Sequence[str]], list[str]] = lambda _cities: []  # the people of these cities


def messages_for(event_type: str, payload: Mapping[str, Any], city_name: CityNames, lang_of: Names, *,
                 name_of: Names | None = None, zone_of: Zones | None = None,
                 people_in: Callable[[Sequence[str]], list[str]] | None = None) -> list[Message]:
    """Who must know about this event, and what each is told.

    `city_name(key, language)` gives a city's name in the reader's language; `lang_of(participant_id)` the
    person's language; `name_of(participant_id)` their name ("" when unknown); `zone_of(participant_id)` the time
    zone they read times in (None when unknown: UTC).
    """
    project_rule = _PROJECT_RULES.get(event_type)
    if project_rule is not None:
        return project_rule(payload, Readers(city_name, lang_of, name_of or (lambda _pid: ""),
                                             zone_of or (lambda _pid: None), people_in or (lambda _cities: [])))
    if event_type == "match.proposed":
        kind = payload.get("kind")
        if kind in ("idea", "coordinator"):
            return _ideas_proposed(payload, city_name, lang_of)
        return _interest_proposed(payload, city_name, lang_of) if kind == "interest" else []
    if event_type in ("match.accepted", "match.declined"):
        # A withdrawn idea's closing tells no one; the second yes: both sides hear of the project instead.
        if payload.get("reason") == "withdrawn" or payload.get("status") == "confirmed":
            return []
        return _answered(event_type, payload, city_name, lang_of)
    if event_type == "match.withdrawn":
        return _withdrawn(payload, city_name, lang_of)
    return []


def _withdrawn(payload: Mapping[str, Any], city_name: CityNames, lang_of: Names) -> list[Message]:
    """Both sides hear that an open proposal was withdrawn, and why."""
    sides = payload.get("sides") or []
    by = payload.get("city")
    out = []
    for me, other in ((sides[0], sides[1]), (sides[1], sides[0])) if len(sides) == 2 else ():
        person = me.get("author_id") or me.get("participant_id")
        if person:
            lang = lang_of(person)
            out.append(Message(person, "match_withdrawn", {
                "own_title": me.get("title") or other.get("title"), "other_title": other.get("title") or "",
                "other_city": city_name(other["city"], lang), "by_city": city_name(by, lang) if by else "",
                "reason": payload.get("reason", ""),
            }, link=f"/matches/{payload['match_id']}"))
    return out


def _ideas_proposed(payload: Mapping[str, Any], city_name: CityNames, lang_of: Names) -> list[Message]:
    """Each author hears of the other side's idea, with the reasons in their language."""
    sides = payload.get("sides") or []
    return [Message(me["author_id"], "match_proposed", {
        "own_title": me.get("title"), "other_title": other.get("title"),
        "other_city": city_name(other["city"], lang_of(me["author_id"])),
        "score_percent": round(100 * payload["score"]),
        "reasons": _reasons(payload.get("reasons", []), lang_of(me["author_id"])),
    }, link=f"/ideas/{me['idea_id']}/matches")
        for me, other in ((sides[0], sides[1]), (sides[1], sides[0])) if me.get("author_id")]


def _interest_proposed(payload: Mapping[str, Any], city_name: CityNames, lang_of: Names) -> list[Message]:
    """The person whose interests fit hears of the idea; its author, of an interested person."""
    person, idea = (payload.get("sides") or [{}, {}])[:2]
    out = []
    if person.get("participant_id"):
        out.append(Message(person["participant_id"], "interest_match", {
            "idea_title": idea.get("title"), "idea_city": city_name(idea["city"], lang_of(person["participant_id"])),
            "reasons": _reasons(payload.get("reasons", []), lang_of(person["participant_id"])),
        }, link=f"/matches/{payload['match_id']}"))
    if idea.get("author_id"):
        out.append(Message(idea["author_id"], "interested_person", {
            "own_title": idea.get("title"), "person_city": city_name(person["city"], lang_of(idea["author_id"])),
            "reasons": _reasons(payload.get("reasons", []), lang_of(idea["author_id"])),
        }, link=f"/matches/{payload['match_id']}"))
    return out


def _answered(event_type: str, payload: Mapping[str, Any], city_name: CityNames, lang_of: Names) -> list[Message]:
    """The other side hears that a city accepted or declined."""
    template = "match_accepted" if event_type == "match.accepted" else "match_declined"
    answering = payload.get("city")
    sides = payload.get("sides") or []
    other = next((s for s in sides if s["city"] == answering), None) or {}
    out = []
    for me in sides:
        person = me.get("author_id") or me.get("participant_id")
        if me["city"] != answering and person:
            out.append(Message(person, template, {
                "own_title": me.get("title") or other.get("title"), "other_title": other.get("title"),
                "other_city": city_name(answering, lang_of(person)),
            }, link=f"/matches/{payload['match_id']}"))
    return out


# --- joint projects: every member hears of what changes, who joins, what is written, when they meet ------------

def _members(payload: Mapping[str, Any], *, but: str | None = None) -> list[str]:
    """The project's members (after the change), each once, without `but`."""
    return [pid for pid in dict.fromkeys(m.get("participant_id") for m in payload.get("members") or [])
            if pid and pid != but]


def _city_of(payload: Mapping[str, Any], pid: str | None) -> str | None:
    return next((m.get("city") for m in payload.get("members") or [] if m.get("participant_id") == pid), None)


def _about(pid: str | None) -> tuple[str, ...]:
    return (pid,) if pid else ()


def _project_link(payload: Mapping[str, Any]) -> str:
    return f"/projects/{payload['project_id']}"


def _lines(value: str) -> list[str]:
    """A person's text as lines for a message: no trailing blanks, no runs of empty lines, none at either end."""
    out: list[str] = []
    for line in (value or "").splitlines():
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def excerpt(value: str, most: int = 80) -> str:
    """The start of a text on one line, cut at a word and marked when it goes on."""
    flat = " ".join((value or "").split())
    if len(flat) <= most:
        return flat
    cut = flat[:most].rsplit(" ", 1)[0] if " " in flat[:most] else flat[:most]
    return cut.rstrip(",;:.-–—") + "…"


def _project_formed(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    def cities(lang: str) -> str:
        return ", ".join(dict.fromkeys(who.city_name(m["city"], lang) for m in payload.get("members", [])))

    return [Message(pid, "project_formed", {
        "project_title": payload.get("title"), "partner_cities": cities(who.lang_of(pid)),
    }, link=_project_link(payload)) for pid in _members(payload)]


def _project_updated(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """A new status or new next steps: every member hears of it (a new summary or title alone tells no one)."""
    changed = set(payload.get("changed") or [])
    if not changed & {"status", "next_steps"}:
        return []
    steps = [s for s in payload.get("next_steps") or [] if s] if "next_steps" in changed else []
    by = payload.get("city")
    return [Message(pid, "project_updated", {
        "project_title": payload.get("title"), "status": payload.get("status"),
        "status_changed": "status" in changed, "steps_changed": "next_steps" in changed, "next_steps": steps,
        "by_city": who.city_name(by, who.lang_of(pid)) if by else "",
    }, link=_project_link(payload), details=tuple(f"- {s}" for s in steps))
        for pid in _members(payload, but=payload.get("actor_id"))]  # a member who changed it knows


def _member_joined(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """The others hear who joined, from which city."""
    joined = payload.get("participant_id")
    city = payload.get("city") or _city_of(payload, joined)
    return [Message(pid, "project_member_joined", {
        "project_title": payload.get("title"), "person_name": who.name_of(joined) if joined else "",
        "person_city": who.city_name(city, who.lang_of(pid)) if city else "",
        "via": payload.get("via") or "match",
    }, link=_project_link(payload), about=_about(joined)) for pid in _members(payload, but=joined)]


def _message_posted(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """Every member but its author reads a message; the inbox line is its start."""
    author = payload.get("author_id")
    city = payload.get("city") or _city_of(payload, author)
    text = payload.get("text") or ""
    short = excerpt(text)
    lines = _lines(text)
    return [Message(pid, "project_message", {
        "project_title": payload.get("title"), "author_name": who.name_of(author) if author else "",
        "author_city": who.city_name(city, who.lang_of(pid)) if city else "",
        "excerpt": short, "message_lines": lines,
    }, link=_project_link(payload), details=tuple(lines) if short != " ".join(text.split()) else (),
        about=_about(author)) for pid in _members(payload, but=author)]


def _join_requested(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """Every member hears who asks to join, from where, and with which words: they answer on the project page."""
    asking = payload.get("participant_id")
    lines = _lines(payload.get("message") or "")
    return [Message(pid, "project_join_requested", {
        "project_title": payload.get("title"), "person_name": who.name_of(asking) if asking else "",
        "person_city": who.city_name(payload["city"], who.lang_of(pid)) if payload.get("city") else "",
        "message_lines": lines,
    }, link=_project_link(payload), details=tuple(lines), about=_about(asking))
        for pid in _members(payload, but=asking)]


def _join_answered(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """The one who asked hears the answer, yes or no."""
    asking = payload.get("participant_id")
    if not asking or payload.get("status") not in ("accepted", "declined"):
        return []
    by = payload.get("by_city")
    return [Message(asking, "project_join_answered", {
        "project_title": payload.get("title"), "accepted": payload["status"] == "accepted",
        "by_city": who.city_name(by, who.lang_of(asking)) if by else "",
    }, link=_project_link(payload))]


# --- meetings: times in each reader's own time zone ---------------------------------------------------------------

def zone(name: str | None) -> tzinfo:
    """A time zone by its IANA name; UTC when none is known or the name is none."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_label(name: str | None) -> str:
    """How a reader's time zone is named next to the times: its IANA name, or UTC."""
    return name if zone(name) is not UTC else "UTC"


def local_time(at: datetime, zone_name: str | None, lang: str) -> str:
    """A moment as a reader reads it: their day and time in their zone, and the zone (its abbreviation where the
    language has one, else its offset): "Do., 10. Dez. 2026, 18:00 MEZ", "чт, 10 дек. 2026 г., 20:00 UTC+3"."""
    tz = zone(zone_name)
    try:
        local = at.astimezone(tz)
    except OverflowError:  # at the calendar's edge (year 1 or 9999) there is no local time: say it in UTC
        return at.isoformat()
    lang = lang if lang in LANGUAGES else "en"
    day = format_skeleton("yMMMEd", local, tzinfo=tz, locale=lang)
    time = format_skeleton("Hm", local, tzinfo=tz, locale=lang)
    return f"{day}, {time} {_zone_abbreviation(local, tz, lang)}"


def _zone_abbreviation(local: datetime, tz: tzinfo, lang: str) -> str:
    short = "UTC" if tz is UTC else format_datetime(local, "z", tzinfo=tz, locale=lang)
    if short.isalpha():
        return short
    offset = int((local.utcoffset() or timedelta()).total_seconds() // 60)
    if not offset:
        return "UTC"
    hours, minutes = divmod(abs(offset), 60)
    return f"UTC{'-' if offset < 0 else '+'}{hours}" + (f":{minutes:02d}" if minutes else "")


def _moment(value: Any) -> datetime | None:
    """An RFC 3339 time of the contract (checked there to carry its offset), or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _meeting_link(payload: Mapping[str, Any]) -> str:
    return f"{_project_link(payload)}#meeting-{payload['meeting_id']}"


def _meeting_proposed(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """Every member but the one who proposed reads the slots, each in their own time zone."""
    proposer = payload.get("proposer_id")
    city = _city_of(payload, proposer)
    slots = sorted(filter(None, (_moment(s) for s in payload.get("slots") or [])))
    out = []
    for pid in _members(payload, but=proposer):
        lang, zone_name = who.lang_of(pid), who.zone_of(pid)
        shown = [local_time(s, zone_name, lang) for s in slots]
        out.append(Message(pid, "meeting_proposed", {
            "project_title": payload.get("title"), "meeting_title": payload.get("meeting_title"),
            "proposer_name": who.name_of(proposer) if proposer else "",
            "proposer_city": who.city_name(city, lang) if city else "",
            "duration_minutes": payload.get("duration_minutes"), "slots": shown, "zone": zone_label(zone_name),
        }, link=_meeting_link(payload), details=tuple(f"- {s}" for s in shown), about=_about(proposer)))
    return out


def _meeting_scheduled(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """Every member reads when the meeting is, in their own time zone, with a calendar invitation."""
    start = _moment(payload.get("start"))
    if start is None:
        return []
    invitation = Invitation(
        uid=f"{payload['meeting_id']}@twincity", start=start, minutes=int(payload.get("duration_minutes") or 60),
        summary=f"{payload.get('title') or ''}: {payload.get('meeting_title') or ''}".strip(": "),
        video_link=payload.get("link") or None, sequence=int(payload.get("sequence") or 0))
    out = []
    for pid in _members(payload):
        lang, zone_name = who.lang_of(pid), who.zone_of(pid)
        out.append(Message(pid, "meeting_scheduled", {
            "project_title": payload.get("title"), "meeting_title": payload.get("meeting_title"),
            "when": local_time(start, zone_name, lang), "duration_minutes": invitation.minutes,
            "moved": invitation.sequence > 0,
            "video_link": invitation.video_link or "", "zone": zone_label(zone_name),
        }, link=_meeting_link(payload), invitation=invitation))
    return out


# --- rounds: the people of a round's cities hear when collecting ends soon, and when the results are in ---------

def _round_closing_soon(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """Everyone of the round's cities: two days left to write ideas for it."""
    workshop = _moment(payload.get("workshop_at"))
    out = []
    for pid in who.people_in(payload.get("cities") or []):
        lang = who.lang_of(pid)
        out.append(Message(pid, "round_closing_soon", {
            "round_name": payload.get("name"), "collect_until": _day(payload.get("collect_until"), lang),
            "workshop": local_time(workshop, who.zone_of(pid), lang) if workshop else "",
        }, link="/ideas/new"))
    return out


def _round_results(payload: Mapping[str, Any], who: Readers) -> list[Message]:
    """When a round reaches its projects (the workshop is over), everyone of its cities hears that the results are
    in: their matches and projects."""
    if payload.get("phase") != "projects":
        return []
    return [Message(pid, "round_results", {"round_name": payload.get("name")}, link="/matches")
            for pid in who.people_in(payload.get("cities") or [])]


def _day(value: Any, lang: str) -> str:
    try:
        return format_skeleton("yMMMMd", datetime.fromisoformat(str(value)), locale=lang)
    except (TypeError, ValueError):
        return str(value or "")


ProjectRule = Callable[[Mapping[str, Any], Readers], list[Message]]
_PROJECT_RULES: dict[str, ProjectRule] = {
    "project.formed": _project_formed,
    "project.updated": _project_updated,
    "project.member_joined": _member_joined,
    "project.message_posted": _message_posted,
    "project.join_requested": _join_requested,
    "project.join_answered": _join_answered,
    "meeting.proposed": _meeting_proposed,
    "meeting.scheduled": _meeting_scheduled,
    "round.closing_soon": _round_closing_soon,
    "round.phase_changed": _round_results,
}


def digest_summary(message: Message, line: str, link: str) -> str:
    """What a daily digest shows of a notification under its subject: the reasons, else its line and details; then
    its link."""
    reasons = message.context.get("reasons") or []
    if reasons:
        head = "\n".join(f"- {r}" for r in reasons)
    else:
        head = "\n\n".join(part for part in (line, "\n".join(message.details)) if part)
    return "\n\n".join(part for part in (head, link) if part)


def outcome(doc: Mapping[str, Any], channel: str, *, error: str | None = None) -> list[Recorded]:
    """What others hear of a notification's fate: notification.delivered, or notification.failed for good (`error`).
    A sign-in mail was caused by no event: nobody hears of it."""
    if doc.get("event_type") in ("sign_in", "invitation"):
        return []
    payload: dict[str, Any] = {"notification_id": doc["_id"], "recipient": doc.get("recipient")
                               or doc.get("subscription_id"), "channel": channel,
                               "cause_event_id": doc["event_id"], "attempt": doc.get("attempts", 0) + 1}
    if error is not None:
        payload.update(error=error, final=True)
    return [Recorded("notification.failed" if error is not None else "notification.delivered", payload,
                     city=doc.get("city"))]


def webhook_cities(envelope: Mapping[str, Any]) -> set[str]:
    """The cities whose webhooks hear of an event: the producer's city and every city of its sides."""
    payload = envelope.get("payload", {})
    cities = {envelope.get("city"), payload.get("city")}
    cities.update(s.get("city") for s in payload.get("sides") or [])
    cities.update(m.get("city") for m in payload.get("members") or [])
    cities.update(payload.get("cities") or [])
    return {c for c in cities if c}


# --- signing ---------------------------------------------------------------------------------------------

PING = "webhook.ping"  # a test delivery (POST /webhooks/{id}/ping): sent even while its subscription is paused
SIGNATURE_HEADER = "X-Twincity-Signature"  # the body alone: kept for receivers written before V2
SIGNATURE_V2_HEADER = "X-Twincity-Signature-V2"  # delivery id, time and body: a receiver can refuse replays
TIMESTAMP_HEADER = "X-Twincity-Timestamp"


def signature(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body with the subscription's secret, as the receiver recomputes it."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_v2(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 of "<delivery id>.<unix seconds>.<body>": the receiver checks the time is recent (a captured
    delivery replayed later is refused) and that the delivery id it dedupes by is the one that was signed."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def unsubscribe_token(secret: str, participant_id: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"unsubscribe:{participant_id}".encode(), hashlib.sha256).hexdigest()
    return f"{participant_id}.{mac[:32]}"


def check_unsubscribe_token(secret: str, token: str) -> str | None:
    participant_id, _, _mac = token.rpartition(".")
    if participant_id and hmac.compare_digest(unsubscribe_token(secret, participant_id), token):
        return participant_id
    return None


# --- webhook targets ---------------------------------------------------------------------------------------

class UnsafeTarget(ValueError):
    """A webhook URL that points where we must not send: anywhere that is not the public internet."""


# Globally routable by ipaddress's reckoning, yet no place for a webhook: NAT64's well-known prefixes and the
# transition forms whose IPv4 address is checked instead (below). ipaddress already counts 100.64.0.0/10 (shared
# address space, where some clouds keep their metadata service) and 198.18.0.0/15 (benchmarking) as not global.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# IANA's special-purpose blocks that are not globally reachable, which some Pythons' is_global lets through
# (192.0.0.8, fec0::1, 3fff::1): listed here so that the answer does not depend on the Python release.
_SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
    # and IPv6's: site-local (deprecated), documentation (both blocks), SRv6 segment ids, discard-only
    "fec0::/10", "2001:db8::/32", "3fff::/20", "5f00::/16", "100::/64"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped (::ffff:a.b.c.d), 6to4 (2002::/16), Teredo (2001::/32,
    the client), NAT64 (64:ff9b::/96) or the old IPv4-compatible form (::a.b.c.d)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64[0]:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook must not go to this address, or None when it is on the public internet."""
    if isinstance(address, ipaddress.IPv6Address) and any(address in net for net in _NAT64):
        return "a NAT64 address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if not address.is_global or any(address in net for net in _SPECIAL if net.version == address.version):
        return "a private or special-purpose address"
    return None


def check_addresses(addresses: Iterable[str], allow: Sequence[str]) -> None:
    """Refuse every address that is not on the public internet (private, loopback, link-local, shared, reserved,
    multicast, and IPv4 addresses of those kinds inside 6to4, Teredo, NAT64 or mapped IPv6 forms), unless the
    operator allows its network (TWINCITY_WEBHOOK_ALLOW)."""
    allowed = [ipaddress.ip_network(c) for c in allow]
    for raw in addresses:
        address = ipaddress.ip_address(raw)
        inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        if any(address in net or (inner is not None and inner in net) for net in allowed):
            continue
        if inner is not None:
            why = _not_public(inner)
            if why is not None:
                raise UnsafeTarget(f"{raw} stands for {inner}, {why}; webhooks go only to public internet addresses "
                                   "(an operator can allow a network with TWINCITY_WEBHOOK_ALLOW)")
            if address.sixtofour is not None or address.teredo is not None:
                continue  # a tunnel to a public IPv4 address
        why = _not_public(address)
        if why is not None:
            raise UnsafeTarget(f"{raw} is {why}; webhooks go only to public internet addresses (an operator can "
                               "allow a network with TWINCITY_WEBHOOK_ALLOW)")


def backoff(attempt: int, base: float, cap: float = 3600.0) -> float:
    """Seconds before try number `attempt + 1` (doubling from `base`, at most `cap`)."""
    return min(cap, base * (2 ** max(0, attempt - 1)))
