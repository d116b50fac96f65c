"""The notify service's use cases and handlers against an in-memory fake of its repository."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from marshmallow import ValidationError

from notify import domain, handlers, usecases
from services.contract import new_event, parse_event
from services.errors import Refused
from services.store import NotFound
from services.tenancy import Caller
from tests.unit.fakes import Clock

KARLSRUHE = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"))
KRASNODAR = Caller(city="krasnodar", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"))
GATEWAY = Caller(city=None, scopes=("admin", "read", "write"), visible_cities=("karlsruhe", "krasnodar"))
LETTERHEAD = usecases.Letterhead("http://lab.example", "secret", email=True)


class FakeRepository:
    """The part of notify.repository.Repository the use cases use, in dicts."""

    def __init__(self) -> None:
        self.people: dict[str, dict[str, Any]] = {}
        self.cities: dict[str, dict[str, Any]] = {}
        self.notifications: dict[str, dict[str, Any]] = {}  # by key: one per event, person and channel
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.unsubscribed: list[str] = []

    def put_person(self, pid: str, version: int, fields: dict[str, Any]) -> None:
        if self.people.get(pid, {}).get("version", 0) < version:
            self.people[pid] = {"_id": pid, **fields, "version": version}

    def person(self, pid: str) -> dict[str, Any] | None:
        return self.people.get(pid)

    def people_in(self, cities: Any) -> list[str]:
        return [pid for pid, p in self.people.items() if p.get("city") in cities and not p.get("erased")]

    def erase_person(self, pid: str) -> None:
        self.people[pid] = {"_id": pid, "erased": True}
        self.notifications = {k: n for k, n in self.notifications.items()
                              if n["recipient"] != pid and pid not in n.get("about", [])}

    def put_city(self, key: str, name: str, language: str, names: Any = None, timezone: str | None = None) -> None:
        kept = self.cities.get(key, {}).get("timezone")
        self.cities[key] = {"name": name, "names": dict(names or {}), "timezone": timezone or kept}

    def city_zone(self, key: str) -> str | None:
        return self.cities.get(key, {}).get("timezone")

    def city_name(self, key: str, language: str | None = None) -> str:
        city = self.cities.get(key)
        if city is None:
            return key.capitalize()
        return city["names"].get(language or "") or city["name"]

    def add_notification(self, doc: dict[str, Any]) -> bool:
        if doc["key"] in self.notifications:
            return False
        self.notifications[doc["key"]] = {"_id": doc["key"], **doc}
        return True

    def listeners(self, cities: list[str], event_type: str) -> list[dict[str, Any]]:
        return [s for s in self.subscriptions.values() if s["city"] in cities and event_type in s["events"]]

    def add_delivery(self, doc: dict[str, Any], *, held: bool = False) -> bool:
        if doc["key"] in self.deliveries:
            return False
        self.deliveries[doc["key"]] = {**doc, "status": "held" if held else "pending"}
        return True

    def add_subscription(self, city: str, url: str, events: list[str], secret: str) -> dict[str, Any]:
        doc = {"_id": f"whk_{len(self.subscriptions)}", "city": city, "url": url, "events": events,
               "secret": secret, "status": "active"}
        self.subscriptions[doc["_id"]] = doc
        return doc

    def subscription(self, sid: str) -> dict[str, Any]:
        if sid not in self.subscriptions:
            raise NotFound("webhook", sid)
        return self.subscriptions[sid]

    def delete_subscription(self, sid: str) -> None:
        self.subscriptions.pop(sid, None)

    def subscriptions_of(self, city: str | None) -> list[dict[str, Any]]:
        return [s for s in self.subscriptions.values() if city is None or s["city"] == city]

    def resume_subscription(self, sid: str) -> None:
        self.subscriptions[sid]["status"] = "active"
        for d in self.deliveries.values():
            if d["subscription_id"] == sid and d["status"] == "held":
                d["status"] = "pending"

    def deliveries_of(self, sid: str, limit: int, cursor: Any) -> tuple[list[dict[str, Any]], None]:
        return [d for d in self.deliveries.values() if d["subscription_id"] == sid][:limit], None

    def unsubscribe(self, pid: str) -> bool:
        self.unsubscribed.append(pid)
        return True

    def inbox_of(self, pid: str, limit: int, cursor: Any, unread: bool) -> tuple[list[dict[str, Any]], None]:
        mine = [n for n in self.notifications.values() if n["recipient"] == pid and n["channel"] == "inbox"
                and not (unread and n.get("read_at"))]
        return mine[:limit], None

    def mark_read(self, pid: str, nid: str) -> dict[str, Any]:
        found = self.notifications.get(nid)
        if found is None or found["recipient"] != pid:
            raise NotFound("notification", nid)
        found["read_at"] = "now"
        return found


@pytest.fixture
def repo() -> FakeRepository:
    repo = FakeRepository()
    repo.put_city("krasnodar", "Краснодар", "ru")
    for pid, city, language in (("lena", "karlsruhe", "de"), ("anna", "krasnodar", "ru")):
        usecases.person_changed(repo, {"participant_id": pid, "city": city, "name": pid.title(), "language": language,
                                       "email": f"{pid}@example.org", "version": 1})  # type: ignore[arg-type]
    return repo


def proposed() -> Any:
    sides = [{"city": "karlsruhe", "idea_id": "i-de", "author_id": "lena", "title": "Stadtgarten", "language": "de"},
             {"city": "krasnodar", "idea_id": "i-ru", "author_id": "anna", "title": "Городской сад", "language": "ru"}]
    return parse_event(new_event("match.proposed", {
        "match_id": "match_1", "partnership": "karlsruhe-krasnodar", "kind": "idea", "score": 0.8, "version": 1,
        "parts": {"semantic": 0.8}, "sides": sides, "reasons": [{"code": "same_theme", "params": {},
                                                               "text": {"de": "Gleiches Thema", "ru": "Общая тема",
                                                                        "en": "Same theme"}}],
    }, producer="matching", partnership="karlsruhe-krasnodar"))


def test_both_authors_hear_of_a_proposal_in_their_language_once_per_channel(repo):
    event = proposed()
    handlers.notify_people(event, repo, LETTERHEAD)  # type: ignore[arg-type]
    handlers.notify_people(event, repo, LETTERHEAD)  # type: ignore[arg-type]  # redelivered: nothing anew
    by = {(n["recipient"], n["channel"]): n for n in repo.notifications.values()}
    assert set(by) == {(p, c) for p in ("lena", "anna") for c in ("inbox", "email")}
    assert by[("lena", "email")]["language"] == "de" and "Gleiches Thema" in by[("lena", "email")]["text"]
    assert "Городской сад" in by[("lena", "email")]["text"] and "Краснодар" in by[("lena", "email")]["text"]
    assert by[("anna", "inbox")]["language"] == "ru" and by[("anna", "email")]["status"] == "pending"
    assert by[("lena", "email")]["unsubscribe_url"].startswith("http://lab.example/unsubscribe/lena.")
    assert by[("lena", "email")]["link"] == "http://lab.example/ideas/i-de/matches"


def test_a_notification_belongs_to_the_digest_of_the_day_on_the_services_clock(repo):
    clock = Clock()
    clock.at = clock.at.replace(hour=23, minute=59)
    usecases.notify_people(repo, LETTERHEAD, proposed(), clock)  # type: ignore[arg-type]
    assert {n["day"] for n in repo.notifications.values()} == {"2026-12-02"}


def test_without_a_mail_server_an_email_is_skipped_and_says_why(repo):
    handlers.notify_people(proposed(), repo, usecases.Letterhead("http://lab.example", "s", email=False))  # type: ignore[arg-type]
    emails = [n for n in repo.notifications.values() if n["channel"] == "email"]
    assert {n["status"] for n in emails} == {"skipped"} and emails[0]["skipped_because"] == "no SMTP_URL configured"


def test_an_erased_person_is_told_nothing_and_their_inbox_is_gone(repo):
    handlers.notify_people(proposed(), repo, LETTERHEAD)  # type: ignore[arg-type]
    erased = parse_event(new_event("participant.erased", {"participant_id": "anna", "city": "krasnodar"},
                                   producer="ideas", city="krasnodar"))
    handlers.person_erased(erased, repo)  # type: ignore[arg-type]
    assert {n["recipient"] for n in repo.notifications.values()} == {"lena"}
    repo.notifications.clear()
    handlers.notify_people(proposed(), repo, LETTERHEAD)  # type: ignore[arg-type]
    assert {n["recipient"] for n in repo.notifications.values()} == {"lena"}


@contextlib.contextmanager
def no_bindings() -> Iterator[None]:
    yield


def test_a_webhook_hears_the_events_of_its_city_and_is_held_while_paused(repo, monkeypatch):
    monkeypatch.setattr(usecases, "resolve", lambda url: ["93.184.215.14"])
    hook = usecases.subscribe(repo, KRASNODAR, {"url": "https://hooks.example.org/x", "events": ["*"],  # type: ignore[arg-type]
                                                "secret": "s" * 16, "city": None}, (), no_bindings)
    assert hook["city"] == "krasnodar" and hook["events"] == list(domain.WEBHOOK_EVENTS)
    handlers.notify_webhooks(proposed(), repo)  # type: ignore[arg-type]
    [delivery] = repo.deliveries.values()
    assert delivery["event"]["type"] == "match.proposed" and delivery["status"] == "pending"
    hook["status"] = "paused"
    repo.deliveries.clear()
    handlers.notify_webhooks(proposed(), repo)  # type: ignore[arg-type]
    assert [d["status"] for d in repo.deliveries.values()] == ["held"]


def test_a_webhook_goes_only_to_a_public_address_and_belongs_to_its_city(repo, monkeypatch):
    monkeypatch.setattr(usecases, "resolve", lambda url: ["10.0.0.5"])
    with pytest.raises(ValidationError) as refused:
        usecases.subscribe(repo, KARLSRUHE, {"url": "https://intranet.example/x", "events": ["*"],  # type: ignore[arg-type]
                                             "secret": "s" * 16, "city": None}, (), no_bindings)
    assert "public internet" in refused.value.messages["url"][0]
    monkeypatch.setattr(usecases, "resolve", lambda url: ["93.184.215.14"])
    with pytest.raises(Refused) as forbidden:
        usecases.subscribe(repo, KARLSRUHE, {"url": "https://hooks.example.org/x", "events": ["*"],  # type: ignore[arg-type]
                                             "secret": "s" * 16, "city": "krasnodar"}, (), no_bindings)
    assert forbidden.value.status == 403
    hook = usecases.subscribe(repo, KARLSRUHE, {"url": "https://hooks.example.org/x",  # type: ignore[arg-type]
                                                "events": ["match.proposed"], "secret": "s" * 16, "city": None},
                              (), no_bindings)
    with pytest.raises(NotFound):
        usecases.ping(repo, KRASNODAR, hook["_id"])  # type: ignore[arg-type]
    usecases.ping(repo, KARLSRUHE, hook["_id"])  # type: ignore[arg-type]
    assert [d["event"]["type"] for d in repo.deliveries.values()] == [domain.PING]


def test_a_webhook_that_cannot_be_bound_is_not_kept(repo, monkeypatch):
    monkeypatch.setattr(usecases, "resolve", lambda url: ["93.184.215.14"])

    @contextlib.contextmanager
    def broker_down() -> Iterator[None]:
        yield
        raise ConnectionRefusedError("broker down")

    with pytest.raises(Refused) as unavailable:
        usecases.subscribe(repo, KARLSRUHE, {"url": "https://hooks.example.org/x", "events": ["*"],  # type: ignore[arg-type]
                                             "secret": "s" * 16, "city": None}, (), broker_down)
    assert unavailable.value.status == 503 and "nothing was kept" in str(unavailable.value)
    assert repo.subscriptions == {}


def test_only_the_gateway_asks_for_sign_in_mails_and_they_go_even_to_the_unsubscribed(repo):
    data = {"participant_id": "lena", "city": "karlsruhe", "to": "lena@example.org", "name": "Lena\u2028Hoffmann",
            "language": "de", "link": "http://lab.example/signin/abc", "minutes": 30, "token_id": "tok-12345678"}
    with pytest.raises(Refused):
        usecases.sign_in_mail(repo, KARLSRUHE, LETTERHEAD, data)  # type: ignore[arg-type]
    repo.people["lena"]["unsubscribed"] = True
    assert usecases.sign_in_mail(repo, GATEWAY, LETTERHEAD, data) == "pending"  # type: ignore[arg-type]
    [mail] = repo.notifications.values()
    assert "http://lab.example/signin/abc" in mail["text"] and "Lena Hoffmann" in mail["text"], "one line"
    assert domain.outcome(mail, "email") == [], "a sign-in mail was caused by no event: nobody hears of it"


def test_an_unsubscribe_link_works_for_its_person_only_and_only_when_confirmed(repo):
    token = domain.unsubscribe_token("secret", "lena")
    usecases.unsubscribe(repo, LETTERHEAD, token, confirm=False)  # type: ignore[arg-type]
    assert repo.unsubscribed == []
    usecases.unsubscribe(repo, LETTERHEAD, token, confirm=True)  # type: ignore[arg-type]
    assert repo.unsubscribed == ["lena"]
    with pytest.raises(Refused):
        usecases.unsubscribe(repo, LETTERHEAD, token.replace("lena", "anna"), confirm=True)  # type: ignore[arg-type]


def test_an_inbox_is_read_by_its_person_or_a_key_of_their_city_only(repo):
    from dataclasses import replace as changed

    handlers.notify_people(proposed(), repo, LETTERHEAD)  # type: ignore[arg-type]
    query = {"limit": 10, "unread": True}
    as_lena, as_jonas = changed(KARLSRUHE, participant="lena"), changed(KARLSRUHE, participant="jonas")
    [note] = usecases.inbox(repo, as_lena, "lena", query)[0]  # type: ignore[arg-type]
    assert usecases.inbox(repo, KARLSRUHE, "lena", query)[0] == [note]  # type: ignore[arg-type]
    for who, pid in ((as_jonas, "lena"), (KRASNODAR, "lena"), (as_lena, "anna")):
        with pytest.raises(NotFound):
            usecases.inbox(repo, who, pid, query)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        usecases.mark_read(repo, as_jonas, "lena", note["_id"])  # type: ignore[arg-type]
    assert usecases.mark_read(repo, as_lena, "lena", note["_id"])["read_at"]  # type: ignore[arg-type]
    assert usecases.inbox(repo, as_lena, "lena", query)[0] == []  # type: ignore[arg-type]


def test_a_city_lists_resumes_reads_and_removes_only_its_own_webhooks(repo, monkeypatch):
    monkeypatch.setattr(usecases, "resolve", lambda url: ["93.184.215.14"])
    hook = usecases.subscribe(repo, KARLSRUHE, {"url": "https://hooks.example.org/x", "events": ["match.proposed"],  # type: ignore[arg-type]
                                                "secret": "s" * 16, "city": None}, (), no_bindings)
    theirs = usecases.subscribe(repo, KRASNODAR, {"url": "https://hooks.example.org/y", "events": ["*"],  # type: ignore[arg-type]
                                                  "secret": "s" * 16, "city": None}, (), no_bindings)
    assert [h["_id"] for h in usecases.list_webhooks(repo, KARLSRUHE)] == [hook["_id"]]  # type: ignore[arg-type]
    assert len(usecases.list_webhooks(repo, GATEWAY)) == 2  # type: ignore[arg-type]
    hook["status"] = "paused"
    handlers.notify_webhooks(proposed(), repo)  # type: ignore[arg-type]
    held = [d for d in repo.deliveries.values() if d["subscription_id"] == hook["_id"]]
    assert [d["status"] for d in held] == ["held"]
    for other in (lambda: usecases.resume(repo, KRASNODAR, hook["_id"]),  # type: ignore[arg-type]
                  lambda: usecases.deliveries(repo, KRASNODAR, hook["_id"], 10, None),  # type: ignore[arg-type]
                  lambda: usecases.unsubscribe_webhook(repo, KRASNODAR, hook["_id"], no_bindings)):  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            other()
    assert usecases.resume(repo, KARLSRUHE, hook["_id"])["status"] == "active"  # type: ignore[arg-type]
    shown, _ = usecases.deliveries(repo, KARLSRUHE, hook["_id"], 10, None)  # type: ignore[arg-type]
    assert [d["status"] for d in shown] == ["pending"], "what was held while paused goes out on resume"
    usecases.unsubscribe_webhook(repo, KARLSRUHE, hook["_id"], no_bindings)  # type: ignore[arg-type]
    assert list(repo.subscriptions) == [theirs["_id"]]


def test_a_city_s_name_and_language_are_kept_for_the_messages(repo):
    registered = parse_event(new_event("city.registered", {"city": "nancy", "name": "Ville de Nancy", "country": "FR",
                                                           "language": "fr"}, producer="gateway", city="nancy"))
    handlers.city_registered(registered, repo)  # type: ignore[arg-type]
    assert repo.city_name("nancy") == "Ville de Nancy"


@pytest.mark.parametrize(("city", "reason", "de", "ru"), [
    ("krasnodar", "Дворы уже озеленяет другой проект", "von der Koordination in Краснодар", "Дворы уже озеленяет"),
    (None, "no longer proposed under the partnership's changed matching settings", "Einstellungen des Matchings",
     "настройки подбора партнёров изменились"),
])
def test_both_sides_hear_why_a_proposal_was_withdrawn_in_their_language(repo, city, reason, de, ru):
    sides = [{"city": "karlsruhe", "idea_id": "i-de", "author_id": "lena", "title": "Stadtgarten", "language": "de"},
             {"city": "krasnodar", "idea_id": "i-ru", "author_id": "anna", "title": "Городской сад", "language": "ru"}]
    event = parse_event(new_event("match.withdrawn", {
        "match_id": "match_1", "partnership": "karlsruhe-krasnodar", "status": "withdrawn", "sides": sides,
        "version": 2, "city": city, "reason": reason}, producer="matching", partnership="karlsruhe-krasnodar"))
    handlers.notify_people(event, repo, LETTERHEAD)  # type: ignore[arg-type]
    by = {n["recipient"]: n for n in repo.notifications.values() if n["channel"] == "inbox"}
    assert de in by["lena"]["text"] and "Городской сад" in by["lena"]["text"]
    assert ru in by["anna"]["text"] and by["anna"]["subject"].startswith("Предложение «Городской сад»")


def test_each_reader_gets_the_partner_city_s_name_in_their_language(repo):
    usecases.city_registered(repo, "karlsruhe", "Karlsruhe", "de", {"ru": "Карлсруэ"})
    usecases.city_registered(repo, "krasnodar", "Краснодар", "ru", {"de": "Krasnodar", "en": "Krasnodar"})
    handlers.notify_people(proposed(), repo, LETTERHEAD)  # type: ignore[arg-type]
    by = {n["recipient"]: n for n in repo.notifications.values() if n["channel"] == "inbox"}
    assert "Krasnodar" in by["lena"]["text"] and "Краснодар" not in by["lena"]["text"]
    assert "Карлсруэ" in by["anna"]["text"]


# --- joint projects and meetings --------------------------------------------------------------------------------

def city_event(event_type: str, city: str, name: str, language: str, **more: Any) -> Any:
    return parse_event(new_event(event_type, {"city": city, "name": name, "country": "DE" if language == "de" else "RU",
                                              "language": language, **more}, producer="gateway", city=city))


def project_event(event_type: str, **payload: Any) -> Any:
    members = [{"participant_id": "lena", "city": "karlsruhe"}, {"participant_id": "anna", "city": "krasnodar"}]
    return parse_event(new_event(event_type, {"project_id": "prj_1", "partnership": "karlsruhe-krasnodar",
                                              "title": "Grüne Höfe", "members": members,
                                              "cities": ["karlsruhe", "krasnodar"], **payload},
                                 producer="matching", partnership="karlsruhe-krasnodar"))


def scheduled(**more: Any) -> Any:
    return project_event("meeting.scheduled", meeting_id="mtg_1", meeting_title="Kick-off", proposer_id="lena",
                         duration_minutes=60, start="2026-12-10T17:00:00Z", link="https://meet.example.org/k",
                         **more)


@pytest.fixture
def zoned(repo: FakeRepository) -> FakeRepository:
    """Karlsruhe on Berlin time, Krasnodar on Moscow time, as the gateway's city events say."""
    handlers.city_registered(city_event("city.registered", "karlsruhe", "Karlsruhe", "de",  # type: ignore[arg-type]
                                        names={"ru": "Карлсруэ"}, timezone="Europe/Berlin"), repo)
    handlers.city_registered(city_event("city.registered", "krasnodar", "Краснодар", "ru",  # type: ignore[arg-type]
                                        names={"de": "Krasnodar"}, timezone="Europe/Moscow"), repo)
    return repo


def test_a_city_s_time_zone_is_kept_and_an_event_that_names_none_keeps_it(zoned):
    assert zoned.city_zone("krasnodar") == "Europe/Moscow"
    handlers.city_registered(city_event("city.updated", "krasnodar", "Krasnodar", "ru"), zoned)  # type: ignore[arg-type]
    assert zoned.city_zone("krasnodar") == "Europe/Moscow" and zoned.city_name("krasnodar") == "Krasnodar"
    handlers.city_registered(city_event("city.updated", "krasnodar", "Краснодар", "ru",  # type: ignore[arg-type]
                                        timezone="Europe/Samara"), zoned)
    assert zoned.city_zone("krasnodar") == "Europe/Samara"


def test_each_member_reads_the_meeting_in_their_own_time_and_their_e_mail_carries_the_invitation(zoned):
    import icalendar

    handlers.notify_people(scheduled(sequence=3), zoned, LETTERHEAD)  # type: ignore[arg-type]
    by = {(n["recipient"], n["channel"]): n for n in zoned.notifications.values()}
    assert set(by) == {(p, c) for p in ("lena", "anna") for c in ("inbox", "email")}, "every member, in both"
    lena, anna = by[("lena", "email")], by[("anna", "email")]
    assert "Do., 10. Dez. 2026, 18:00 MEZ" in lena["text"] and "Europe/Berlin" in lena["text"]
    assert "20:00 UTC+3" in anna["text"] and "Europe/Moscow" in anna["text"] and anna["language"] == "ru"
    assert lena["link"] == "http://lab.example/projects/prj_1#meeting-mtg_1"
    calendar = icalendar.Calendar.from_ical(lena["ics"])
    [event] = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == datetime(2026, 12, 10, 17, tzinfo=UTC)
    assert event.decoded("dtend") == datetime(2026, 12, 10, 18, tzinfo=UTC) and int(event["sequence"]) == 3
    assert "http://lab.example/projects/prj_1#meeting-mtg_1" in str(event["description"])
    assert anna["ics"] == lena["ics"], "one invitation, the same for every member"
    assert "ics" not in by[("lena", "inbox")], "the inbox copy needs no attachment"
    assert by[("anna", "inbox")]["line"] == "«Kick-off» (Grüne Höfe): чт, 10 дек. 2026\u202fг., 20:00 UTC+3"


def test_an_inbox_item_has_a_title_a_line_and_a_link(zoned):
    from notify.schemas import NotificationPage

    handlers.notify_people(project_event("project.message_posted", message_id="msg_1", author_id="anna",  # type: ignore[arg-type]
                                         city="krasnodar", text="Wann treffen wir uns?\nЯ могу в четверг."),
                           zoned, LETTERHEAD)
    assert {n["recipient"] for n in zoned.notifications.values()} == {"lena"}, "the author is not told"
    items, _ = usecases.inbox(zoned, KARLSRUHE, "lena", {"limit": 10, "unread": False})  # type: ignore[arg-type]
    [shown] = NotificationPage().dump({"items": items, "next_cursor": None})["items"]
    assert shown["title"] == "Anna schreibt in „Grüne Höfe“"
    assert shown["line"] == "Anna (Krasnodar): Wann treffen wir uns? Я могу в четверг."
    assert shown["link"] == "http://lab.example/projects/prj_1"
    assert shown["subject"] == shown["title"] and "Hallo Lena" in shown["text"], "the fields it had stay"
    older = {"_id": "ntf_old", "subject": "Ein Vorschlag", "text": "Hallo", "link": None}
    [old] = NotificationPage().dump({"items": [older], "next_cursor": None})["items"]
    assert old["title"] == old["line"] == "Ein Vorschlag", "stored before lines: the subject"


def test_a_project_message_waits_for_the_daily_digest_and_the_digest_carries_it_and_the_meetings():
    import icalendar
    import mongomock

    from notify import repository
    from notify.sender import Sender
    from services import store
    from tests.conftest import make_settings

    db = mongomock.MongoClient()["notify"]
    store.ensure_indexes(db, repository.INDEXES)
    repo = repository.Repository(db)
    usecases.city_registered(repo, "krasnodar", "Краснодар", "ru", {"de": "Krasnodar"}, "Europe/Moscow")
    usecases.city_registered(repo, "karlsruhe", "Karlsruhe", "de", {}, "Europe/Berlin")
    for pid, city, language, digest in (("lena", "karlsruhe", "de", "daily"), ("anna", "krasnodar", "ru", "immediate")):
        usecases.person_changed(repo, {"participant_id": pid, "city": city, "name": pid.title(), "version": 1,
                                       "language": language, "email": f"{pid}@example.org",
                                       "preferences": {"digest": digest}})
    text = "Wann treffen wir uns? " + "Ich schlage vor, dass wir uns online sehen und den Plan besprechen. " * 2
    clock = Clock()
    usecases.notify_people(repo, LETTERHEAD, project_event("project.message_posted", message_id="msg_1",
                                                           author_id="anna", city="krasnodar", text=text), clock)
    usecases.notify_people(repo, LETTERHEAD, scheduled(), clock)
    waiting = list(db["notifications"].find({"recipient": "lena", "channel": "email"}))
    assert {n["status"] for n in waiting} == {"digest"} and len(waiting) == 2
    sender = Sender(repo, make_settings("memory://"), "secret")
    assert sender.send_digests(clock().date().isoformat()) == 1
    digest = db["notifications"].find_one({"template": "digest", "recipient": "lena"})
    assert text.strip() in digest["text"], "the whole message, not only its line"
    assert "Anna (Krasnodar): Wann treffen wir uns?" in digest["text"]
    assert "„Kick-off“ (Grüne Höfe): Do., 10. Dez. 2026, 18:00 MEZ" in digest["text"]
    assert "http://lab.example/projects/prj_1" in digest["text"]
    mail = sender.build_email(digest)
    [attached] = [part for part in mail.iter_attachments() if part.get_content_type() == "text/calendar"]
    [event] = icalendar.Calendar.from_ical(attached.get_content()).walk("VEVENT")
    assert event.decoded("dtstart") == datetime(2026, 12, 10, 17, tzinfo=UTC)


def test_an_email_with_an_invitation_carries_it_as_a_text_calendar_attachment():
    import icalendar

    from notify import domain as rules
    from notify import invitation
    from notify.sender import Sender
    from tests.conftest import make_settings

    ics = invitation.ics(rules.Invitation("mtg_1@twincity", datetime(2026, 12, 10, 17, tzinfo=UTC), 60, "P: M"),
                         "http://lab.example/projects/p", datetime(2026, 12, 2, tzinfo=UTC))
    sender = Sender(repo=None, settings=make_settings("memory://"), secret="s")  # type: ignore[arg-type]
    doc = {"_id": "ntf-1", "to": "lena@example.org", "subject": "Der Termin steht", "text": "Hallo Lena\n",
           "html": "<p>Hallo Lena</p>", "ics": ics, "unsubscribe_url": "http://lab.example/unsubscribe/t"}
    mail = sender.build_email(doc)
    assert mail.get_content_type() == "multipart/mixed"
    assert mail.get_body(preferencelist=("plain",)).get_content() == "Hallo Lena\n"
    [part] = list(mail.iter_attachments())
    assert part.get_content_type() == "text/calendar" and part.get_param("method") == "PUBLISH"
    assert part.get_filename() == "meeting.ics"
    assert icalendar.Calendar.from_ical(part.get_content()).walk("VEVENT")[0]["uid"] == "mtg_1@twincity"
    assert sender.build_email(doc).as_bytes().count(b"BEGIN:VEVENT") == 1, "built again: the same attachment"


def test_the_inbox_page_shows_a_title_one_line_and_opens_the_project_or_its_meeting():
    from gateway.pages.account import inbox_item, page_link

    item = inbox_item({"id": "ntf_1", "subject": "Der Termin steht", "title": "Der Termin steht",
                       "line": "„Kick-off“ (Grüne Höfe): Do., 10. Dez. 2026, 18:00 MEZ", "text": "Hallo Lena, ...",
                       "link": "http://lab.example/projects/prj_1#meeting-mtg_1"})
    assert item["title"] == "Der Termin steht" and item["line"].startswith("„Kick-off“")
    assert item["page"] == "/projects/prj_1#meeting-mtg_1"
    older = inbox_item({"id": "ntf_0", "subject": "Ein Vorschlag", "title": "Ein Vorschlag", "line": "Ein Vorschlag",
                        "text": "Hallo Lena", "link": "http://lab.example/api/v1/matches/m1"})
    assert older["line"] is None and older["page"] == "/matches/m1", "no line of its own: the page shows its text"
    assert page_link("http://lab.example/projects/p1#meeting-<script>") == "/projects/p1"
    assert page_link("http://lab.example/matches/m1#meeting-x") == "/matches/m1"
    assert page_link("http://evil.example/admin") is None


def test_an_erased_author_s_words_and_name_leave_the_other_members_notifications_too():
    import mongomock

    from notify import repository
    from services import store

    db = mongomock.MongoClient()["notify"]
    store.ensure_indexes(db, repository.INDEXES)
    repo = repository.Repository(db)
    for pid, city, language in (("lena", "karlsruhe", "de"), ("anna", "krasnodar", "ru")):
        usecases.person_changed(repo, {"participant_id": pid, "city": city, "name": pid.title(), "version": 1,
                                       "language": language, "email": f"{pid}@example.org"})
    usecases.notify_people(repo, LETTERHEAD, project_event("project.message_posted", message_id="msg_1",
                                                           author_id="anna", city="krasnodar", text="Привет!"))
    usecases.notify_people(repo, LETTERHEAD, scheduled())
    assert db["notifications"].count_documents({"recipient": "lena", "about": "anna"}) == 2, "inbox and e-mail"
    usecases.person_erased(repo, "anna")
    left = list(db["notifications"].find())
    assert left and not any("Привет" in n["text"] or "Anna" in n["text"] for n in left)
    assert {(n["recipient"], n["template"]) for n in left} == {("lena", "meeting_scheduled")}
