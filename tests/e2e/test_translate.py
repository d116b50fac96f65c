"""Idea texts translated on demand, end to end: the API's ?translate= and the idea page's link, against a
LibreTranslate-compatible stand-in on loopback; cached per idea version and language; never failing or waiting
long when that service is down."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ideas.translation import PAUSE_AFTER_FAILURE
from tests.e2e.conftest import ADMIN, Api, running_platform
from tests.e2e.test_pages import ANNA, LENA, Browser
from tests.translate_standin import StandIn, running
from twincity.demo import seed


@pytest.fixture(scope="module")
def translating() -> Iterator[tuple[Api, Any, StandIn]]:
    with running() as stand_in, running_platform("memory://", translate_url=stand_in.url) as api:
        demo = seed(api.platform.gateway, ADMIN)
        api.settle()
        yield api, demo, stand_in


def an_idea_of(api: Api, key: str, language: str, nth: int = 0) -> dict[str, Any]:
    return [i for i in api.ok("GET", "/ideas?limit=100", key)["items"] if i["language"] == language][nth]


def test_an_idea_is_translated_once_per_version_and_language_and_marked_as_machine(translating):
    api, demo, stand_in = translating
    key = demo.city_keys["karlsruhe"]
    russian = an_idea_of(api, key, "ru")
    before = len(stand_in.calls)
    first = api.ok("GET", f"/ideas/{russian['id']}?translate=de", key)
    assert first["title"] == russian["title"], "the idea as written stays"
    t = first["translation"]
    assert t["language"] == "de" and t["machine"] is True and t["provider"] == "LibreTranslate"
    assert t["title"] == f"[de] {russian['title']}" and t["description"] == f"[de] {russian['description']}"
    assert stand_in.calls[-1]["source"] == "ru" and stand_in.calls[-1]["target"] == "de"
    again = api.ok("GET", f"/ideas/{russian['id']}?translate=de", key)
    assert again["translation"] == t and len(stand_in.calls) == before + 1, "the second reading is cached"
    assert api.ok("GET", f"/ideas/{russian['id']}?translate=ru", key)["translation"] is None, "written in it"
    assert "translation" not in api.ok("GET", f"/ideas/{russian['id']}", key)
    bad = api.call("GET", f"/ideas/{russian['id']}?translate=Deutsch", key)
    assert bad.status_code == 422 and "translate" in bad.json_body["errors"]
    own = an_idea_of(api, demo.city_keys["krasnodar"], "ru")
    changed = api.ok("PATCH", f"/ideas/{own['id']}", demo.city_keys["krasnodar"],
                     {"description": own["description"] + " (обновлено)"})
    fresh = api.ok("GET", f"/ideas/{own['id']}?translate=de", key)["translation"]
    assert fresh["description"] == f"[de] {changed['description']}", "a new version is translated anew"


def test_a_german_reader_follows_the_translate_link_on_a_russian_idea(translating):
    api, demo, _stand_in = translating
    russian = an_idea_of(api, demo.city_keys["karlsruhe"], "ru")
    lena = Browser(api.platform.gateway, "de")
    lena.sign_in(LENA)
    page = lena.text(f"/ideas/{russian['id']}")
    link = re.search(r'<a href="([^"]+translate=1)">Übersetzen – Deutsch', page)
    assert link, "a translate link in the reader's language"
    translated = lena.text(link.group(1).replace("&amp;", "&"))
    assert "Maschinelle Übersetzung – Deutsch" in translated and f"[de] {russian['title']}" in translated
    assert 'lang="de"' in translated
    anna = Browser(api.platform.gateway, "ru")
    anna.sign_in(ANNA)
    assert "translate=1" not in anna.text(f"/ideas/{russian['id']}"), "no link to the language it is written in"


def test_a_dead_or_failing_translation_service_costs_a_page_nothing(translating):
    api, demo, stand_in = translating
    key = demo.city_keys["karlsruhe"]
    russian = an_idea_of(api, key, "ru", -1)  # translated into no language yet
    stand_in.fail = True
    try:
        started = time.monotonic()
        failed = api.ok("GET", f"/ideas/{russian['id']}?translate=en", key)
        assert failed["title"] == russian["title"] and "error" in failed["translation"]
        calls = len(stand_in.calls)
        paused = api.ok("GET", f"/ideas/{russian['id']}?translate=en", key)
        assert "error" in paused["translation"] and len(stand_in.calls) == calls, \
            f"no call for {PAUSE_AFTER_FAILURE:.0f} s after a failure"
        lena = Browser(api.platform.gateway, "de")
        lena.sign_in(LENA)
        page = lena.text(f"/ideas/{russian['id']}?translate=1")
        assert "Die Übersetzung ist gerade nicht verfügbar" in page and russian["title"] in page
        assert time.monotonic() - started < 5
    finally:
        stand_in.fail = False


def test_a_translation_service_that_is_not_there_at_all():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with running_platform("memory://", translate_url=url) as api:
        keys = api.lab()
        idea = api.ok("POST", "/ideas", keys["krasnodar"], {"title": "Зелёные дворы", "theme": "ecology-health",
                                                             "description": "Озеленим дворы."})
        started = time.monotonic()
        answer = api.ok("GET", f"/ideas/{idea['id']}?translate=de", keys["karlsruhe"])
        assert answer["translation"]["error"] and time.monotonic() - started < 5
    with running_platform("memory://") as api:  # not set up: says so
        keys = api.lab()
        idea = api.ok("POST", "/ideas", keys["krasnodar"], {"title": "Зелёные дворы", "theme": "ecology-health"})
        off = api.ok("GET", f"/ideas/{idea['id']}?translate=de", keys["karlsruhe"])["translation"]
        assert "TWINCITY_TRANSLATE_URL" in off["error"]
