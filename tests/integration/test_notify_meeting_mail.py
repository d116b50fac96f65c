"""A scheduled meeting by e-mail: the notify worker on the real RabbitMQ hears of the cities, the people and the
meeting, and its sender hands each member's mail to a real SMTP server process (aiosmtpd), with the meeting in the
reader's own time and an iCalendar invitation attached."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest

from services import bus, store
from services.bus import Consumer
from services.config import Settings
from services.contract import new_event
from tests.conftest import wait_for
from tests.e2e.conftest import SmtpServer

LENA, ANNA = "lena@example.org", "anna@example.org"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path / "maildir")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def notify_worker(rabbit_settings: Settings, smtp: SmtpServer) -> Iterator[object]:
    """The notify service's worker (consumers, relay, sender) on the real broker, mailing to `smtp`."""
    import notify.bootstrap

    settings = rabbit_settings.replace(smtp_url=smtp.url, public_url="http://lab.example", notify_secret="k" * 32,
                                       notify_send_interval=0.05)
    service = notify.bootstrap.bootstrap(settings)
    stop = threading.Event()
    threads = service.runtime.start_worker(stop)
    try:
        wait_for(service.runtime.consuming, 20, message="the notify worker consuming")
        yield service
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        service.runtime.relay.stop(timeout=5)
        bus.delete_topology(settings, [Consumer(settings, "notify", {}).topology], exchange=True)
        store.forget(settings.mongo_url)


def plain(mail: EmailMessage) -> str:
    return mail.get_body(preferencelist=("plain",)).get_content()


def invitation(mail: EmailMessage) -> tuple[EmailMessage, icalendar.Event]:
    [part] = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
    [event] = icalendar.Calendar.from_ical(part.get_content()).walk("VEVENT")
    return part, event


@pytest.mark.rabbitmq
def test_a_scheduled_meeting_arrives_with_its_invitation_and_in_each_reader_s_own_time(
    rabbit_settings: Settings, smtp: SmtpServer, notify_worker: object
) -> None:
    repo = notify_worker.repo  # type: ignore[attr-defined]
    publisher = bus.make_publisher(rabbit_settings)
    try:
        publisher.publish([
            new_event("city.registered", {"city": "karlsruhe", "name": "Karlsruhe", "country": "DE", "language": "de",
                                          "names": {"ru": "Карлсруэ"}, "timezone": "Europe/Berlin"},
                      producer="gateway", city="karlsruhe"),
            new_event("city.registered", {"city": "krasnodar", "name": "Краснодар", "country": "RU", "language": "ru",
                                          "names": {"de": "Krasnodar"}, "timezone": "Europe/Moscow"},
                      producer="gateway", city="krasnodar"),
            new_event("participant.registered", {"participant_id": "prt_lena", "city": "karlsruhe", "version": 1,
                                                 "name": "Lena Hoffmann", "email": LENA, "language": "de"},
                      producer="ideas", city="karlsruhe"),
            new_event("participant.registered", {"participant_id": "prt_anna", "city": "krasnodar", "version": 1,
                                                 "name": "Анна Смирнова", "email": ANNA, "language": "ru"},
                      producer="ideas", city="krasnodar"),
        ])
        wait_for(lambda: repo.person("prt_lena") and repo.person("prt_anna") and repo.city_zone("karlsruhe")
                 and repo.city_zone("krasnodar"), 20, 0.05, message="notify to know the people and their cities")
        publisher.publish([new_event("meeting.scheduled", {
            "project_id": "prj_1", "partnership": "karlsruhe-krasnodar", "title": "Grüne Höfe",
            "members": [{"participant_id": "prt_lena", "city": "karlsruhe"},
                        {"participant_id": "prt_anna", "city": "krasnodar"}],
            "cities": ["karlsruhe", "krasnodar"], "meeting_id": "mtg_1", "meeting_title": "Kick-off",
            "proposer_id": "prt_anna", "duration_minutes": 90, "start": "2026-12-10T17:00:00+00:00",
            "link": "https://meet.example.org/gruene-hoefe", "sequence": 1,
        }, producer="matching", partnership="karlsruhe-krasnodar")])
        wait_for(lambda: smtp.to(LENA) and smtp.to(ANNA), 30, 0.1, message="both members' e-mails")
    finally:
        publisher.close()

    [to_lena], [to_anna] = smtp.to(LENA), smtp.to(ANNA)
    # The body: the meeting in the reader's own time, in their language (17:00 UTC is 18:00 in Karlsruhe in
    # December, 20:00 in Krasnodar).
    assert "Do., 10. Dez. 2026, 18:00 MEZ" in plain(to_lena) and "Europe/Berlin" in plain(to_lena)
    assert "20:00 UTC+3" in plain(to_anna) and "Europe/Moscow" in plain(to_anna)
    assert "Kick-off" in to_lena["Subject"] and "https://meet.example.org/gruene-hoefe" in plain(to_anna)
    assert "http://lab.example/projects/prj_1#meeting-mtg_1" in plain(to_lena)
    # The attachment: a text/calendar invitation (METHOD:PUBLISH) that parses, at the right UTC instant.
    for mail in (to_lena, to_anna):
        part, event = invitation(mail)
        assert part.get_param("method") == "PUBLISH" and part.get_filename() == "meeting.ics"
        assert event.decoded("dtstart") == datetime(2026, 12, 10, 17, tzinfo=UTC)
        assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=90)
        assert str(event["uid"]) == "mtg_1@twincity" and int(event["sequence"]) == 1
        assert str(event["summary"]) == "Grüne Höfe: Kick-off"
    # The inbox copies: a title, the one line, the link; no attachment.
    inbox = list(repo.notifications.find({"channel": "inbox", "event_type": "meeting.scheduled"}))
    assert {n["recipient"] for n in inbox} == {"prt_lena", "prt_anna"} and not any("ics" in n for n in inbox)
    lines = {n["recipient"]: n["line"] for n in inbox}
    assert lines["prt_lena"] == "„Kick-off“ (Grüne Höfe): Do., 10. Dez. 2026, 18:00 MEZ"
