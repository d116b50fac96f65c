"""What the gateway itself does, one function per use case: cities, partnerships and their themes, API keys and the
audit log. Everything else the API passes on to the service that owns it (api.py).

Each takes the directory (cities, partnerships), the key store or the audit log, and the key making the call where
it matters; api.py only parses, calls one of these, and answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from gateway import domain
from gateway.audit import AuditLog
from gateway.domain import City, Exists, Invalid, Partnership, RuleViolation
from gateway.keys import ApiKey, KeyStore
from gateway.repository import Directory
from gateway.signin import Invitations, LinkInvalid, Sessions, SignInLinks
from services.errors import Forbidden
from services.store import NotFound, now
from services.tenancy import Caller

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)


# --- cities and partnerships ------------------------------------------------------------------------------------

def add_city(directory: Directory, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    return directory.add_city(City.register(**data, at=clock()))


def change_city(directory: Directory, key: str, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    """A city's name, or its names in other languages (what readers of those languages see, and what matching takes
    out of texts as no topic)."""
    return directory.change_city(key, lambda city: city.rename(at=clock(), name=data.get("name"),
                                                               names=data.get("names"),
                                                               timezone=data.get("timezone")))


def list_cities(directory: Directory, who: Caller) -> list[dict[str, Any]]:
    return directory.list_cities(None if who.admin else who.visible_cities)


def add_partnership(directory: Directory, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    """Twin two cities (gateway.domain.Partnership.form has the rules)."""
    partnership = Partnership.form(data["cities"], data["name"], data.get("themes", ()), at=clock(),
                                   known=lambda city: directory.city(city) is not None,
                                   partnership_id=data.get("id"))
    return partnership_view(directory.add_partnership(partnership))


def list_partnerships(directory: Directory, who: Caller) -> list[dict[str, Any]]:
    """Every partnership for an admin key; a city's key, those of its city."""
    return [partnership_view(d) for d in directory.list_partnerships(None if who.admin else who.city)]


def partnership_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A partnership with all the themes its ideas may have: the common four, then its own."""
    return {**doc, "themes": domain.common_themes() + domain.own_themes(doc)}


def themes(directory: Directory, who: Caller, wanted: str | None) -> list[dict[str, Any]]:
    """The common themes and the own themes of the caller's partnerships (of one, when `wanted` names it)."""
    if wanted and wanted not in {p.id for p in who.partnerships}:
        raise NotFound("partnership", wanted)
    items = domain.common_themes()
    for p in directory.list_partnerships(None if who.admin else who.city):
        if wanted is None or p["_id"] == wanted:
            items += domain.own_themes(p)
    return items


# --- API keys ---------------------------------------------------------------------------------------------------

def add_key(directory: Directory, keys: KeyStore, data: Mapping[str, Any], clock: Clock = now) -> dict[str, Any]:
    """A new key (its secret in the answer, this once): of a known city, or an admin key of none."""
    city = data.get("city")
    if city is not None and directory.city(city) is None:
        raise Invalid("city", f"unknown city {city!r}")
    scopes, expires = domain.new_key_terms(data["scopes"], city, data.get("expires_at"), clock())
    label = data.get("label", "")
    key, secret = keys.create(scopes, city, label=label, expires_at=expires)
    return {**(keys.describe(key.id) or {}), "key": secret}


def revoke_key(keys: KeyStore, key_id: str, *, caller_id: str | None, configured_id: str | None) -> None:
    """Revoke a key (it gets 401 from now on). `caller_id`: the key making the call (None from the CLI);
    `configured_id`: the key TWINCITY_ADMIN_KEY configures."""
    domain.check_key_change(key_id, "revoke", caller_id=caller_id, configured_id=configured_id)
    target = keys.active(key_id)
    if target is not None:
        domain.check_revoke(admin=target.admin, other_admins=keys.other_admins(key_id))
    if not keys.revoke(key_id):
        raise NotFound("API key", key_id)
    if target is not None and target.admin:
        # Two admins revoking the last two admin keys at the same moment both passed the check above: looked at
        # again after the write, each sees none left, and both take their revocation back (one may then retry).
        left = keys.other_admins(key_id)
        if not left:
            keys.restore(key_id)
        domain.check_revoke(admin=True, other_admins=left)


def rotate_key(keys: KeyStore, key_id: str, *, caller_id: str | None, configured_id: str | None) -> dict[str, Any]:
    """A new secret for the key (in the answer, this once); the old one stops working at once."""
    domain.check_key_change(key_id, "rotate", caller_id=caller_id, configured_id=configured_id)
    secret = keys.rotate(key_id)
    described = keys.describe(key_id)
    if secret is None:
        if described and described["expired"] and not described["revoked"]:
            raise domain.RuleViolation(f"API key {key_id} has expired: a new secret would not work either; make a "
                                       "new key")
        raise NotFound("active API key", key_id)
    assert described is not None
    return {**described, "key": secret}


def list_keys(keys: KeyStore) -> Sequence[dict[str, Any]]:
    return keys.list_keys()


def read_audit(audit: AuditLog, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    return audit.page(limit, cursor)


# --- signing in and out -----------------------------------------------------------------------------------------

class People(Protocol):
    """The participants the gateway may sign in (the ideas service owns them)."""

    def with_email(self, email: str) -> list[dict[str, Any]]: ...

    def read(self, participant_id: str, city: str) -> dict[str, Any] | None: ...


class SignInMail(Protocol):
    """Writes and sends a sign-in e-mail in the person's language (the notify service does)."""

    def send(self, person: Mapping[str, Any], link: str, minutes: int, token_id: str) -> None: ...


@dataclass(frozen=True)
class SentLink:
    name: str
    city: str
    path: str


def request_sign_in(links: SignInLinks, people: People, mail: SignInMail, email: str,
                    link_to: Callable[[str], tuple[str, str]]) -> list[SentLink]:
    """Send a sign-in link to every participant with this address (one address may have one per city).

    `link_to(token)` gives the link's (path, full address). Nobody learns from the answer whether the address is
    known: the caller answers the same either way, and a few e-mails per address and quarter hour are the most
    (more are dropped, and written down).
    """
    if not links.may_send(email):
        log.warning("sign-in e-mails for one address throttled")
        return []
    sent = []
    for person in people.with_email(email):
        token, link_id = links.make(person["id"], person["city"])
        path, address = link_to(token)
        mail.send(person, address, links.minutes, link_id)
        sent.append(SentLink(person.get("name", ""), person["city"], path))
    return sent


def check_sign_in_link(links: SignInLinks, token: str) -> None:
    """Is the link genuine, fresh and unspent? (LinkInvalid says why not.) Opening it does not spend it: mail
    scanners open links, and a link works once."""
    links.check(token)


def sign_in_with_link(links: SignInLinks, sessions: Sessions, people: People, token: str) -> tuple[dict[str, Any], str]:
    """Spend the link (of two tabs, one signs in) and open a session: (the person, the session id).
    LinkInvalid("gone") when the person was erased since the link was sent."""
    link = links.spend(token)
    person = people.read(link.participant_id, link.city)
    if person is None:
        raise LinkInvalid("gone")
    return person, sessions.open(person["city"], participant_id=person["id"])


# --- invitations: a city invites someone who is no participant yet ----------------------------------------------

class InvitationMail(Protocol):
    """Writes and sends an invitation (or a sign-up's mail: `template`) in the person's language (the notify service
    does)."""

    def send(self, invitation: Mapping[str, Any], link: str, days: int, template: str = "invitation") -> None: ...


class Registrar(Protocol):
    """Makes a participant of a city (the ideas service does): the new person (with `id`)."""

    def register(self, city: str, data: Mapping[str, Any]) -> dict[str, Any]: ...


def invite(invitations: Invitations, mail: InvitationMail, people: People, who: Caller, data: Mapping[str, Any],
           link_to: Callable[[str], str]) -> tuple[dict[str, Any], str]:
    """An invitation of the caller's city (an admin key names the city) by e-mail, in the person's language: the
    invitation and its link (`link_to(token)`: the full address). Someone who is a participant of the city already
    is not invited (Exists): they sign in with their address."""
    if who.participant is not None:
        raise Forbidden("a city invites people through its coordinators (a city key), not a participant")
    city = who.acting_city(data.get("city"))
    if any(person.get("city") == city for person in people.with_email(data["email"])):
        raise Exists(f"{data['email']} is a participant of {city} already: they sign in with this address")
    doc, token = invitations.make(city, data["email"], data.get("name") or "", data["language"], by=who.key_id)
    link = link_to(token)
    mail.send(doc, link, invitations.days)
    return doc, link


def list_invitations(invitations: Invitations, who: Caller, city: str | None) -> list[dict[str, Any]]:
    return invitations.of_city(who.acting_city(city))


def check_invitation(invitations: Invitations, token: str) -> dict[str, Any]:
    """The invitation a link stands for, while it may be accepted (LinkInvalid says why not)."""
    return invitations.check(token)


def accept_invitation(invitations: Invitations, people: Registrar, sessions: Sessions, token: str,
                      data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The invited person says yes with their name, language and interests: a participant of the city (with the
    invited address), signed in: (the person, the session id)."""
    invitation = invitations.check(token)
    person = people.register(invitation["city"], {**data, "email": invitation["email"]})
    if not invitations.accept(invitation["_id"], person["id"]):
        raise LinkInvalid("used")
    return person, sessions.open(invitation["city"], participant_id=person["id"])


# --- signing up: a city may let people join by themselves, with or without its coordinator's yes ----------------

SIGN_UP_MODES = ("closed", "open", "approval")


class SignUpClosed(Exception):
    """The city does not let people sign up by themselves."""


def set_sign_up(directory: Directory, who: Caller, city: str, mode: str) -> dict[str, Any]:
    """Whether people may sign up for a city by themselves: closed, open, or with a coordinator's approval of each."""
    if directory.city(city) is None:
        raise NotFound("city", city)
    if who.participant is not None or not who.can_change(city):
        raise Forbidden("a city's sign-up is set by its own key, or an admin key")
    return directory.set_sign_up(city, mode)


def request_sign_up(directory: Directory, invitations: Invitations, mail: InvitationMail, data: Mapping[str, Any],
                    link_to: Callable[[str], str]) -> dict[str, Any]:
    """Someone signs up for a city that lets them: a mail to confirm their address (nothing is made before)."""
    city = directory.city(data["city"])
    if city is None or city.get("sign_up", "closed") == "closed":
        raise SignUpClosed(data["city"])
    doc, token = invitations.request_sign_up(city["_id"], data["email"], data)
    mail.send(doc, link_to(token), invitations.days, template="signup_confirm")
    return doc


def confirm_sign_up(directory: Directory, invitations: Invitations, people: Registrar, sessions: Sessions,
                    token: str) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """The address is confirmed: in an open city the person is a participant now, signed in (the sign-up, the
    person, the session id); where a coordinator approves each, the sign-up waits (the sign-up, None, None)."""
    doc = invitations.check(token, status="requested")
    mode = (directory.city(doc["city"]) or {}).get("sign_up", "closed")
    if mode == "approval":
        if not invitations.move(doc["_id"], "requested", "confirmed"):
            raise LinkInvalid("used")
        return doc, None, None
    if mode != "open":
        raise LinkInvalid("gone")
    person = people.register(doc["city"], _person_of(doc))
    if not invitations.move(doc["_id"], "requested", "accepted", participant_id=person["id"]):
        raise LinkInvalid("used")
    return doc, person, sessions.open(doc["city"], participant_id=person["id"])


def _person_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("name", "email", "language", "interests") if doc.get(k) is not None}


def waiting_sign_ups(invitations: Invitations, who: Caller, city: str | None) -> list[dict[str, Any]]:
    return invitations.waiting(who.acting_city(city))


def answer_sign_up(invitations: Invitations, people: Registrar, mail: InvitationMail, who: Caller, signup_id: str,
                   accept: bool, sign_in_url: str) -> dict[str, Any]:
    """A coordinator says yes (the person is a participant and is told how to sign in) or no (they are told)."""
    doc = invitations.get(signup_id)
    if doc is None or doc.get("kind") != "signup" or not who.can_change(doc["city"]) or who.participant:
        raise NotFound("sign-up", signup_id)
    if doc["status"] != "confirmed":
        raise RuleViolation(f"this sign-up is {doc['status']}: only a confirmed one waits for an answer")
    if not accept:
        if invitations.move(signup_id, "confirmed", "declined"):
            mail.send(doc, sign_in_url, invitations.days, template="signup_declined")
        return {**doc, "status": "declined"}
    person = people.register(doc["city"], _person_of(doc))
    invitations.move(signup_id, "confirmed", "accepted", participant_id=person["id"])
    mail.send(doc, sign_in_url, invitations.days, template="signup_approved")
    return {**doc, "status": "accepted", "participant_id": person["id"]}


class CoordinatorRefused(Exception):
    """A coordinator may not sign in with this key; `reason`: unknown (or revoked, expired), admin, no-read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign_in_coordinator(keys: KeyStore, sessions: Sessions, secret: str) -> tuple[ApiKey, str]:
    """A coordinator signs in with a key of their city that may read: (the key, the session id)."""
    key = keys.authenticate(secret)
    if key is None:
        raise CoordinatorRefused("unknown")
    if key.city is None:
        raise CoordinatorRefused("admin")  # an admin key belongs to no city, and the pages are a city's
    if not key.allows("read"):
        raise CoordinatorRefused("no-read")
    return key, sessions.open(key.city, key_id=key.id)


def sign_out(sessions: Sessions, session_id: Any) -> None:
    """End the session on the server: a copy of the cookie stops working too."""
    sessions.close(session_id)


# --- a round's report -------------------------------------------------------------------------------------------

class Services(Protocol):
    """The services' internal answers, in the caller's name (api.py and the pages each give one)."""

    def get(self, service: str, path: str) -> Any: ...


def round_report(services: Services, round_id: str) -> dict[str, Any]:
    """A round's figures: its ideas and people from the ideas service, its matches and projects from matching (a
    round the caller may not see is the ideas service's 404)."""
    path = f"/internal/rounds/{quote(round_id, safe='')}/figures"
    ideas_part = services.get("ideas", path)
    matching_part = services.get("matching", f"{path}?{urlencode({'partnership': ideas_part['round']['partnership']})}")
    return domain.round_report(ideas_part, matching_part)
