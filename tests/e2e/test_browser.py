"""The pages in a real browser: headless Chromium (Debian's `chromium`) driven by playwright.

A Karlsruhe participant submits a German idea, a Krasnodar participant a Russian one; each sees the other's
idea proposed, with the reasons in their own interface language; both accept; both see the project. The
coordinator's overview, matrix and import are looked at too. Screenshots land in TWINCITY_SCREENSHOTS when
it is set (`scripts/screenshots` sets docs/screenshots), else in the test's temporary folder.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from werkzeug.serving import make_server

from tests.e2e.conftest import ADMIN, Api, running_platform
from twincity.demo import seed

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("TWINCITY_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

KATRIN = {"name": "Katrin Vogel", "email": "katrin.vogel@example.org", "language": "de",
          "interests": "Gemeinschaftsgärten, Jugendarbeit"}
OLGA = {"name": "Ольга Петрова", "email": "olga.petrova@example.org", "language": "ru",
        "interests": "Городские сады, экология, молодёжь"}
GERMAN_IDEA = {
    "title": "Gemeinschaftsgärten für Jugendliche",
    "description": "Jugendliche aus Karlsruhe und Krasnodar legen gemeinsam Gemeinschaftsgärten in der Stadt an, "
                   "pflanzen Gemüse und Blumen und tauschen sich online über nachhaltiges Gärtnern aus.",
    "tags": "gardening, youth, ecology",
    "seeks": "Jugendgruppen in Krasnodar, die gärtnern wollen",
    "offers": "Saatgut und Gartengeräte",
}
RUSSIAN_IDEA = {
    "title": "Общественные сады для молодёжи",
    "description": "Молодёжь из Краснодара и Карлсруэ вместе создаёт общественные сады в городе, выращивает "
                   "овощи и цветы и обменивается опытом экологичного садоводства онлайн.",
    "tags": "gardening, youth, ecology",
    "seeks": "Семена и садовый инвентарь",
    "offers": "Молодёжные группы садоводов в Краснодаре",
}
BAD_CSV = ("title;theme;language;author_email\n"
           "Radtour an den Rhein;Freizeit, Jugend & Soziales;de;katrin.vogel@example.org\n"
           "Xy;ecology-health;de;\n"
           "Лодочный поход по Кубани;unknown-theme;ru;\n"
           "Stadtradeln;leisure-youth-social;de;nobody@example.org\n")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Api, Any, str]]:
    """The platform with the demo lab, served over HTTP on a free loopback port."""
    with running_platform("memory://") as api:
        lab = seed(api.platform.gateway, ADMIN)
        for city, person in (("karlsruhe", KATRIN), ("krasnodar", OLGA)):
            api.ok("POST", "/participants", lab.city_keys[city], person)
        server = make_server("127.0.0.1", 0, api.platform.gateway, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield api, lab, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(5)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (scripts/test does it with apt-get "
                    "when it runs as root), or point TWINCITY_CHROMIUM at one")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is in the test extra")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("TWINCITY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def person_page(browser: Any, base: str, locale: str) -> Any:
    context = browser.new_context(locale=locale, viewport={"width": 1200, "height": 900},
                                  extra_http_headers={"Accept-Language": locale})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(base + "/")
    return page


def sign_in(page: Any, email: str) -> None:
    """The e-mail link, as `twincity dev` shows it without a mail server: ask, follow the link, confirm."""
    page.fill("#email", email)
    page.locator("form[action='/signin'] button[type=submit]").click()
    page.locator("a.signin-link").first.click()
    page.locator("main form button.primary").click()
    page.wait_for_url("**/ideas")


def submit_idea(page: Any, idea: dict[str, str], language: str) -> str:
    page.goto(page.url.split("/ideas")[0] + "/ideas/new")
    page.fill("#title", idea["title"])
    page.fill("#description", idea["description"])
    page.select_option("#theme", "ecology-health")
    page.fill("#tags", idea["tags"])
    page.fill("#seeks", idea["seeks"])
    page.fill("#offers", idea["offers"])
    page.select_option("#language", language)
    page.locator("form.idea-form button[type=submit]").click()
    page.wait_for_url("**/ideas/idea_*")
    return page.url.rsplit("/", 1)[-1]


def match_card(page: Any, other_title: str, timeout: float = 60.0) -> Any:
    """The card of the match with `other_title` on /matches, reloading while matching works."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + "/matches")
        card = page.locator("article.match", has_text=other_title)
        if card.count():
            return card.first
        if time.monotonic() > deadline:
            raise AssertionError(f"no match with {other_title!r} on {page.url}: {page.inner_text('main')[:500]}")
        time.sleep(0.5)


def test_two_cities_find_each_other_accept_and_see_their_project(served, chromium, shots):
    api, lab, base = served
    german = person_page(chromium, base, "de-DE")
    russian = person_page(chromium, base, "ru-RU")
    assert german.get_attribute("html", "lang") == "de"
    assert russian.get_attribute("html", "lang") == "ru"

    sign_in(german, KATRIN["email"])
    sign_in(russian, OLGA["email"])
    german.screenshot(path=str(shots / "01-ideas-de.png"), full_page=True)
    assert "Ideen der Partnerschaft" in german.inner_text("h1")
    assert "Идеи партнёрства" in russian.inner_text("h1")

    submit_idea(german, GERMAN_IDEA, "de")
    assert "Deine Idee ist gespeichert" in german.inner_text(".flashes")
    assert german.locator("h1[lang=de]").inner_text() == GERMAN_IDEA["title"]
    submit_idea(russian, RUSSIAN_IDEA, "ru")
    assert "Ваша идея сохранена" in russian.inner_text(".flashes")

    # Each sees the other's idea proposed, in the other's language (marked), with reasons in their own.
    card_de = match_card(german, RUSSIAN_IDEA["title"])
    assert card_de.locator("a[lang=ru]", has_text=RUSSIAN_IDEA["title"]).count() == 1
    assert card_de.locator("a[lang=ru]").get_attribute("href").startswith("/ideas/"), "the partner idea's page"
    assert "Warum sie zusammenpassen" in card_de.inner_text()
    reasons_de = card_de.locator("ul.reasons").inner_text()
    assert "Ähnliches Vorhaben" in reasons_de and "Gleiches Thema: Ökologie & Gesundheit" in reasons_de
    german.screenshot(path=str(shots / "03-matches-de.png"), full_page=True)
    german.screenshot(path=str(shots / "00-matches-de-top.png"), clip={"x": 0, "y": 0, "width": 1200, "height": 560})

    card_ru = match_card(russian, GERMAN_IDEA["title"])
    assert card_ru.locator("a[lang=de]", has_text=GERMAN_IDEA["title"]).count() == 1
    assert "Почему они подходят друг другу" in card_ru.inner_text()
    reasons_ru = card_ru.locator("ul.reasons").inner_text()
    assert "Похожие замыслы" in reasons_ru and "Общая тема: Экология и здоровье" in reasons_ru
    russian.screenshot(path=str(shots / "04-matches-ru.png"), full_page=True)

    # Both accept (plain forms, no script needed).
    card_de.locator("button", has_text="Annehmen").click()
    assert "Du hast angenommen" in german.inner_text(".flashes")
    card_ru = match_card(russian, GERMAN_IDEA["title"])
    card_ru.locator("button", has_text="Принять").click()
    assert "Обе стороны согласились" in russian.inner_text(".flashes")

    # Both see the project.
    for page, heading in ((german, "Deine gemeinsamen Projekte"), (russian, "Ваши совместные проекты")):
        deadline = time.monotonic() + 30
        while True:
            page.goto(base + "/projects")
            project = page.locator("article.project", has_text=GERMAN_IDEA["title"])
            if project.count() or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert page.inner_text("h1") == heading
        assert project.count() == 1, page.inner_text("main")
        assert RUSSIAN_IDEA["title"] in project.inner_text()
    german.screenshot(path=str(shots / "05-projects-de.png"), full_page=True)
    russian.screenshot(path=str(shots / "06-projects-ru.png"), full_page=True)

    # The project's workspace: Katrin writes and offers a meeting in Karlsruhe's time; Olga reads it in Moscow's.
    work_in_the_project(german, russian, base)
    german.screenshot(path=str(shots / "10-project-workspace-de.png"), full_page=True)
    russian.screenshot(path=str(shots / "11-project-workspace-ru.png"), full_page=True)

    # The form for a new idea, for the README.
    german.goto(base + "/ideas/new")
    german.screenshot(path=str(shots / "02-new-idea-de.png"), full_page=True)
    german.context.close()
    russian.context.close()


def work_in_the_project(german: Any, russian: Any, base: str) -> None:
    """Both open the project; the plan, a message, a meeting offered, answered and set, each side in its language
    and its own time."""
    german.goto(base + "/projects")
    german.locator("article.project a.button").first.click()
    german.wait_for_url("**/projects/project_*")
    workspace = german.url
    german.locator("#plan details summary").click()
    german.select_option("#plan-status", "active")
    german.fill("#plan-summary", "Jugendliche beider Städte legen Gärten an und tauschen Saatgut.")
    german.fill("#plan-steps", "Videocall zum Kennenlernen\nSaatgut verschicken")
    german.locator("#plan form button.primary").click()
    assert "Der Plan ist gespeichert" in german.inner_text(".flashes")
    german.fill("#message-text", "Hallo Olga! Wann passt euch ein erster Videocall?")
    german.locator("#messages form button.primary").click()
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=7)).date()
    german.locator("#meetings details summary").click()
    german.locator("input[name=slot]").nth(0).fill(f"{day.isoformat()}T18:00")
    german.locator("input[name=slot]").nth(1).fill(f"{(day + timedelta(days=1)).isoformat()}T17:30")
    german.locator("#meetings details form button.primary").click()
    assert "Das Treffen ist vorgeschlagen" in german.inner_text(".flashes")
    assert "18:00 (Karlsruhe)" in german.inner_text("#meetings")

    russian.goto(workspace)
    assert "Hallo Olga!" in russian.inner_text("#messages")
    meeting = russian.inner_text("#meetings")
    assert "20:00 (Краснодар)" in meeting and "18:00 (Карлсруэ)" in meeting, meeting
    russian.locator("#meetings input[type=checkbox]").first.check()
    russian.locator("#meetings form button.secondary").first.click()
    russian.locator("#meetings form button.primary").first.click()
    assert "Встреча назначена" in russian.inner_text(".flashes")
    assert "Назначена на" in russian.inner_text("#meetings")
    russian.fill("#message-text", "Привет, Катрин! Четверг нам подходит.")
    russian.locator("#messages form button.primary").click()
    german.goto(workspace)
    assert "Четверг нам подходит" in german.inner_text("#messages")


def test_keyboard_reaches_the_skip_link_and_the_sign_in_form(served, chromium):
    _api, _lab, base = served
    page = person_page(chromium, base, "en-GB")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "email":
            break
    assert page.evaluate("document.activeElement.id") == "email", "the e-mail field is reachable by keyboard"
    page.keyboard.type(KATRIN["email"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/signin/sent")
    assert "Check your e-mail" in page.inner_text("h1")
    page.context.close()


def test_coordinator_sees_overview_matrix_and_import_errors(served, chromium, shots, tmp_path):
    _api, lab, base = served
    page = person_page(chromium, base, "en-GB")
    page.goto(base + "/coordinator/signin")
    page.fill("#key", lab.city_keys["karlsruhe"])
    page.locator("main form button.primary").click()
    page.wait_for_url("**/coordinator")
    assert "Ideas per theme and city" in page.inner_text("main")
    page.screenshot(path=str(shots / "07-coordinator-overview-en.png"), full_page=True)

    page.goto(base + "/coordinator/matrix")
    assert page.locator("table.matrix td.cell.confirmed, table.matrix td.cell.proposed").count() >= 1
    page.screenshot(path=str(shots / "08-match-matrix-en.png"), full_page=True)

    page.goto(base + "/coordinator/import")
    path = tmp_path / "workshop.csv"
    path.write_text(BAD_CSV, encoding="utf-8")
    page.set_input_files("#file", str(path))
    page.locator("form[enctype] button.primary").click()
    text = page.inner_text("main")
    assert "3 of 4 rows have errors. Nothing was imported" in text
    assert page.locator("tr.bad").count() == 3 and page.locator("tr.good").count() == 1
    page.screenshot(path=str(shots / "09-import-errors-en.png"), full_page=True)
    page.context.close()


def test_the_round_s_report_in_german_and_russian(served, chromium, shots):
    api, lab, base = served
    ka, kr = lab.city_keys["karlsruhe"], lab.city_keys["krasnodar"]
    day = datetime.now(ZoneInfo("Europe/Berlin")).date() + timedelta(days=14)
    opened = api.ok("POST", "/partnerships/karlsruhe-krasnodar/rounds", kr, {
        "name": "Twin City Lab 2027", "collect_until": day.isoformat(),
        "workshop_at": f"{(day + timedelta(days=3)).isoformat()}T10:00:00+01:00",
        "projects_from": (day + timedelta(days=7)).isoformat(), "timezone": "Europe/Berlin"})
    for key, idea in ((ka, {**GERMAN_IDEA, "title": "Schulgärten in beiden Städten"}),
                      (kr, {**RUSSIAN_IDEA, "title": "Школьные сады"}),
                      (ka, {"title": "Digitale Bürgerbeteiligung", "description": "Ein Portal für Anträge online.",
                            "theme": "city-admin-development"})):
        api.ok("POST", "/ideas", key, {k: v for k, v in {**idea, "theme": idea.get("theme", "ecology-health")}.items()
                                       if k in ("title", "description", "theme")})
    api.settle()
    for key, locale, heading, name in ((ka, "de-DE", "Bericht: Twin City Lab 2027", "12-round-report-de.png"),
                                       (kr, "ru-RU", "Отчёт: Twin City Lab 2027", "13-round-report-ru.png")):
        page = person_page(chromium, base, locale)
        page.goto(base + "/coordinator/signin")
        page.fill("#key", key)
        page.locator("main form button.primary").click()
        page.wait_for_url("**/coordinator")
        page.goto(base + f"/coordinator/rounds/{opened['id']}/report")
        assert page.inner_text("h1") == heading
        assert page.locator("figure.chart svg rect").count() >= 3
        page.screenshot(path=str(shots / name), full_page=True)
        page.emulate_media(media="print")
        assert not page.locator("header.top").is_visible(), "printed without the menus"
        page.context.close()
