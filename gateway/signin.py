"""Sign-in without passwords: signed, short-lived, single-use links by e-mail; coordinators sign in with a city key.

A link carries (participant, city, link id) signed with the gateway's web secret and a timestamp; it works
within TWINCITY_SIGNIN_MINUTES and only once (the link id is written to `sign_in_used` under a unique
key when it is spent). The gateway finds the person through the ideas service and asks the notify service
to write and send the e-mail: the pages never touch another service's store.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from services.store import DuplicateKeyError, Index, new_id

USED, REQUESTS, SECRETS, SESSIONS = "sign_in_used", "sign_in_requests", "web_secrets", "web_sessions"
INVITATIONS = "invitations"
INVITATION_DAYS = 14
SESSION_DAYS = 14  # a web session; signing out (or erasure, or revoking the key) ends it at once
INDEXES = {
    # Spent link ids are kept a day, well beyond any link's life; then MongoDB drops them.
    USED: [Index(keys=[("at", 1)], name="sign_in_used_at", options={"expireAfterSeconds": 86_400})],
    REQUESTS: [Index(keys=[("email", 1), ("at", -1)], name="sign_in_requests_email"),
               Index(keys=[("at", 1)], name="sign_in_requests_at", options={"expireAfterSeconds": 86_400})],
    SECRETS: [],
    # A participant's sessions, so that signing out (or being erased) ends them on the server, not only in the
    # browser that signed out: a copied cookie names a session that no longer exists.
    INVITATIONS: [Index(keys=[("city", 1), ("_id", -1)], name="invitations_city")],
    SESSIONS: [Index(keys=[("participant_id", 1)], name="web_sessions_participant"),
               Index(keys=[("expires_at", 1)], name="web_sessions_expiry", options={"expireAfterSeconds": 0})],
}
MAILS_PER_ADDRESS = 5  # sign-in e-mails one address may ask for within THROTTLE_WINDOW
THROTTLE_WINDOW = timedelta(minutes=15)


class LinkInvalid(Exception):
    """The link is forged, mangled, expired or spent; `reason` says which (for the page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Link:
    participant_id: str
    city: str
    link_id: str


def web_secret(db: Any, configured: str) -> str:
    """TWINCITY_SECRET, or one random secret kept in the gateway's store (shared by all its processes)."""
    if configured:
        return configured
    candidate = secrets.token_hex(32)
    with contextlib.suppress(DuplicateKeyError):  # another process made it first: use theirs
        db[SECRETS].insert_one({"_id": "web", "secret": candidate, "created_at": datetime.now(UTC)})
    return db[SECRETS].find_one({"_id": "web"})["secret"]


class SignInLinks:
    def __init__(self, db: Any, secret: str, minutes: float) -> None:
        self.used = db[USED]
        self.requests = db[REQUESTS]
        self.serializer = URLSafeTimedSerializer(secret, salt="twincity.sign-in")
        self.max_age = int(minutes * 60)
        self.minutes = int(minutes)

    def make(self, participant_id: str, city: str) -> tuple[str, str]:
        """(token, link id) for one participant."""
        link_id = secrets.token_urlsafe(12)
        return self.serializer.dumps({"p": participant_id, "c": city, "j": link_id}), link_id

    def check(self, token: str) -> Link:
        """The link's content if it is genuine and fresh (it is not spent by this)."""
        try:
            data = self.serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise LinkInvalid("expired") from None
        except BadSignature:
            raise LinkInvalid("invalid") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("p", "c", "j")):
            raise LinkInvalid("invalid")
        if self.used.count_documents({"_id": data["j"]}, limit=1):
            raise LinkInvalid("used")
        return Link(data["p"], data["c"], data["j"])

    def spend(self, token: str) -> Link:
        """Check the link and mark it used, atomically: of two tabs opening it, one signs in."""
        link = self.check(token)
        try:
            self.used.insert_one({"_id": link.link_id, "participant_id": link.participant_id,
                                  "at": datetime.now(UTC)})
        except DuplicateKeyError:
            raise LinkInvalid("used") from None
        return link

    def may_send(self, email: str) -> bool:
        """Throttle: a few e-mails per address and quarter hour, so that the form cannot flood a mailbox."""
        key = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        since = datetime.now(UTC) - THROTTLE_WINDOW
        if self.requests.count_documents({"email": key, "at": {"$gte": since}}) >= MAILS_PER_ADDRESS:
            return False
        self.requests.insert_one({"email": key, "at": datetime.now(UTC)})
        return True


class Invitations:
    """Invitations of a city to people who are no participants yet: a signed link by e-mail (valid INVITATION_DAYS),
    accepted once (the invitation's status moves from sent to accepted in one conditional write)."""

    def __init__(self, db: Any, secret: str, days: int = INVITATION_DAYS) -> None:
        self.invitations = db[INVITATIONS]
        self.serializer = URLSafeTimedSerializer(secret, salt="twincity.invitation")
        self.days = days

    def make(self, city: str, email: str, name: str, language: str, *, by: str | None) -> tuple[dict[str, Any], str]:
        """A new invitation and its link's token."""
        now = datetime.now(UTC)
        doc = {"_id": new_id("inv"), "city": city, "email": email, "name": name, "language": language,
               "status": "sent", "created_at": now, "expires_at": now + timedelta(days=self.days), "by": by,
               "participant_id": None, "accepted_at": None}
        self.invitations.insert_one(doc)
        return doc, self.serializer.dumps({"i": doc["_id"]})

    def request_sign_up(self, city: str, email: str, data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """Someone signs up themselves (a city that lets them): a sign-up waiting for its address to be confirmed,
        and the token of the confirmation link."""
        now = datetime.now(UTC)
        doc = {"_id": new_id("signup"), "kind": "signup", "city": city, "email": email,
               "name": data.get("name", ""), "language": data["language"], "interests": data.get("interests", ""),
               "status": "requested", "created_at": now, "expires_at": now + timedelta(days=self.days),
               "by": None, "participant_id": None, "accepted_at": None}
        self.invitations.insert_one(doc)
        return doc, self.serializer.dumps({"i": doc["_id"]})

    def move(self, doc_id: str, before: str, after: str, **fields: Any) -> bool:
        """From one status to the next, once (False: it moved meanwhile)."""
        return self.invitations.update_one({"_id": doc_id, "status": before},
                                           {"$set": {"status": after, **fields}}).matched_count == 1

    def get(self, doc_id: str) -> dict[str, Any] | None:
        return self.invitations.find_one({"_id": doc_id})

    def waiting(self, city: str) -> list[dict[str, Any]]:
        """A city's sign-ups whose address is confirmed, waiting for a coordinator's yes or no."""
        return list(self.invitations.find({"city": city, "kind": "signup", "status": "confirmed"}).sort("_id", 1))

    def check(self, token: str, status: str = "sent") -> dict[str, Any]:
        """The invitation (or sign-up) a link stands for, while it is in `status`."""
        try:
            data = self.serializer.loads(token, max_age=self.days * 86_400)
        except SignatureExpired:
            raise LinkInvalid("expired") from None
        except BadSignature:
            raise LinkInvalid("invalid") from None
        doc = self.invitations.find_one({"_id": data.get("i")}) if isinstance(data, dict) else None
        if doc is None:
            raise LinkInvalid("invalid")
        if doc["status"] != status:
            raise LinkInvalid("used")
        return doc

    def accept(self, invitation_id: str, participant_id: str) -> bool:
        """Mark it accepted by the participant it made (False: accepted meanwhile, in another tab)."""
        return self.invitations.update_one(
            {"_id": invitation_id, "status": "sent"},
            {"$set": {"status": "accepted", "participant_id": participant_id,
                      "accepted_at": datetime.now(UTC)}}).matched_count == 1

    def of_city(self, city: str, limit: int = 200) -> list[dict[str, Any]]:
        return list(self.invitations.find({"city": city, "kind": {"$ne": "signup"}}).sort("_id", -1).limit(limit))


class Sessions:
    """Web sessions on the server, a participant's or a coordinator's: the cookie carries only a random session id
    besides who it is, so that signing out (or erasure) ends every copy of the cookie."""

    def __init__(self, db: Any, days: float = SESSION_DAYS) -> None:
        self.sessions = db[SESSIONS]
        self.lifetime = timedelta(days=days)

    def open(self, city: str, *, participant_id: str | None = None, key_id: str | None = None) -> str:
        """A new session of a participant, or of a coordinator signed in with the key `key_id`."""
        sid = secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        self.sessions.insert_one({"_id": sid, "participant_id": participant_id, "key_id": key_id, "city": city,
                                  "created_at": now, "expires_at": now + self.lifetime})
        return sid

    def valid(self, sid: Any, *, participant_id: str | None = None, key_id: str | None = None) -> bool:
        if not isinstance(sid, str) or not sid or (participant_id is None) == (key_id is None):
            return False
        doc = self.sessions.find_one({"_id": sid, "participant_id": participant_id, "key_id": key_id})
        # MongoDB drops expired sessions within a minute or so (TTL index); until then the date decides.
        return doc is not None and _aware(doc["expires_at"]) > datetime.now(UTC)

    def close(self, sid: Any) -> None:
        if isinstance(sid, str) and sid:
            self.sessions.delete_one({"_id": sid})

    def close_all(self, participant_id: str) -> int:
        """End every session of a person (erasure): returns how many there were."""
        return self.sessions.delete_many({"participant_id": participant_id}).deleted_count


def _aware(moment: datetime) -> datetime:
    """MongoDB gives back naive UTC datetimes (unless the client is tz_aware)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
