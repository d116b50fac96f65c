"""Onboarding (issue 21): a city invites someone by e-mail (a real SMTP server), the person follows the link in
their language and is a participant, signed in; coordinators list, find, add, edit and erase their city's people.
"""

from __future__ import annotations

import re

from tests.conftest import wait_for
from tests.e2e.conftest import Api, SmtpServer, running_platform
from tests.e2e.test_pages import Browser


def test_an_invited_person_follows_the_link_and_is_a_participant_signed_in(napi: Api, smtp: SmtpServer):
    api = napi
    keys = api.lab()
    api.settle()  # notify knows the cities' names
    made = api.ok("POST", "/invitations", keys["krasnodar"], {"email": "olga@example.org", "name": "Ольга",
                                                               "language": "ru"})
    assert made["status"] == "sent" and made["city"] == "krasnodar"
    assert api.call("POST", "/invitations", keys["karlsruhe-read"], {"email": "x@example.org",
                                                                     "language": "de"}).status_code == 403
    wait_for(lambda: smtp.to("olga@example.org"), 30, message="the invitation e-mail")
    [mail] = smtp.to("olga@example.org")
    body = mail.get_body(("plain",)).get_content()
    assert "Приглашение" in str(mail["Subject"]) and "Краснодар" in body
    path = re.search(r"http://lab\.example(/signin/invitation/\S+)", body).group(1)
    olga = Browser(api.platform.gateway, "ru")
    form = olga.text(path)
    assert "olga@example.org" in form and 'value="Ольга"' in form
    joined = olga.post(path, {"name": "Ольга Петрова", "language": "ru", "interests": "Городские сады, экология"})
    assert joined.status_code == 302 and joined.headers["Location"].endswith("/ideas")
    assert "Добро пожаловать, Ольга Петрова" in olga.text("/ideas"), "signed in, in Russian"
    [person] = api.ok("GET", "/participants?q=olga", keys["krasnodar"])["items"]
    assert (person["name"], person["email"], person["language"]) == ("Ольга Петрова", "olga@example.org", "ru")
    assert api.ok("GET", "/invitations", keys["krasnodar"])["items"][0]["status"] == "accepted"
    again = Browser(api.platform.gateway, "ru").get(path)
    assert again.status_code == 410, "an invitation is accepted once"
    assert api.ok("GET", "/participants?q=olga", keys["karlsruhe"])["items"] == [], "a partner city's people stay"


def test_coordinators_list_find_add_edit_and_erase_their_city_s_people():
    with running_platform("memory://") as api:
        keys = api.lab()
        coordinator = Browser(api.platform.gateway, "de")
        coordinator.coordinator(keys["karlsruhe"])
        added = coordinator.post("/coordinator/participants", {"name": "Jonas Weber", "email": "jonas@example.org",
                                                                "language": "de", "interests": "Stadtgrün"})
        assert added.status_code == 302
        twice = coordinator.post("/coordinator/participants", {"name": "Jonas", "email": "jonas@example.org",
                                                                "language": "de", "interests": ""})
        assert twice.status_code == 409
        page = coordinator.text("/coordinator/participants?q=jonas")
        assert "Jonas Weber" in page and "jonas@example.org" in page
        pid = re.search(r'href="/coordinator/participants/(prt_[0-9a-f]+)"', page).group(1)
        saved = coordinator.post(f"/coordinator/participants/{pid}", {"name": "Jonas M. Weber",
                                                                       "email": "jonas@example.org",
                                                                       "language": "ru", "interests": "Parks"})
        assert saved.status_code == 302
        assert api.ok("GET", f"/participants/{pid}", keys["karlsruhe"])["language"] == "ru"
        refused = coordinator.post(f"/coordinator/participants/{pid}/erase", {})
        assert "Setze das Häkchen" in coordinator.text(refused.headers["Location"])
        coordinator.post(f"/coordinator/participants/{pid}/erase", {"confirm": "yes"})
        assert api.call("GET", f"/participants/{pid}", keys["karlsruhe"]).status_code == 404
        invited = coordinator.post("/coordinator/invitations", {"email": "mia@example.org", "name": "Mia",
                                                                 "language": "de"})
        shown = coordinator.text(invited.headers["Location"])
        assert "mia@example.org ist eingeladen" in shown and "/signin/invitation/" in shown, "the link under dev"
