"""The web pages through the gateway's WSGI app (fast, no browser): languages, sign-in links, CSRF, no-JS
forms (POST-redirect-GET), error pages for bad input, coordinators' CSV import (all or nothing) and export."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from werkzeug.test import Client

from gateway.signin import SignInLinks
from tests.conftest import wait_for
from tests.e2e.conftest import ADMIN, Api, running_platform
from twincity.demo import seed

LENA = "lena.hoffmann@example.org"  # demo lab, Karlsruhe, German
ANNA = "anna.smirnova@example.org"  # demo lab, Krasnodar, Russian


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Api, Any]]:
    with running_platform("memory://") as api:
        demo = seed(api.platform.gateway, ADMIN)
        api.settle()
        yield api, demo


class Browser:
    """A visitor without JavaScript: follows links, sends forms with the CSRF token they carry."""

    def __init__(self, app: Any, language: str = "en") -> None:
        self.client = Client(app)
        self.language = language
        self.token = ""

    def get(self, path: str, **headers: str) -> Any:
        response = self.client.get(path, headers={"Accept-Language": self.language, **headers})
        found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kwargs: Any) -> Any:
        if csrf and not self.token:
            self.get("/")
        form = {**({"csrf_token": self.token} if csrf else {}), **(data or {})}
        return self.client.post(path, data=form, headers={"Accept-Language": self.language}, **kwargs)

    def text(self, path: str) -> str:
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code, response.get_data(as_text=True)[-800:])
        return response.get_data(as_text=True)

    def sign_in(self, email: str) -> None:
        self.get("/signin")
        sent = self.post("/signin", {"email": email})
        assert sent.status_code == 302 and sent.headers["Location"].endswith("/signin/sent")
        link = re.search(r'class="signin-link" href="([^"]+)"', self.text("/signin/sent")).group(1)
        self.get(link)
        done = self.post(link)
        assert done.status_code == 302, done.get_data(as_text=True)[-500:]
        self.get(done.headers["Location"])

    def coordinator(self, key: str) -> Any:
        self.get("/coordinator/signin")
        response = self.post("/coordinator/signin", {"key": key})
        self.get("/coordinator")
        return response


def test_the_interface_speaks_the_browser_s_language_and_can_be_switched(lab):
    api, _ = lab
    for accept, lang, words in (("de-DE,de;q=0.9", "de", "Ideen über Partnerstädte hinweg"),
                                ("ru", "ru", "Идеи городов-побратимов"),
                                ("fr-FR, en;q=0.5", "en", "Ideas across partner cities"),
                                ("xx", "en", "Ideas across partner cities")):
        html = Browser(api.platform.gateway).get("/", **{"Accept-Language": accept}).get_data(as_text=True)
        assert f'<html lang="{lang}">' in html and words in html, accept
    browser = Browser(api.platform.gateway, "de")
    browser.get("/")
    switched = browser.post("/language", {"lang": "ru", "next": "/signin"})
    assert switched.status_code == 302 and switched.headers["Location"] == "/signin"
    assert 'lang="ru"' in browser.text("/signin")  # the choice beats Accept-Language from now on
    # Only local targets: no open redirect through the language switch.
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil"):
        assert browser.post("/language", {"lang": "en", "next": target}).headers["Location"] == "/"
    assert browser.post("/language", {"lang": "xx", "next": "/"}).status_code == 302


def test_forms_without_the_csrf_token_are_refused(lab):
    api, _ = lab
    browser = Browser(api.platform.gateway, "de")
    browser.get("/")
    for path, data in (("/signin", {"email": LENA}), ("/language", {"lang": "ru"}),
                       ("/coordinator/signin", {"key": "tcl_x"})):
        refused = browser.post(path, data, csrf=False)
        assert refused.status_code == 400, path
        assert "Das Formular ist abgelaufen" in refused.get_data(as_text=True)
        assert browser.post(path, {**data, "csrf_token": "forged"}, csrf=False).status_code == 400
    # A token from another session does not work either.
    other = Browser(api.platform.gateway)
    other.get("/")
    assert browser.post("/signin", {"email": LENA, "csrf_token": other.token}, csrf=False).status_code == 400


def test_sign_in_link_is_sent_through_notify_works_once_and_not_forged(lab):
    api, _ = lab
    browser = Browser(api.platform.gateway, "de")
    browser.get("/signin")
    assert browser.post("/signin", {"email": "not-an-address"}).status_code == 422
    browser.post("/signin", {"email": ANNA})
    page = browser.text("/signin/sent")
    link = re.search(r'class="signin-link" href="([^"]+)"', page).group(1)
    # notify wrote the e-mail (in Anna's language); without SMTP_URL it is kept as skipped.
    notify_db = api.platform.runtime("notify").db
    mail = notify_db["notifications"].find_one({"template": "sign_in", "to": ANNA})
    assert mail and mail["language"] == "ru" and link.split("?")[0] in mail["text"]
    assert mail["status"] == "skipped" and mail["subject"] == "Ваша ссылка для входа в Twin City Lab"
    # The GET only asks (mail scanners follow links); the POST signs in, once.
    assert "Jetzt anmelden" in browser.text(link)
    assert browser.post(link).status_code == 302
    assert "Анна Смирнова" in browser.text("/ideas")
    again = Browser(api.platform.gateway, "de")
    again.get(link)
    used = again.post(link)
    assert used.status_code == 410 and "schon benutzt" in used.get_data(as_text=True)
    token = link.split("/signin/", 1)[1].split("?")[0]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert again.get(f"/signin/{forged}").status_code == 400
    assert again.get("/signin/garbage").status_code == 400
    # Unknown addresses get the same answer (no list of who takes part), and no link.
    stranger = Browser(api.platform.gateway)
    stranger.get("/signin")
    assert stranger.post("/signin", {"email": "nobody@example.org"}).status_code == 302
    assert "signin-link" not in stranger.text("/signin/sent")


def test_an_expired_link_says_so():
    import mongomock

    db = mongomock.MongoClient().db
    links = SignInLinks(db, "s3cret", minutes=1)
    token, _ = links.make("prt_1", "karlsruhe")
    assert links.check(token).participant_id == "prt_1"
    later = SignInLinks(db, "s3cret", minutes=1)
    later.max_age = -1
    with pytest.raises(Exception, match="expired"):
        later.check(token)
    with pytest.raises(Exception, match="invalid"):
        SignInLinks(db, "another secret", minutes=1).check(token)
    assert links.spend(token).link_id
    with pytest.raises(Exception, match="used"):
        links.spend(token)


def test_pages_need_a_signed_in_person(lab):
    api, _ = lab
    browser = Browser(api.platform.gateway)
    for path in ("/ideas", "/ideas/new", "/matches", "/projects", "/notifications", "/preferences"):
        response = browser.get(path)
        assert response.status_code == 302 and "/signin?next=" in response.headers["Location"], path
    for path in ("/coordinator", "/coordinator/matrix", "/coordinator/import", "/coordinator/export/ideas.csv"):
        response = browser.get(path)
        assert response.status_code == 302 and "/coordinator/signin" in response.headers["Location"], path


def test_a_participant_submits_edits_and_withdraws_an_idea_with_plain_forms(lab):
    api, _ = lab
    lena = Browser(api.platform.gateway, "de")
    lena.sign_in(LENA)
    form = lena.text("/ideas/new")
    assert '<label for="title">' in form and 'id="theme"' in form and "<script" not in form
    invalid = lena.post("/ideas/new", {"title": "x", "theme": "", "tags": "a"})
    assert invalid.status_code == 422
    body = invalid.get_data(as_text=True)
    assert 'aria-invalid="true" aria-describedby="title-error"' in body and 'id="theme-error"' in body
    assert 'value="x"' in body  # what was typed stays
    assert "Bitte zwischen 3 und 200 Zeichen." in body and "Thema wählen" in body, "in the visitor's words"
    assert "Length must be" not in body and "choose a theme" not in body
    created = lena.post("/ideas/new", {"title": "Lastenräder teilen", "description": "Ein Verleih von Lastenrädern "
                                       "in beiden Städten.", "theme": "ecology-health", "tags": "bike, sharing",
                                       "seeks": "Werkstatt in Krasnodar\nFahrräder", "offers": "Know-how",
                                       "language": "auto"})
    assert created.status_code == 302  # POST-redirect-GET
    page = lena.text(created.headers["Location"])
    assert '<h1 lang="de">Lastenräder teilen</h1>' in page and "Geschrieben auf Deutsch" in page
    assert "Deine Idee ist gespeichert" in page
    idea_id = created.headers["Location"].rsplit("/", 1)[1]
    edit = lena.text(f"/ideas/{idea_id}/edit")
    version = re.search(r'name="version" value="(\d+)"', edit).group(1)
    saved = lena.post(f"/ideas/{idea_id}/edit", {"title": "Lastenräder für alle", "theme": "ecology-health",
                                                 "version": version, "language": "de"})
    assert saved.status_code == 302
    assert "Lastenräder für alle" in lena.text(f"/ideas/{idea_id}")
    stale = lena.post(f"/ideas/{idea_id}/edit", {"title": "Alte Fassung", "theme": "ecology-health",
                                                 "version": version})
    assert stale.status_code == 409 and "Jemand hat diese Idee geändert" in stale.get_data(as_text=True)
    assert lena.post(f"/ideas/{idea_id}/withdraw").status_code == 302
    assert "zurückgezogen" in lena.text(f"/ideas/{idea_id}")
    # Search and filters are plain GET forms.
    found = lena.text("/ideas?q=Hackathon&language=ru")
    assert "Совместный IT-хакатон" in found and "Twin-City-Hackathon" not in found
    assert 'lang="ru"' in found and ">RU</abbr>" in found


def test_nobody_changes_another_person_s_idea_or_answers_their_match(lab):
    api, demo = lab
    jonas_idea = next(i for i in api.ok("GET", "/ideas?city=karlsruhe&limit=100", demo.city_keys["karlsruhe"])["items"]
                      if i["author_id"] == demo.participants["karlsruhe"][1])
    lena = Browser(api.platform.gateway, "en")
    lena.sign_in(LENA)
    assert lena.get(f"/ideas/{jonas_idea['id']}/edit").status_code == 403
    assert lena.post(f"/ideas/{jonas_idea['id']}/withdraw").status_code == 403
    lena_id = demo.participants["karlsruhe"][0]

    def others_match() -> Any:
        return next((m for m in api.ok("GET", "/matches?kind=idea&limit=100", demo.city_keys["karlsruhe"])["items"]
                     if m["status"] == "proposed" and all(s["author_id"] != lena_id for s in m["sides"])), None)

    wait_for(others_match, 20, message="a proposal between other people's ideas")
    match = others_match()
    refused = lena.post(f"/matches/{match['id']}/accept")
    assert refused.status_code == 403 and "someone else" in refused.get_data(as_text=True)
    assert api.ok("GET", f"/matches/{match['id']}", demo.city_keys["karlsruhe"])["status"] == "proposed"


def test_bad_input_gets_a_page_never_a_500(lab):
    api, _ = lab
    lena = Browser(api.platform.gateway, "en")
    lena.sign_in(LENA)
    for path, status in (("/ideas?status=nonsense", 400), ("/ideas?language=xx&theme=%00", 400),
                         ("/ideas?cursor=" + "z" * 300, 400), ("/ideas/idea_doesnotexist", 404),
                         ("/ideas/idea_doesnotexist/edit", 404), ("/notifications?cursor=" + "q" * 500, 200),
                         ("/ideas?q=" + "(" * 50, 200), ("/signin/" + "x" * 2000, 400)):
        response = lena.get(path)
        assert response.status_code == status, (path, response.status_code)
        assert response.mimetype == "text/html"
    for path in ("/matches/match_nope/accept", "/notifications/ntf_nope/read"):
        response = lena.post(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
    assert lena.post("/preferences", {"language": "klingon", "digest": "hourly"}).status_code == 422
    assert lena.post("/ideas/new", {"title": "T" * 5000, "theme": "x" * 300}).status_code == 422


def test_both_sides_accept_and_see_the_project(lab):
    api, demo = lab
    lena, dmitry = Browser(api.platform.gateway, "de"), Browser(api.platform.gateway, "ru")
    lena.sign_in(LENA)
    dmitry.sign_in("dmitry.kuznetsov@example.org")

    def card(browser: Browser, title: str) -> str | None:
        found = re.search(r'<article class="card match" id="match-([^"]+)"(?:(?!</article>).)*' + re.escape(title),
                          browser.text("/matches"), re.S)
        return found.group(1) if found else None

    wait_for(lambda: card(lena, "Онлайн-нетворкинг для молодых предпринимателей"), 20, message="the proposal")
    match_id = card(lena, "Онлайн-нетворкинг для молодых предпринимателей")
    page = lena.text("/matches")
    assert "Warum sie zusammenpassen" in page and "Ähnliches Vorhaben" in page
    assert "Похожие замыслы" in dmitry.text("/matches")
    accepted = lena.post(f"/matches/{match_id}/accept", {"next": "/matches"})
    assert accepted.status_code == 302, accepted.get_data(as_text=True)[-300:]
    assert "Du hast angenommen" in lena.text("/matches")
    second = dmitry.post(f"/matches/{match_id}/accept")
    assert second.status_code == 302, second.get_data(as_text=True)[-300:]
    assert "Обе стороны согласились" in dmitry.text("/matches")
    again = lena.post(f"/matches/{match_id}/accept")
    assert again.status_code == 302, again.get_data(as_text=True)[-300:]
    assert "kann nicht mehr geantwortet werden" in lena.text("/matches")
    wait_for(lambda: "Start-up-Netzwerk" in lena.text("/projects"), 20, message="the project page")
    assert "Start-up-Netzwerk" in dmitry.text("/projects")
    wait_for(lambda: "Projekt" in lena.text("/notifications"), 20, message="the project in Lena's inbox")


def test_links_of_notifications_open_their_pages(lab):
    api, demo = lab
    stranger, dmitry = Browser(api.platform.gateway), Browser(api.platform.gateway, "ru")
    dmitry.sign_in("dmitry.kuznetsov@example.org")
    wait_for(lambda: 'class="button" href="/' in dmitry.text("/notifications"), 20, message="a notification")
    opened = set(re.findall(r'class="button" href="(/(?:ideas|matches|projects)/[^"]+)"',
                            dmitry.text("/notifications")))
    assert opened, "the inbox links its notifications to pages"
    for path in opened:
        # The path a notification carries (e-mail or inbox): signed out it asks to sign in and comes back.
        asked = stranger.get(path)
        assert asked.status_code == 302 and asked.headers["Location"].startswith("/signin?next="), path
        shown = dmitry.get(path)
        if path.startswith("/projects/"):  # a project's page is its own (its workspace)
            assert shown.status_code == 200 and "<h1>" in shown.get_data(as_text=True), path
            continue
        assert shown.status_code == 302, path
        target = shown.headers["Location"]
        assert re.fullmatch(r"/ideas/[^/#]+|/matches#match-[^/]+", target), target
        assert dmitry.get(target.split("#")[0]).status_code == 200
        if "#" in target:
            assert f'id="{target.split("#")[1]}"' in dmitry.text(target.split("#")[0]), target


def test_preferences_change_language_channels_and_digest(lab):
    api, demo = lab
    miriam = Browser(api.platform.gateway, "en")
    miriam.sign_in("miriam.okafor@example.org")
    saved = miriam.post("/preferences", {"language": "de", "interests": "Vielfalt", "channel_inbox": "on",
                                         "digest": "daily"})
    assert saved.status_code == 302
    page = miriam.text("/preferences")
    assert '<html lang="de">' in page and "Deine Einstellungen sind gespeichert" in page
    person = api.ok("GET", f"/participants/{demo.participants['karlsruhe'][2]}", demo.city_keys["karlsruhe"])
    assert person["language"] == "de" and person["preferences"] == {"channels": ["inbox"], "digest": "daily"}


def test_coordinator_overview_matrix_and_exports(lab):
    api, demo = lab
    read_key = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"]})["key"]
    stranger = Browser(api.platform.gateway)
    assert stranger.coordinator("tcl_not-a-key").status_code == 401
    assert stranger.coordinator(ADMIN).status_code == 401  # an admin key belongs to no city
    coordinator = Browser(api.platform.gateway, "de")
    assert coordinator.coordinator(demo.city_keys["karlsruhe"]).status_code == 302
    overview = coordinator.text("/coordinator")
    assert "Ideen nach Thema und Stadt" in overview and "Twin City Lab Karlsruhe–Krasnodar" in overview
    assert "Ökologie &amp; Gesundheit" in overview
    # Counts take the plural their number needs, in Russian's three forms too.
    russian = Browser(api.platform.gateway, "ru")
    russian.coordinator(demo.city_keys["karlsruhe"])
    counts = re.findall(r"<strong>(\d+)</strong> (иде[яий]|проект[аов]*)<", russian.text("/coordinator"))
    assert len(counts) == 2, counts
    for number, word in counts:
        n = int(number)
        form = 0 if n % 10 == 1 and n % 100 != 11 else 1 if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else 2
        assert word == (("идея", "идеи", "идей") if word.startswith("иде") else ("проект", "проекта", "проектов"))[form]
    # The demo lab's ideas are matched a moment after seeding (run alone, this test can be first).
    wait_for(lambda: 'class="matrix"' in coordinator.text("/coordinator/matrix"), 20, message="the matrix")
    matrix = coordinator.text("/coordinator/matrix")
    assert 'class="matrix"' in matrix and "Karlsruhe ↔ Krasnodar" in matrix, "the partner city's German name"
    # Every cell links to its reasons, written out below the table (not only in a tooltip).
    cells = re.findall(r'<a href="#why-([^"]+)"', matrix)
    assert cells and all(f'<li id="why-{m}">' in matrix for m in cells)
    assert "Warum sie zusammenpassen" in matrix
    ideas_csv = coordinator.get("/coordinator/export/ideas.csv")
    assert ideas_csv.mimetype == "text/csv" and "attachment" in ideas_csv.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(ideas_csv.get_data(as_text=True).lstrip("\ufeff"))))
    assert {r["city"] for r in rows} == {"karlsruhe", "krasnodar"} and len(rows) >= 12
    matches_csv = coordinator.get("/coordinator/export/matches.csv").get_data(as_text=True)
    assert matches_csv.lstrip("\ufeff").startswith("id,kind,status,score,city_a")
    projects_csv = coordinator.get("/coordinator/export/projects.csv").get_data(as_text=True)
    assert projects_csv.lstrip("\ufeff").startswith("id,title,cities")
    assert coordinator.get("/coordinator/export/secrets.csv").status_code == 404
    # A revoked key ends the coordinator's session at once.
    key_id = next(k["id"] for k in api.ok("GET", "/api-keys")["items"] if k["city"] == "karlsruhe"
                  and k["scopes"] == ["read"])
    reader = Browser(api.platform.gateway)
    reader.coordinator(read_key)
    assert reader.get("/coordinator").status_code == 200
    assert api.call("DELETE", f"/api-keys/{key_id}").status_code == 204
    assert reader.get("/coordinator").status_code == 302


def test_csv_import_previews_names_each_row_s_errors_and_imports_all_or_nothing(lab):
    api, demo = lab
    key = demo.city_keys["karlsruhe"]
    coordinator = Browser(api.platform.gateway, "en")
    coordinator.coordinator(key)

    def count() -> int:
        return len(api.ok("GET", "/ideas?city=karlsruhe&limit=100", key)["items"])

    day = datetime.now(UTC).date() + timedelta(days=20)
    lab_round = api.ok("POST", "/partnerships/karlsruhe-krasnodar/rounds", key, {
        "name": "lab-2024", "collect_until": day.isoformat(), "workshop_at": f"{day + timedelta(days=1)}T10:00:00Z",
        "projects_from": (day + timedelta(days=2)).isoformat()})
    before = count()
    bad = ("title,theme,tags,language,author_email,round\n"
           "Radtour an den Rhein,\"Freizeit, Jugend & Soziales\",bike,de,lena.hoffmann@example.org,lab-2024\n"
           "OK title,ecology-health,,xx,,\n"
           "Another one,no-such-theme,,,,\n"
           "Fourth idea,Ökologie & Gesundheit,,,ghost@example.org,\n")
    preview = coordinator.post("/coordinator/import", {"file": (io.BytesIO(bad.encode()), "workshop.csv")},
                               content_type="multipart/form-data")
    assert preview.status_code == 422
    page = preview.get_data(as_text=True)
    assert "3 of 4 rows have errors. Nothing was imported" in page
    assert "<strong>language</strong>" in page and "<strong>theme</strong>" in page
    assert "<strong>author_email</strong>" in page and "confirm" not in page.split("Upload")[0].lower()
    assert count() == before
    # A forged confirm with the bad file stores nothing either.
    forged = coordinator.post("/coordinator/import/confirm", {"text": bad})
    forged_page = forged.get_data(as_text=True)
    assert forged.status_code == 422 and "<strong>author_email</strong>" in forged_page
    assert "The file is empty" not in forged_page, "the rows' own errors, not a file-level message"
    assert count() == before

    good = ("title;theme;tags;seeks;offers;language;author_email;round\n"
            "Radtour an den Rhein;Freizeit, Jugend & Soziales;bike,tour;Radfahrer;Route;de;"
            "lena.hoffmann@example.org;lab-2024\n"
            "Велопробег по Кубани;leisure-youth-social;bike;;;ru;;lab-2024\n")
    preview = coordinator.post("/coordinator/import", {"file": (io.BytesIO(good.encode("utf-8-sig")), "w.csv")},
                               content_type="multipart/form-data")
    assert preview.status_code == 200 and "All 2 rows are valid" in preview.get_data(as_text=True)
    assert count() == before  # a preview stores nothing
    text = re.search(r'name="text" value="([^"]*)"', preview.get_data(as_text=True), re.S).group(1)
    confirmed = coordinator.post("/coordinator/import/confirm", {"text": text.replace("&#34;", '"')
                                                                 .replace("&amp;", "&").replace("&#39;", "'")})
    assert confirmed.status_code == 302
    assert count() == before + 2
    ideas = api.ok("GET", "/ideas?q=Radtour%20an%20den%20Rhein", key)["items"]
    assert ideas[0]["round_id"] == lab_round["id"], "the CSV's round by its name"
    assert ideas[0]["author_id"] == demo.participants["karlsruhe"][0]
    assert ideas[0]["theme"] == "leisure-youth-social" and ideas[0]["tags"] == ["bike", "tour"]
    assert "lab-2024" in coordinator.text(f"/coordinator?round={lab_round['id']}")
    # One row, every error of it at once, in the visitor's words: an empty title, a theme label nobody knows,
    # an author not registered.
    many = "title,theme,author_email\n,Freizeit,nobody@example.org\n"
    response = coordinator.post("/coordinator/import", {"file": (io.BytesIO(many.encode()), "m.csv")},
                                content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "1 of 1 rows have errors" in page
    for words in ("Between 3 and 200 characters, please.", "Unknown theme “Freizeit”.",
                  "No participant with this e-mail address in Karlsruhe."):
        assert words in page, words
    for broken, words in ((b"\xff\xfe\x00bad", "not UTF-8"), (b"", "choose a CSV file"),
                          (b"titel,thema\nx,y\n", "Unknown columns: titel, thema"),
                          (b"title\nsomething\n", "Required columns are missing: theme")):
        response = coordinator.post("/coordinator/import", {"file": (io.BytesIO(broken), "x.csv")},
                                    content_type="multipart/form-data")
        assert response.status_code == 422 and words in response.get_data(as_text=True), words


def test_a_row_s_errors_are_in_the_coordinator_s_language(lab):
    api, demo = lab
    coordinator = Browser(api.platform.gateway, "de")
    coordinator.coordinator(demo.city_keys["karlsruhe"])
    bad = ("title,theme,language,author_email\n"
           "Ab,ecology-health,,\n"
           "Gut genug,no-such-theme,,\n"
           "Noch eine,ecology-health,xx,\n"
           "Und noch eine,ecology-health,,ghost@example.org\n")
    preview = coordinator.post("/coordinator/import", {"file": (io.BytesIO(bad.encode()), "workshop.csv")},
                               content_type="multipart/form-data")
    page = html.unescape(preview.get_data(as_text=True))
    assert preview.status_code == 422
    assert "Bitte zwischen 3 und 200 Zeichen." in page, "marshmallow's length message, in German"
    assert "Unbekanntes Thema „no-such-theme“." in page
    assert "In Karlsruhe gibt es niemanden mit dieser E-Mail-Adresse." in page
    assert "Erlaubt ist eines von:" in page
    assert "Length must be" not in page and "unknown theme" not in page


def test_exported_cells_cannot_run_as_formulas():
    from gateway.pages import csvfiles

    out = csvfiles.write(["title"], [["=HYPERLINK(\"http://x\")"], ["+1"], ["-2"], ["@SUM(A1)"], ["plain"]])
    assert out.splitlines()[1:] == ['"\'=HYPERLINK(""http://x"")"', "'+1", "'-2", "'@SUM(A1)", "plain"]


def test_the_pages_internal_endpoints_are_not_public(lab):
    api, demo = lab
    for method, path in (("GET", f"/internal/participants?email={LENA}"), ("POST", "/internal/ideas/import"),
                         ("POST", "/sign-in-mails")):
        for key in (ADMIN, demo.city_keys["karlsruhe"]):
            response = api.call(method, path, key, {"ideas": []} if method == "POST" else None)
            assert response.status_code == 404, (method, path, response.status_code)


def test_a_form_whose_change_may_have_been_saved_says_look_before_sending_it_again(lab, monkeypatch):
    from gateway.clients import WsgiTransport

    api, _ = lab
    answer = WsgiTransport.request

    def slow_ideas(self, method, path, **kwargs):  # the service got the idea, then the gateway stopped waiting
        if method == "POST" and path == "/ideas":
            raise TimeoutError("timed out")
        return answer(self, method, path, **kwargs)

    lena = Browser(api.platform.gateway, "de")
    lena.sign_in(LENA)
    monkeypatch.setattr(WsgiTransport, "request", slow_ideas)
    page = lena.post("/ideas/new", {"title": "Lastenräder teilen", "theme": "ecology-health"})
    assert page.status_code == 504
    assert "vielleicht schon gespeichert" in page.get_data(as_text=True)
    key = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read", "write"]})["key"]
    r = api.call("POST", "/ideas", key, {"title": "Lastenräder teilen", "theme": "ecology-health"})
    assert r.status_code == 504 and "the change may have been made" in r.json_body["detail"]
    assert "Retry-After" not in r.headers


def test_the_matrix_shows_near_misses_a_coordinator_pairs_by_hand_and_a_projector_view(lab):
    api, demo = lab
    coordinator = Browser(api.platform.gateway, "de")
    coordinator.coordinator(demo.city_keys["karlsruhe"])
    wait_for(lambda: 'name="a" value=' in coordinator.text("/coordinator/matrix"), 20, message="a near miss")
    matrix = coordinator.text("/coordinator/matrix")
    assert "Beinahe-Treffer" in matrix and "Paar bilden" in matrix
    a, b = re.search(r'name="a" value="([^"]+)"><input type="hidden" name="b" value="([^"]+)"', matrix).groups()
    done = coordinator.post("/coordinator/pair", {"a": a, "b": b, "note": "Passt thematisch gut", "theme": ""})
    assert done.status_code == 302 and "/coordinator/matrix" in done.headers["Location"]
    after = coordinator.text("/coordinator/matrix")
    assert "Die beiden Ideen sind einander vorgeschlagen" in after
    [paired] = [m for m in api.ok("GET", f"/ideas/{a}/matches", demo.city_keys["karlsruhe"])["items"]
                if b in {s["idea_id"] for s in m["sides"]}]
    assert paired["kind"] == "coordinator" and paired["reasons"][0]["params"]["note"] == "Passt thematisch gut"
    assert f'<li id="why-{paired["id"]}">' in after, "now a match with its reasons"
    again = coordinator.post("/coordinator/pair", {"a": a, "b": b})
    assert again.status_code == 302 and "konnten nicht" in coordinator.text("/coordinator/matrix")
    empty = coordinator.post(f"/coordinator/matches/{paired['id']}/withdraw", {"reason": ""})
    assert empty.status_code == 302 and "konnte nicht zurückgezogen" in coordinator.text("/coordinator/matrix")
    coordinator.post(f"/coordinator/matches/{paired['id']}/withdraw", {"reason": "Doch nicht"})
    assert api.ok("GET", f"/matches/{paired['id']}", demo.city_keys["karlsruhe"])["status"] == "withdrawn"
    projector = coordinator.text("/coordinator/projector?theme=ecology-health")
    assert 'class="projector"' in projector and "Ökologie &amp; Gesundheit" in projector
    assert "Karlsruhe" in projector and "Krasnodar" in projector, "the cities as a German reader names them"
    assert coordinator.get("/coordinator/projector?theme=nope").status_code == 404
