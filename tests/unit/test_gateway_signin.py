"""Signing in and out (gateway.usecases): links by e-mail for participants, a city key for coordinators.

The links and sessions are the real stores over an in-memory mongomock database; the people (the ideas service)
and the e-mail (the notify service) are fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mongomock
import pytest

from gateway import usecases
from gateway.keys import ApiKey
from gateway.signin import MAILS_PER_ADDRESS, LinkInvalid, Sessions, SignInLinks

ANNA = {"id": "p_anna", "city": "karlsruhe", "email": "anna@example.org", "name": "Anna", "language": "de"}
ANNA_RU = {"id": "p_anna_ru", "city": "krasnodar", "email": "anna@example.org", "name": "Анна", "language": "ru"}


class FakePeople:
    def __init__(self, *people: Mapping[str, Any]) -> None:
        self.people = {p["id"]: dict(p) for p in people}

    def with_email(self, email: str) -> list[dict[str, Any]]:
        return [p for p in self.people.values() if p["email"].lower() == email.strip().lower()]

    def read(self, participant_id: str, city: str) -> dict[str, Any] | None:
        person = self.people.get(participant_id)
        return person if person is not None and person["city"] == city else None


class FakeMail:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int, str]] = []

    def send(self, person: Mapping[str, Any], link: str, minutes: int, token_id: str) -> None:
        self.sent.append((person["id"], link, minutes, token_id))


class FakeKeys:
    def __init__(self, **keys: ApiKey) -> None:
        self.keys = keys

    def authenticate(self, secret: str) -> ApiKey | None:
        return self.keys.get(secret)


@pytest.fixture
def db() -> Any:
    return mongomock.MongoClient()["gateway"]


@pytest.fixture
def links(db) -> SignInLinks:
    return SignInLinks(db, "a-secret-for-tests", minutes=30)


@pytest.fixture
def sessions(db) -> Sessions:
    return Sessions(db)


def link_to(token: str) -> tuple[str, str]:
    return f"/signin/{token}", f"https://lab.example.org/signin/{token}"


def token_of(mail: FakeMail, i: int = 0) -> str:
    return mail.sent[i][1].rsplit("/", 1)[1]


def test_every_person_with_the_address_gets_a_link_of_their_own(links):
    mail = FakeMail()
    sent = usecases.request_sign_in(links, FakePeople(ANNA, ANNA_RU), mail, "Anna@Example.org ", link_to)
    assert [(s.name, s.city) for s in sent] == [("Anna", "karlsruhe"), ("Анна", "krasnodar")]
    assert [m[0] for m in mail.sent] == ["p_anna", "p_anna_ru"] and all(m[2] == 30 for m in mail.sent)
    assert token_of(mail, 0) != token_of(mail, 1)
    assert links.check(token_of(mail, 1)).city == "krasnodar"


def test_an_unknown_address_gets_nothing_and_the_answer_is_the_same(links):
    mail = FakeMail()
    assert usecases.request_sign_in(links, FakePeople(ANNA), mail, "nobody@example.org", link_to) == []
    assert mail.sent == []


def test_a_mailbox_cannot_be_flooded(links):
    mail = FakeMail()
    for _ in range(MAILS_PER_ADDRESS + 3):
        usecases.request_sign_in(links, FakePeople(ANNA), mail, ANNA["email"], link_to)
    assert len(mail.sent) == MAILS_PER_ADDRESS


def test_a_link_signs_in_once_and_opening_it_spends_nothing(links, sessions):
    mail, people = FakeMail(), FakePeople(ANNA)
    usecases.request_sign_in(links, people, mail, ANNA["email"], link_to)
    token = token_of(mail)
    usecases.check_sign_in_link(links, token)
    usecases.check_sign_in_link(links, token)  # a mail scanner opened it: it still works
    person, sid = usecases.sign_in_with_link(links, sessions, people, token)
    assert person["id"] == "p_anna" and sessions.valid(sid, participant_id="p_anna")
    with pytest.raises(LinkInvalid, match="used"):
        usecases.sign_in_with_link(links, sessions, people, token)
    with pytest.raises(LinkInvalid, match="used"):
        usecases.check_sign_in_link(links, token)


@pytest.mark.parametrize("token", ["", "not-a-token", "eyJwIjoieCJ9.forged.signature"])
def test_a_forged_or_mangled_link_is_invalid(links, sessions, token):
    with pytest.raises(LinkInvalid, match="invalid"):
        usecases.sign_in_with_link(links, sessions, FakePeople(ANNA), token)


def test_a_link_of_someone_erased_since_is_gone_and_opens_no_session(links, sessions, db):
    mail = FakeMail()
    usecases.request_sign_in(links, FakePeople(ANNA), mail, ANNA["email"], link_to)
    with pytest.raises(LinkInvalid, match="gone"):
        usecases.sign_in_with_link(links, sessions, FakePeople(), token_of(mail))
    assert db["web_sessions"].count_documents({}) == 0


def test_signing_out_ends_the_session_on_the_server(links, sessions):
    mail, people = FakeMail(), FakePeople(ANNA)
    usecases.request_sign_in(links, people, mail, ANNA["email"], link_to)
    _, sid = usecases.sign_in_with_link(links, sessions, people, token_of(mail))
    usecases.sign_out(sessions, sid)
    assert not sessions.valid(sid, participant_id="p_anna")
    usecases.sign_out(sessions, None)  # a session without an id (an old cookie) is nothing to end


def test_a_coordinator_signs_in_with_a_city_key_that_may_read(sessions):
    keys = FakeKeys(read=ApiKey("key_r", "karlsruhe", ("read",)), write=ApiKey("key_w", "karlsruhe", ("write",)),
                    admin=ApiKey("key_a", None, ("admin",)))
    key, sid = usecases.sign_in_coordinator(keys, sessions, "read")
    assert key.id == "key_r" and sessions.valid(sid, key_id="key_r")
    for secret, reason in (("nope", "unknown"), ("admin", "admin"), ("write", "no-read")):
        with pytest.raises(usecases.CoordinatorRefused) as refused:
            usecases.sign_in_coordinator(keys, sessions, secret)
        assert refused.value.reason == reason
