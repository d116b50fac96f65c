"""What every page shares: who is signed in, calls to the services in their name, CSRF, labels, headers, errors.

The pages' parts (the Backend, sign-in links, sessions, settings) live in app.extensions[EXTENSION] (a `Pages`,
made by pages.install); the views of each area (account.py, ideas.py, matches.py, projects.py, coordinator.py)
reach them through the functions here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from babel import dates as babel_dates
from flask import Response, abort, current_app, g, redirect, request, session, url_for
from flask_babel import get_locale, lazy_gettext

from gateway.clients import ServiceClient
from gateway.domain import zone_of
from gateway.keys import ApiKey, KeyStore, key_of
from gateway.repository import Directory
from gateway.signin import Invitations, Sessions, SignInLinks
from gateway.themes import DEFAULT_THEMES
from services.config import Settings
from services.tenancy import HEADER as CALLER_HEADER
from services.tenancy import Caller
from services.web import REQUEST_ID_HEADER

LOCALES = ("de", "ru", "en")
PAGE = 100  # items per service call when a page needs them all (services cap `limit` at 100)
MOST = 5000  # most items a page gathers (a round's ideas, a partnership's matches)

IDEA_STATUS = {"open": lazy_gettext("open"), "matched": lazy_gettext("matched"),
               "in_project": lazy_gettext("in a project"), "withdrawn": lazy_gettext("withdrawn")}
MATCH_STATUS = {"proposed": lazy_gettext("proposed"), "accepted": lazy_gettext("accepted by one side"),
                "confirmed": lazy_gettext("confirmed"), "declined": lazy_gettext("declined"),
                "expired": lazy_gettext("expired"), "withdrawn": lazy_gettext("proposal withdrawn")}


class ServiceError(Exception):
    """A service answered with an error; `detail` and `errors` come from its problem+json."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(body.get("detail") or body.get("title") or status)
        self.status = status
        self.detail = str(body.get("detail") or body.get("title") or "")
        self.errors: Any = body.get("errors") or {}
        self.body = body


@dataclass(frozen=True)
class Visitor:
    """Who is signed in: a participant (by e-mail link) or a coordinator (by a city key)."""

    kind: str  # "participant" or "coordinator"
    city: str
    participant_id: str | None = None
    name: str = ""
    key_id: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def participant(self) -> bool:
        return self.kind == "participant"

    @property
    def coordinator(self) -> bool:
        return self.kind == "coordinator"


class Backend:
    """Calls the services as the gateway's API does: the same internal endpoints, the same caller header."""

    def __init__(self, clients: Mapping[str, ServiceClient], directory: Directory, keys: KeyStore) -> None:
        self.clients = clients
        self.directory = directory
        self.keys = keys

    def city_name(self, key: str | None) -> str:
        """A city's name in the visitor's language where it has one (Карлсруэ), else its own name (its key when
        unknown), looked up once per request."""
        if not key:
            return ""
        cache = g.setdefault("city_cache", {})
        if key not in cache:
            doc = self.directory.city(key)
            cache[key] = ((doc.get("names") or {}).get(locale()) or doc["name"]) if doc else key
        return cache[key]

    # --- who ----------------------------------------------------------------------------------------------

    def caller_of(self, visitor: Visitor) -> Caller:
        key_id = visitor.key_id or f"web:{visitor.participant_id}"
        return self.directory.caller(city=visitor.city, scopes=visitor.scopes or ("read", "write"), key_id=key_id,
                                     default_themes=list(DEFAULT_THEMES),
                                     participant=None if visitor.key_id else visitor.participant_id)

    def gateway_caller(self) -> Caller:
        """The gateway itself (finding a person by e-mail, asking for a sign-in e-mail)."""
        return self.directory.caller(city=None, scopes=("admin", "read", "write"), key_id="web:gateway",
                                     default_themes=list(DEFAULT_THEMES))

    def coordinator_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The active key with this id and a fingerprint of its current secret (for a coordinator's session).

        The session keeps the key's id and this fingerprint, never the secret: a revoked key ends the session, and
        so does a rotated one (its fingerprint changes with its secret).
        """
        doc = self.keys.active_document(key_id, {"hash": 1, "city": 1, "scopes": 1, "expires_at": 1})
        if doc is None or not doc.get("hash"):
            return None
        fingerprint = hmac.new(str(current_app.secret_key).encode(), str(doc["hash"]).encode(),
                               hashlib.sha256).hexdigest()[:32]
        return key_of(doc), fingerprint  # the scopes it grants (a city key is never an admin)

    # --- calls --------------------------------------------------------------------------------------------

    def call(self, caller: Caller, service: str, method: str, path: str, *,
             query: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        headers = {REQUEST_ID_HEADER: g.get("request_id", ""), CALLER_HEADER: caller.encode(),
                   "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        wanted = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        if wanted:
            path += "?" + urlencode(wanted)
        reply = self.clients[service].request(method, path, body=data, headers=headers)
        try:
            parsed = json.loads(reply.body) if reply.body else {}
        except ValueError:
            parsed = {}
        if reply.status >= 400:
            raise ServiceError(reply.status, parsed if isinstance(parsed, dict) else {})
        return parsed

    def all_pages(self, caller: Caller, service: str, path: str, query: Mapping[str, Any] | None = None,
                  most: int = MOST) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (newest first), following `next_cursor`, at most `most`."""
        cursor, seen = None, 0
        while True:
            page = self.call(caller, service, "GET", path, query={**(query or {}), "limit": PAGE, "cursor": cursor})
            for item in page.get("items", []):
                yield item
                seen += 1
                if seen >= most:
                    return
            cursor = page.get("next_cursor")
            if not cursor:
                return


# --- CSRF: one random token per session, in every form ---------------------------------------------------

def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf")
    # Compared as bytes: a forged token with non-ASCII characters is refused, not a TypeError (a 500).
    if not sent or not isinstance(expected, str) or not expected \
            or not hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8")):
        abort(400, description="csrf")


# --- words -------------------------------------------------------------------------------------------------

def locale() -> str:
    return str(get_locale() or "en")


def label(labels: Mapping[str, str] | None, fallback: str = "") -> str:
    """A label in the interface language, else English, else any."""
    if not labels:
        return fallback
    return labels.get(locale()) or labels.get("en") or next(iter(labels.values()), fallback)


def language_name(code: str | None) -> str:
    if not code:
        return ""
    name = get_locale().languages.get(code) if get_locale() else None
    return name or code


def when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


# Browsers drop tabs and line breaks from URLs ("/\t/evil" becomes "//evil") and read "\\" as "/"; a line break
# in a Location header is also refused by Werkzeug (a 500). A target with any of them is not taken.
_NOT_IN_PATHS = re.compile(r"[\x00-\x1f\x7f\\]")


def local_path(target: str | None, default: str = "/") -> str:
    """Where to go back to after a form: only a path of this site (never another host)."""
    if not target or _NOT_IN_PATHS.search(target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def seg(value: Any) -> str:
    """One path segment of a service call: an id from a URL or a form can never add a path, query or fragment."""
    return quote(str(value), safe="")


# --- the pages' parts, and who is here -----------------------------------------------------------------------

EXTENSION = "twincity.pages"
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; img-src 'self' data:; "
       "style-src 'self'; form-action 'self'; frame-ancestors 'none'")


@dataclass
class Pages:
    backend: Backend
    links: SignInLinks
    sessions: Sessions
    settings: Settings
    mailer: ThreadPoolExecutor  # sign-in mails are asked for off the request (see account.signin)
    invitations: Invitations | None = None
    invitation_mail: Any = None  # usecases.InvitationMail (the notify service)


def pages() -> Pages:
    return current_app.extensions[EXTENSION]


def backend() -> Backend:
    return pages().backend


def me() -> Visitor:
    return g.visitor


def call(service: str, method: str, path: str, **kwargs: Any) -> Any:
    """A service call in the name of the signed-in visitor (the same internal endpoints as the API)."""
    return backend().call(backend().caller_of(me()), service, method, path, **kwargs)


def load_visitor() -> Visitor | None:
    """Who the session says is here, if the server still holds that session (signing out, erasure, a revoked or
    rotated key end it everywhere)."""
    who = session.get("who")
    if not isinstance(who, dict):
        return None
    sessions = pages().sessions
    if (who.get("kind") == "participant" and isinstance(who.get("id"), str) and who.get("city")
            and sessions.valid(who.get("sid"), participant_id=who["id"])):
        return Visitor("participant", who["city"], participant_id=who["id"], name=who.get("name", ""))
    if (who.get("kind") == "coordinator" and isinstance(who.get("key"), str)
            and sessions.valid(who.get("sid"), key_id=who["key"])):
        found = backend().coordinator_key(who["key"])  # a rotated key's fingerprint changes with its secret
        if found is not None:
            key, fingerprint = found
            if key.city == who.get("city") and hmac.compare_digest(str(who.get("fp", "")), fingerprint):
                return Visitor("coordinator", key.city, key_id=key.id, scopes=key.scopes)
    session.pop("who", None)
    return None


def only_for(kind: str | tuple[str, ...], signin: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view for signed-in visitors of `kind` (participant, coordinator, or both); others go to sign in first."""
    kinds = (kind,) if isinstance(kind, str) else kind

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            visitor = g.get("visitor")
            if visitor is None or visitor.kind not in kinds:
                return redirect(url_for(signin, next=request.full_path.rstrip("?")))
            return view(*args, **kwargs)
        return wrapped
    return decorate


participant_only = only_for("participant", "pages.account.signin")
coordinator_only = only_for("coordinator", "pages.account.coordinator_signin")
signed_in = only_for(("participant", "coordinator"), "pages.account.signin")


def security_headers(response: Response) -> Response:
    """The headers of every page (also of the error pages the app answers for unknown paths)."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # No Referer at all: a sign-in link (/signin/<token>) must not travel to anyone, not even to our own logs.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    # The pages run no script at all; no <base>, no plugins, no framing, forms post only here.
    response.headers.setdefault("Content-Security-Policy", CSP)
    if g.get("visitor") is not None or request.path.startswith("/signin"):
        response.headers["Cache-Control"] = "private, no-store"
    return response


# --- words for keys ----------------------------------------------------------------------------------------

def themes_of(city: str | None) -> dict[str, dict[str, str]]:
    """The themes a city's ideas may have: the common ones and its partnerships' own, with their labels."""
    found = dict(DEFAULT_THEMES)
    for p in backend().directory.list_partnerships(city):
        for t in p.get("themes", []):
            found.setdefault(t["key"], t["labels"])
    return found


def theme_label(key: str) -> str:
    cache = g.setdefault("theme_cache", {})
    if "themes" not in cache:
        visitor = g.get("visitor")
        cache["themes"] = themes_of(visitor.city if visitor else None)
    return label(cache["themes"].get(key), key)


def city_name(key: str | None) -> str:
    return backend().city_name(key)


def reason_text(reason: dict[str, Any]) -> str:
    text = reason.get("text") or {}
    return text.get(locale()) or text.get("en") or next(iter(text.values()), "")


def city_zone(key: str | None) -> str:
    """A city's IANA time zone (UTC for a city the directory does not know)."""
    doc = backend().directory.city(key) if key else None
    return zone_of(doc) if doc else "UTC"


def local_time(value: Any, city: str | None = None, *, date: bool = True) -> str:
    """A moment as people of `city` (default: the visitor's) read it: their date and clock time, in their city's
    zone and the page's language, with the city named ("Donnerstag, 10. Dezember 2026, 18:00 (Karlsruhe)")."""
    moment = when(value)
    if moment is None:
        return ""
    city = city or (g.visitor.city if g.get("visitor") else None)
    try:
        local = moment.astimezone(ZoneInfo(city_zone(city)))
    except OverflowError:  # at the calendar's edge there is no local time: the moment as stored
        return moment.isoformat()
    clock = babel_dates.format_time(local, "HH:mm", locale=locale())
    day = babel_dates.format_date(local, "full", locale=locale())
    return f"{day}, {clock} ({city_name(city)})" if date else f"{clock} ({city_name(city)})"


def visible_cities() -> list[dict[str, Any]]:
    return backend().directory.list_cities(list(backend().caller_of(me()).visible_cities))


def template_words() -> dict[str, Any]:
    """What every template may use."""
    return {"csrf_token": csrf_token, "visitor": g.get("visitor"), "locale": locale(), "locales": LOCALES,
            "label": label, "language_name": language_name, "when": when, "IDEA_STATUS": IDEA_STATUS,
            "MATCH_STATUS": MATCH_STATUS, "theme_label": theme_label, "city_name": city_name,
            "reason_text": reason_text, "embedded": pages().settings.embedded, "local_time": local_time}
