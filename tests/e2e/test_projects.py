"""From a confirmed match to a joint project that can start (issue 20), walked through the gateway as the cities'
tools and people would: named members, a second partner idea joining, a message reaching the other side in Russian,
a meeting offered in Berlin time shown in Moscow time and set (the .ics in the e-mail parsed), the plan made
active, a join request accepted, a member erased. Real SMTP server, real webhook receiver, and (amqp) real RabbitMQ.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from tests.conftest import wait_for
from tests.e2e.conftest import Api, Receiver, SmtpServer, running_platform
from tests.e2e.test_matching import GARDEN_DE, GARDEN_RU, matches_of
from tests.e2e.test_pages import Browser

HOOK_SECRET = "project-hook-secret-0123456789"
BERLIN, MOSCOW = ZoneInfo("Europe/Berlin"), ZoneInfo("Europe/Moscow")


def person(api: Api, key: str, name: str, email: str, language: str) -> str:
    return api.ok("POST", "/participants", key, {"name": name, "email": email, "language": language})["id"]


def confirmed(api: Api, keys: dict[str, str], de: str, ru: str) -> None:
    def match() -> list[dict[str, Any]]:
        return [m for m in matches_of(api, de, keys["karlsruhe"]) if ru in {s["idea_id"] for s in m["sides"]}]

    wait_for(match, timeout=30, message="the proposal")
    [found] = match()
    api.ok("POST", f"/matches/{found['id']}/accept", keys["karlsruhe"])
    assert api.ok("POST", f"/matches/{found['id']}/accept", keys["krasnodar"])["status"] == "confirmed"


def inbox(api: Api, key: str, pid: str) -> list[dict[str, Any]]:
    return api.ok("GET", f"/participants/{pid}/notifications", key)["items"]


def mail_with(smtp: SmtpServer, address: str, wanted: str) -> Any:
    found = [m for m in smtp.to(address) if wanted in str(m["Subject"]) or wanted in m.get_body(
        ("plain",)).get_content()]
    return found[-1] if found else None


def invitation(smtp: SmtpServer, address: str) -> tuple[Any, Any] | None:
    """The last e-mail to `address` with an iCalendar invitation, and the invitation."""
    for mail in reversed(smtp.to(address)):
        found = [part for part in mail.iter_attachments() if part.get_content_type() == "text/calendar"]
        if found:
            return mail, found[0]
    return None


def signed_in(api: Api, smtp: SmtpServer, address: str, language: str) -> Browser:
    """A browser signed in by the link of the sign-in e-mail (the page shows it too, but only under twincity dev)."""
    browser = Browser(api.platform.gateway, language)
    browser.get("/signin")
    assert browser.post("/signin", {"email": address}).status_code == 302

    def link() -> str | None:
        for mail in smtp.to(address):
            found = re.search(r"http://lab\.example(/signin/\S+)", mail.get_body(("plain",)).get_content())
            if found:
                return found.group(1)
        return None

    wait_for(link, 30, message="the sign-in e-mail")
    path = link()
    browser.get(path)
    done = browser.post(path)
    assert done.status_code == 302, done.get_data(as_text=True)[-500:]
    return browser


def test_a_confirmed_match_becomes_a_project_that_can_start(napi: Api, smtp: SmtpServer, receiver: Receiver):
    api = napi
    keys = api.lab()
    ka, kr = keys["karlsruhe"], keys["krasnodar"]
    api.ok("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"top_k": 20})
    api.ok("POST", "/webhooks", ka, {"url": receiver.url, "secret": HOOK_SECRET, "events": [
        "project.updated", "project.member_joined", "meeting.scheduled"]})
    lena = person(api, ka, "Lena Hoffmann", "lena@example.org", "de")
    anna = person(api, kr, "Анна Смирнова", "anna@example.org", "ru")
    oleg = person(api, kr, "Олег Петров", "oleg@example.org", "ru")
    dima = person(api, kr, "Дмитрий Кузнецов", "dima@example.org", "ru")
    api.settle()
    de = api.ok("POST", "/ideas", ka, {**GARDEN_DE, "author_id": lena})["id"]
    ru = api.ok("POST", "/ideas", kr, {**GARDEN_RU, "author_id": anna})["id"]
    ru2 = api.ok("POST", "/ideas", kr, {**GARDEN_RU, "title": "Сады на крышах против жары", "author_id": oleg})["id"]

    # Match confirmed -> a project with named members (their addresses to the keys of its cities)
    confirmed(api, keys, de, ru)
    wait_for(lambda: api.ok("GET", "/projects", ka)["items"], 30, message="the project")
    [project] = api.ok("GET", "/projects", ka)["items"]
    pid = project["id"]
    seen = api.ok("GET", f"/projects/{pid}", kr)
    assert seen["status"] == "forming" and seen["cities"] == ["karlsruhe", "krasnodar"]
    assert sorted((m["name"], m["city"], m["role"], m["email"]) for m in seen["members"]) == [
        ("Lena Hoffmann", "karlsruhe", "author", "lena@example.org"),
        ("Анна Смирнова", "krasnodar", "author", "anna@example.org")]

    # A second partner idea of Lena's idea joins the same project
    confirmed(api, keys, de, ru2)
    wait_for(lambda: len(api.ok("GET", f"/projects/{pid}", ka)["members"]) == 3, 30, message="Oleg joins")
    assert len(api.ok("GET", "/projects", ka)["items"]) == 1, "one project per idea"
    assert sorted(api.ok("GET", f"/projects/{pid}", ka)["idea_ids"][:2]) == sorted([de, ru])
    assert api.ok("GET", f"/projects/{pid}", ka)["idea_ids"][2] == ru2
    wait_for(lambda: api.ok("GET", f"/ideas/{ru2}", kr)["status"] == "in_project", 30, message="Oleg's idea moves")

    # A message reaches the other side in Russian (inbox and e-mail), never a webhook
    text = "Hallo zusammen! Wann passt euch ein erster Videocall?"
    api.ok("POST", f"/projects/{pid}/messages", ka, {"author_id": lena, "text": text})
    wait_for(lambda: any(n.get("line") and text[:20] in n["line"] for n in inbox(api, kr, anna)), 30,
             message="Anna's inbox")
    item = next(n for n in inbox(api, kr, anna) if text[:20] in n.get("line", ""))
    assert item["language"] == "ru" and "Lena Hoffmann" in item["title"] and item["link"].endswith(f"/projects/{pid}")
    assert "unsubscribe" not in item["line"].lower() and "\n" not in item["line"]
    wait_for(lambda: mail_with(smtp, "anna@example.org", text[:20]), 30, message="Anna's e-mail")
    assert not [n for n in inbox(api, ka, lena) if text[:20] in n.get("line", "")], "the author is not told"
    assert [m["text"] for m in api.ok("GET", f"/projects/{pid}/messages", kr)["items"]] == [text]
    assert api.call("GET", f"/projects/{pid}/messages", keys["nancy"]).status_code == 404

    # A meeting offered in Berlin time is shown in Moscow time, set, and the invitation parses
    day = (datetime.now(BERLIN) + timedelta(days=8)).date()
    berlin_18 = datetime(day.year, day.month, day.day, 18, 0, tzinfo=BERLIN)
    meeting = api.ok("POST", f"/projects/{pid}/meetings", ka, {
        "proposer_id": lena, "title": "Kennenlernen", "duration_minutes": 60,
        "slots": [berlin_18.replace(tzinfo=None).isoformat(timespec="minutes"),
                  (berlin_18 + timedelta(days=1)).isoformat()]})
    start = berlin_18.astimezone(UTC)
    assert datetime.fromisoformat(meeting["slots"][0]["start"]) == start
    anna_page = signed_in(api, smtp, "anna@example.org", "ru")
    page = anna_page.text(f"/projects/{pid}")
    moscow = start.astimezone(MOSCOW).strftime("%H:%M")
    assert f"{moscow} (Краснодар)" in page and "Встречи" in page and text in page
    assert api.call("POST", f"/meetings/{meeting['id']}/answer", kr, {
        "participant_id": anna, "slots": [(start + timedelta(hours=1)).isoformat()]}).status_code == 422
    api.ok("POST", f"/meetings/{meeting['id']}/answer", kr, {"participant_id": anna, "slots": [start.isoformat()]})
    scheduled = api.ok("POST", f"/meetings/{meeting['id']}/schedule", kr, {"slot": start.isoformat()})
    assert scheduled["status"] == "scheduled"
    wait_for(lambda: invitation(smtp, "anna@example.org"), 30, message="Anna's invitation")
    mail, ics = invitation(smtp, "anna@example.org")
    assert moscow in mail.get_body(("plain",)).get_content()
    event = next(iter(icalendar.Calendar.from_ical(ics.get_content()).walk("VEVENT")))
    assert event.decoded("dtstart") == start and event.decoded("dtend") == start + timedelta(hours=60 / 60)
    wait_for(lambda: invitation(smtp, "lena@example.org"), 30, message="Lena's invitation")
    assert start.astimezone(BERLIN).strftime("%H:%M") in invitation(smtp, "lena@example.org")[0].get_body(
        ("plain",)).get_content(), "in Berlin time"

    # Status active with next steps, on the version read
    version = api.ok("GET", f"/projects/{pid}", kr)["version"]
    active = api.ok("PATCH", f"/projects/{pid}", kr, {"status": "active", "next_steps": ["Saatgut tauschen"],
                                                      "version": version})
    assert active["status"] == "active" and active["next_steps"] == ["Saatgut tauschen"]
    stale = api.call("PATCH", f"/projects/{pid}", ka, {"summary": "zu spät", "version": version})
    assert stale.status_code == 409 and stale.mimetype == "application/problem+json"

    # A join request accepted: Dima is a member and is told
    request = api.ok("POST", f"/projects/{pid}/join-requests", kr, {"participant_id": dima,
                                                                   "message": "Я садовник, помогу с семенами"})
    assert api.ok("POST", f"/join-requests/{request['id']}/accept", ka)["status"] == "accepted"
    assert [m["role"] for m in api.ok("GET", f"/projects/{pid}", kr)["members"]][-1] == "joined"
    wait_for(lambda: any("join" in n.get("template", "") for n in inbox(api, kr, dima)), 30, message="Dima told")

    # Webhooks: the three project events, signed, never a message text
    wait_for(lambda: {json.loads(c["body"])["type"] for c in receiver.calls} >= {
        "project.updated", "project.member_joined", "meeting.scheduled"}, 30, message="the webhooks")
    for call in receiver.calls:
        assert text not in call["body"].decode() and "семенами" not in call["body"].decode()
        expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), call["body"], hashlib.sha256).hexdigest()
        assert call["headers"]["X-Twincity-Signature"] == expected

    # A member erased: out of the project with her answers and messages; the project goes on
    assert api.call("DELETE", f"/participants/{lena}", ka).status_code == 204

    def lena_gone() -> bool:
        seen = api.ok("GET", f"/projects/{pid}", kr)
        return lena not in json.dumps(seen) and lena not in json.dumps(
            api.ok("GET", f"/projects/{pid}/messages", kr))

    wait_for(lena_gone, 30, message="the erasure to reach the project")
    after = api.ok("GET", f"/projects/{pid}", kr)
    assert sorted(m["name"] for m in after["members"]) == sorted(["Анна Смирнова", "Олег Петров",
                                                                  "Дмитрий Кузнецов"])
    assert after["status"] == "active" and after["meetings"][0]["status"] == "scheduled"
    assert api.ok("GET", f"/projects/{pid}/messages", kr)["items"][0]["text"] == ""


# --- the workspace without JavaScript: every form of the project page ------------------------------------------

def form_value(page: str, name: str) -> str:
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


def test_the_project_workspace_works_with_forms_alone_in_german_and_russian():
    with running_platform("memory://") as api:
        keys = api.lab()
        ka, kr = keys["karlsruhe"], keys["krasnodar"]
        lena = person(api, ka, "Lena Hoffmann", "lena@example.org", "de")
        anna = person(api, kr, "Анна Смирнова", "anna@example.org", "ru")
        person(api, kr, "Дмитрий Кузнецов", "dima@example.org", "ru")
        api.settle()
        de = api.ok("POST", "/ideas", ka, {**GARDEN_DE, "author_id": lena})["id"]
        ru = api.ok("POST", "/ideas", kr, {**GARDEN_RU, "author_id": anna})["id"]
        confirmed(api, keys, de, ru)
        wait_for(lambda: api.ok("GET", "/projects", ka)["items"], 30, message="the project")
        pid = api.ok("GET", "/projects", ka)["items"][0]["id"]
        lena_b, anna_b, dima_b = Browser(api.platform.gateway, "de"), Browser(api.platform.gateway, "ru"), \
            Browser(api.platform.gateway, "ru")
        lena_b.sign_in("lena@example.org")
        anna_b.sign_in("anna@example.org")
        dima_b.sign_in("dima@example.org")
        workspace = f"/projects/{pid}"
        assert f'href="{workspace}"' in lena_b.text("/projects")
        page = lena_b.text(workspace)
        assert "Der Plan" in page and "mailto:anna@example.org" in page and "Анна Смирнова" in page

        # the plan, on the version the page was read at (a stale form is told, not saved)
        version = form_value(page, "version")
        done = lena_b.post(f"{workspace}/plan", {"title": form_value(page, "title"), "status": "active",
                                                 "summary": "Wir tauschen Saatgut.",
                                                 "next_steps": "Videocall\nSaatgut schicken", "version": version})
        assert done.status_code == 302 and done.headers["Location"].endswith(f"{workspace}#plan")
        stale = lena_b.post(f"{workspace}/plan", {"title": "x", "status": "done", "version": version,
                                                  "summary": "Mein langer Text, den ich nicht verlieren will"})
        told = stale.get_data(as_text=True)
        assert stale.status_code == 409 and "Jemand hat das Projekt inzwischen geändert" in told
        assert "Mein langer Text, den ich nicht verlieren will" in told, "what was typed stays in the form"
        too_many = lena_b.post(f"{workspace}/plan", {"title": "x", "status": "active", "version": str(int(version) + 1),
                                                     "next_steps": "\n".join(f"Schritt {i}" for i in range(25))})
        assert too_many.status_code == 422 and "Höchstens 20 nächste Schritte" in too_many.get_data(as_text=True)
        assert "Longer than" not in too_many.get_data(as_text=True)
        seen = api.ok("GET", workspace, kr)
        assert (seen["status"], seen["next_steps"], seen["title"]) == ("active", ["Videocall", "Saatgut schicken"],
                                                                      form_value(page, "title"))

        # a message, read on the other side
        lena_b.post(f"{workspace}/messages", {"text": "Hallo Anna!\nWann passt es dir?"})
        assert "Hallo Anna!" in anna_b.text(workspace)

        # a meeting offered in Karlsruhe's time, answered and set in Krasnodar's
        day = (datetime.now(BERLIN) + timedelta(days=8)).date()
        local = f"{day.isoformat()}T18:00"
        past = lena_b.post(f"{workspace}/meetings", {"title": "Kennenlernen", "duration_minutes": "45",
                                                     "slot": ["2020-01-01T10:00"]})
        told = lena_b.text(past.headers["Location"])
        assert "Biete ein bis zehn Zeiten in den nächsten zwei Jahren an" in told and "in the past" not in told
        lena_b.post(f"{workspace}/meetings", {"title": "Kennenlernen", "duration_minutes": "45",
                                              "slot": [local, ""], "link": "https://meet.example.org/garten"})
        [meeting] = api.ok("GET", workspace, kr)["meetings"]
        start = datetime(day.year, day.month, day.day, 18, tzinfo=BERLIN).astimezone(UTC)
        assert datetime.fromisoformat(meeting["slots"][0]["start"]) == start
        page = anna_b.text(workspace)
        assert f"{start.astimezone(MOSCOW):%H:%M} (Краснодар)" in page and f"{start.astimezone(BERLIN):%H:%M} (" \
            "Karlsruhe)" in page
        slot = form_value(page, "slot")
        anna_b.post(f"{workspace}/meetings/{meeting['id']}/answer", {"slot": [slot]})
        anna_b.post(f"{workspace}/meetings/{meeting['id']}/schedule", {"slot": slot})
        after = api.ok("GET", f"/meetings/{meeting['id']}", ka)
        assert after["status"] == "scheduled" and after["slots"][0]["suits"] == [lena, anna]
        assert "Назначена на" in anna_b.text(workspace)

        # someone of the partner city asks to join; a member takes them in
        assert f'href="{workspace}"' in dima_b.text("/projects"), "listed among the projects to join"
        outside = dima_b.text(workspace)
        assert "Присоединиться к проекту" in outside and "mailto:" not in outside and "Hallo Anna" not in outside
        dima_b.post(f"{workspace}/join", {"message": "Я садовник"})
        assert "Участники ещё не ответили" in dima_b.text(workspace), "the page says the request waits"
        again = dima_b.post(f"{workspace}/join", {"message": "Ещё раз"})
        assert "Вы уже попросились в проект" in dima_b.text(again.headers["Location"])
        page = lena_b.text(workspace)
        assert "Дмитрий Кузнецов" in page and "Я садовник" in page
        accept = re.search(rf'action="({workspace}/join-requests/[^"]+/accept)"', page).group(1)
        lena_b.post(accept)
        assert "Дмитрий Кузнецов" in [m["name"] for m in api.ok("GET", workspace, ka)["members"]][-1:]
        assert "Кто участвует" in dima_b.text(workspace), "a member now"

        # Karlsruhe's coordinator follows the project: plan, members, meetings; no forms, not the messages
        coordinator = Browser(api.platform.gateway, "de")
        coordinator.coordinator(ka)
        listing = coordinator.text("/projects")
        assert "Gemeinsame Projekte eurer Partnerschaften" in listing and f'href="{workspace}"' in listing
        seen = coordinator.text(workspace)
        assert "Wir tauschen Saatgut." in seen and "Lena Hoffmann" in seen and "Дмитрий Кузнецов" in seen
        assert "Kennenlernen" in seen and "Hallo Anna" not in seen, "the members' messages are theirs"
        assert "<form" not in seen.split("<main", 1)[1], "a coordinator reads; the members change"
        assert coordinator.post(f"{workspace}/messages", {"text": "Hallo"}).status_code == 302
        assert [m["text"] for m in api.ok("GET", f"{workspace}/messages", ka)["items"]] == [
            "Hallo Anna!\nWann passt es dir?"], "a coordinator's post is not taken (it goes to sign in)"
