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
    # Olga is a participant now: inviting her again is refused, saying why, and no invitation is made.
    twice = api.call("POST", "/invitations", keys["krasnodar"], {"email": "olga@example.org", "language": "ru"})
    assert twice.status_code == 409 and "participant of krasnodar already" in twice.json_body["detail"]
    coordinator = Browser(api.platform.gateway, "ru")
    coordinator.coordinator(keys["krasnodar"])
    refused = coordinator.post("/coordinator/invitations", {"email": "olga@example.org", "language": "ru"})
    assert "olga@example.org уже участвует" in coordinator.text(refused.headers["Location"])
    assert len(api.ok("GET", "/invitations", keys["krasnodar"])["items"]) == 1
    assert api.ok("POST", "/invitations", keys["karlsruhe"], {"email": "olga@example.org", "language": "de"}), \
        "another city may invite her"


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
        made = api.ok("POST", "/invitations", keys["karlsruhe"], {"email": "tim@example.org", "language": "de"})
        assert made["link"].endswith(made["link"].rsplit("/", 1)[-1]) and "/signin/invitation/" in made["link"], \
            "under twincity dev the API answers with the link (no mail server)"
        api.ok("PUT", "/cities/karlsruhe/sign-up", keys["karlsruhe"], {"mode": "open"})
        visitor = Browser(api.platform.gateway, "de")
        visitor.get("/signin/signup")
        sent = visitor.post("/signin/signup", {"city": "karlsruhe", "email": "uwe@example.org", "name": "Uwe",
                                                "language": "de"})
        assert 'class="signup-link" href="/signin/signup/' in sent.get_data(as_text=True)
        bad = coordinator.post("/coordinator/participants", {"name": "X", "email": "mia2@example.org",
                                                              "language": "xx", "interests": ""})
        page = bad.get_data(as_text=True)
        assert bad.status_code == 422 and "Wähle eine Sprache." in page and "Selbst anmelden" in page, \
            "the page again whole, with what was wrong"
        assert 'value="open" checked' in page, "the city's sign-up setting as it is, not reset"


def link_in(smtp: SmtpServer, address: str, path: str) -> str | None:
    for mail in smtp.to(address):
        found = re.search(rf"http://lab\.example({path}\S*)", mail.get_body(("plain",)).get_content())
        if found:
            return found.group(1)
    return None


def test_people_sign_up_by_themselves_where_their_city_lets_them(napi: Api, smtp: SmtpServer):
    api = napi
    keys = api.lab()
    api.settle()
    visitor = Browser(api.platform.gateway, "ru")
    assert "ни один город не принимает" in visitor.text("/signin/signup"), "closed by default"
    assert api.ok("PUT", "/cities/krasnodar/sign-up", keys["krasnodar"], {"mode": "open"})["mode"] == "open"
    assert api.call("PUT", "/cities/karlsruhe/sign-up", keys["krasnodar"], {"mode": "open"}).status_code == 403
    api.ok("PUT", "/cities/karlsruhe/sign-up", keys["karlsruhe"], {"mode": "approval"})

    # Open: confirming the address makes a participant, signed in
    form = visitor.text("/signin/signup")
    assert "Краснодар" in form and "Karlsruhe" in form
    sent = visitor.post("/signin/signup", {"city": "krasnodar", "email": "ivan@example.org", "name": "Иван",
                                           "language": "ru", "interests": "Велосипеды"})
    assert sent.status_code == 200 and "ivan@example.org" in sent.get_data(as_text=True)
    wait_for(lambda: link_in(smtp, "ivan@example.org", "/signin/signup/"), 30, message="the confirmation mail")
    confirm = link_in(smtp, "ivan@example.org", "/signin/signup/")
    assert "Подтвердите адрес" in visitor.text(confirm)
    joined = visitor.post(confirm)
    assert joined.status_code == 302 and "Добро пожаловать, Иван" in visitor.text("/ideas")
    assert api.ok("GET", "/participants?q=ivan", keys["krasnodar"])["items"][0]["interests"] == "Велосипеды"

    # With approval: the sign-up waits for the coordinators, who say yes (or no); the person is told either way
    for email, name in (("greta@example.org", "Greta"), ("otto@example.org", "Otto")):
        person = Browser(api.platform.gateway, "de")
        person.get("/signin/signup")
        person.post("/signin/signup", {"city": "karlsruhe", "email": email, "name": name, "language": "de"})
        wait_for(lambda email=email: link_in(smtp, email, "/signin/signup/"), 30, message="the confirmation")
        person.get(link_in(smtp, email, "/signin/signup/"))
        waiting = person.post(link_in(smtp, email, "/signin/signup/"))
        assert "schaut sich deine Anmeldung an" in waiting.get_data(as_text=True)
    assert api.ok("GET", "/participants?q=greta", keys["karlsruhe"])["items"] == [], "not before the yes"
    coordinator = Browser(api.platform.gateway, "de")
    coordinator.coordinator(keys["karlsruhe"])
    page = coordinator.text("/coordinator/participants")
    assert "Greta" in page and "Otto" in page and "Warten auf euer Ja oder Nein" in page
    by_name = {s["name"]: s["id"] for s in api.ok("GET", "/sign-ups", keys["karlsruhe"])["items"]}
    coordinator.post(f"/coordinator/sign-ups/{by_name['Greta']}/approve")
    for path in (f"/coordinator/sign-ups/{by_name['Greta']}/approve", "/coordinator/sign-ups/zzz/decline"):
        again = coordinator.post(path)  # a second click, a made-up id: said on the page, never a 500
        assert again.status_code == 302 and "schon beantwortet" in coordinator.text(again.headers["Location"])
    declined = api.ok("POST", f"/sign-ups/{by_name['Otto']}/decline", keys["karlsruhe"])
    assert declined["status"] == "declined"
    assert api.ok("GET", "/participants?q=greta", keys["karlsruhe"])["items"][0]["name"] == "Greta"
    wait_for(lambda: any("bestätigt" in str(m["Subject"]) or "Willkommen" in str(m["Subject"])
                         for m in smtp.to("greta@example.org")), 30, message="Greta told")
    wait_for(lambda: any("nicht bestätigt" in m.get_body(("plain",)).get_content()
                         for m in smtp.to("otto@example.org")), 30, message="Otto told")
