"""The web pages under attack (Flask test client, no JS): headers, CSRF, redirects through `next`, ids in URLs,
cookies, coordinators' sessions, error pages for unknown paths, and sign-in answers that tell nobody who takes part."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest
from flask import Flask

from gateway.clients import Reply, ServiceClient, Transport
from gateway.keys import KeyStore
from gateway.repository import Directory
from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import ADMIN, Api, running_platform
from tests.e2e.test_pages import ANNA, LENA, Browser
from twincity.demo import seed


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Api, Any]]:
    with running_platform("memory://") as api:
        demo = seed(api.platform.gateway, ADMIN)
        api.settle()
        yield api, demo


def idea_of(api: Api, demo: Any, city: str) -> dict[str, Any]:
    return api.ok("GET", f"/ideas?city={city}&limit=1", demo.city_keys[city])["items"][0]


def a_match(api: Api, demo: Any) -> dict[str, Any]:
    def found() -> list[dict[str, Any]]:
        return api.ok("GET", "/matches?limit=1", demo.city_keys["karlsruhe"])["items"]

    wait_for(found, 20, message="a proposal in the demo lab")
    return found()[0]


def session_of(browser: Browser) -> dict[str, Any]:
    """What the session cookie holds (it is signed, not encrypted: anyone with the cookie can read it)."""
    value = browser.client.get_cookie("twincity_session").value
    compressed = value.startswith(".")
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


# --- headers ------------------------------------------------------------------------------------------------

def test_every_page_sends_the_security_headers(lab):
    api, _ = lab
    browser = Browser(api.platform.gateway)
    browser.get("/")
    browser.post("/signin", {"email": LENA})
    link = re.search(r'class="signin-link" href="([^"]+)"', browser.text("/signin/sent")).group(1)
    for method, path in (("GET", "/"), ("GET", "/signin"), ("GET", link), ("GET", "/signin/sent"),
                         ("GET", "/static/pages/pages.css"), ("GET", "/nowhere"), ("GET", "/signout")):
        response = browser.client.open(path, method=method)
        headers = response.headers
        csp = {d.strip().split(" ")[0]: d.strip() for d in headers.get("Content-Security-Policy", "").split(";")}
        assert csp.get("script-src") == "script-src 'none'", (path, csp)  # the pages run no script at all
        assert csp.get("frame-ancestors") == "frame-ancestors 'none'" and csp.get("base-uri") == "base-uri 'none'"
        assert csp.get("object-src") == "object-src 'none'" and csp.get("form-action") == "form-action 'self'"
        assert "unsafe-inline" not in headers["Content-Security-Policy"], path
        assert headers.get("X-Frame-Options") == "DENY" and headers.get("X-Content-Type-Options") == "nosniff", path
        # A sign-in link in the address bar must not travel on as a Referer (not even to this site's own logs).
        assert headers.get("Referrer-Policy") == "no-referrer", path
    for path in (link, "/signin/sent"):  # the link, and in dev mode the page that shows it, are never cached
        assert "no-store" in browser.get(path).headers.get("Cache-Control", ""), path


def test_unknown_paths_and_wrong_methods_get_a_page_and_the_api_keeps_problem_json(lab):
    api, _ = lab
    browser = Browser(api.platform.gateway, "de")
    for path, status in (("/nowhere", 404), ("/ideas/x/y/z", 404), ("/signout", 405), ("/language", 405)):
        response = browser.get(path)
        assert (response.status_code, response.mimetype) == (status, "text/html"), path
        assert "Nicht gefunden" in response.get_data(as_text=True), path
    assert "POST" in browser.get("/signout").headers["Allow"]
    assert browser.get("/nowhere", Accept="application/json").mimetype == "application/problem+json"
    for path in ("/api/v1/nowhere", "/api/nowhere"):
        response = browser.get(path)
        assert (response.status_code, response.mimetype) == (404, "application/problem+json"), path
    assert api.call("DELETE", "/ideas").mimetype == "application/problem+json"


# --- CSRF ---------------------------------------------------------------------------------------------------

def test_every_state_changing_form_needs_the_token_and_odd_tokens_never_give_a_500(lab):
    api, demo = lab
    lena = Browser(api.platform.gateway, "en")
    lena.sign_in(LENA)
    idea = idea_of(api, demo, "karlsruhe")
    match = a_match(api, demo)
    for path, data in (("/signout", {}), ("/language", {"lang": "ru"}), ("/ideas/new", {"title": "x"}),
                       (f"/ideas/{idea['id']}/edit", {"title": "x"}), (f"/ideas/{idea['id']}/withdraw", {}),
                       (f"/matches/{match['id']}/accept", {}), (f"/matches/{match['id']}/decline", {}),
                       ("/notifications/ntf_x/read", {}), ("/preferences", {"language": "ru"}),
                       ("/signin", {"email": LENA}), ("/signin/abc", {}), ("/coordinator/signin", {"key": "k"}),
                       ("/coordinator/import", {"text": "title,theme\nx,y"}),
                       ("/coordinator/import/confirm", {"text": "title,theme\nx,y"})):
        for token in (None, "", "forged", "é", "\u0000", "ключ" * 50, "x" * 10_000):
            form = data if token is None else {**data, "csrf_token": token}
            refused = lena.post(path, form, csrf=False)
            assert refused.status_code == 400 and refused.mimetype == "text/html", (path, token, refused.status_code)
            assert "The form has expired" in refused.get_data(as_text=True)
    # Nothing of it happened: still signed in, still in English, the match still waits for an answer.
    page = lena.text("/ideas")
    assert "Sign out" in page and '<html lang="en">' in page
    assert api.ok("GET", f"/matches/{match['id']}", demo.city_keys["karlsruhe"])["status"] == match["status"]


# --- redirects ----------------------------------------------------------------------------------------------

OFF_SITE = ("https://evil.example/", "//evil.example", "///evil.example", "/\\evil.example", "\\/evil.example",
            "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", " //evil.example",
            "/\r\nSet-Cookie: x=1", "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x",
            "http:evil.example", "https:/evil.example", "evil.example", "/\x00/evil.example", "/\x7f/evil.example")


def is_local(location: str) -> bool:
    return (location.startswith("/") and not location.startswith("//") and "\\" not in location
            and not re.search(r"[\x00-\x20\x7f]", location))


@pytest.mark.parametrize("target", OFF_SITE)
def test_next_never_leads_off_the_site(lab, target):
    api, demo = lab
    browser = Browser(api.platform.gateway)
    browser.get("/")
    response = browser.post("/language", {"lang": "en", "next": target})
    assert response.status_code == 302 and is_local(response.headers["Location"]), response.headers.get("Location")
    asked = browser.get("/signin?next=" + target.replace("\n", "%0A").replace("\r", "%0D"))
    assert asked.status_code == 200
    form = asked.get_data(as_text=True).split('action="/signin"', 1)[1].split("</form>")[0]
    assert re.search(r'name="next" value=""', form), form  # the sign-in form does not carry it on
    coordinator = browser.post("/coordinator/signin", {"key": demo.city_keys["krasnodar"], "next": target})
    assert coordinator.status_code == 302 and is_local(coordinator.headers["Location"])


# --- ids in URLs --------------------------------------------------------------------------------------------

def test_an_id_in_a_url_stays_one_path_segment_of_the_service_call(lab):
    api, demo = lab
    lena = Browser(api.platform.gateway, "en")
    lena.sign_in(LENA)
    idea = idea_of(api, demo, "karlsruhe")
    assert lena.get(f"/ideas/{idea['id']}").status_code == 200
    # "?" and "#" arrive percent-encoded; they must not turn into a query or a fragment of the service's URL.
    for suffix in ("%3F", "%3Fx=1", "%23", "%23x"):
        response = lena.get(f"/ideas/{idea['id']}{suffix}")
        assert (response.status_code, response.mimetype) == (404, "text/html"), suffix
    assert lena.get(f"/ideas/{idea['id']}%3F/edit").status_code == 404
    for path in ("/ideas/%C3%A9", "/ideas/%FF", "/ideas/..", "/ideas/%2E%2E", "/ideas/" + "x" * 3000):
        assert lena.get(path).status_code == 404, path
    match = a_match(api, demo)
    assert lena.post(f"/matches/{match['id']}%3F/accept").status_code == 404
    assert lena.post("/notifications/x%3Funread=true/read").status_code == 404


# --- cookies and sessions -----------------------------------------------------------------------------------

def test_the_session_cookie_is_http_only_same_site_and_holds_no_key(lab):
    api, demo = lab
    browser = Browser(api.platform.gateway)
    secret = demo.city_keys["karlsruhe"]
    browser.get("/coordinator/signin")
    signed_in = browser.post("/coordinator/signin", {"key": secret})
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # http in this test
    held = session_of(browser)
    assert held["who"]["kind"] == "coordinator" and held["who"]["key"].startswith("key_")
    assert secret not in json.dumps(held) and secret[4:20] not in cookie


def test_the_session_cookie_is_secure_when_the_public_url_is_https():
    with running_platform("memory://", public_url="https://lab.example.org") as api:
        response = Browser(api.platform.gateway).get("/")
        cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_rotated_or_revoked_key_ends_the_coordinator_s_session(lab):
    api, _ = lab
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"]})
    coordinator = Browser(api.platform.gateway)
    coordinator.coordinator(made["key"])
    assert coordinator.get("/coordinator").status_code == 200
    new_secret = api.ok("POST", f"/api-keys/{made['id']}/rotate")["key"]
    # Whoever signed in with the old (perhaps leaked) secret is out; the new secret works.
    assert coordinator.get("/coordinator").status_code == 302
    coordinator.coordinator(new_secret)
    assert coordinator.get("/coordinator").status_code == 200
    assert api.call("DELETE", f"/api-keys/{made['id']}").status_code == 204
    assert coordinator.get("/coordinator").status_code == 302


def test_an_overlong_address_is_refused_before_it_reaches_the_cookie(lab):
    api, _ = lab
    browser = Browser(api.platform.gateway)
    browser.get("/signin")
    response = browser.post("/signin", {"email": "a" * 5000 + "@example.org"})
    assert response.status_code == 422 and len(response.headers.get("Set-Cookie", "")) < 4000
    assert browser.post("/signin", {"email": "a" * 243 + "@example.org"}).status_code == 422  # 255 characters
    assert browser.post("/signin", {"email": "a" * 242 + "@example.org"}).status_code == 302  # 254 go


# --- what a participant sees --------------------------------------------------------------------------------

def test_a_city_key_stored_with_the_admin_scope_signs_a_coordinator_in_for_their_city_only(lab):
    """Keys made before a city + admin key was refused: the pages grant the city's scopes, never every city's."""
    api, _ = lab
    api.ok("POST", "/cities", body={"key": "ulsk", "name": "Uljanowsk", "country": "RU", "language": "ru"})
    api.ok("POST", "/cities", body={"key": "dresden", "name": "Dresden", "country": "DE", "language": "de"})
    api.ok("POST", "/partnerships", body={"cities": ["dresden", "ulsk"], "name": "Dresden–Uljanowsk"})
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read", "write"]})
    keys = api.platform.gateway.extensions["twincity.gateway"].keys
    keys.collection.update_one({"_id": made["id"]}, {"$set": {"scopes": ["admin", "read", "write"]}})
    listed = next(k for k in api.ok("GET", "/api-keys")["items"] if k["id"] == made["id"])
    assert listed["scopes"] == ["read", "write"], "the scopes it grants"
    from gateway.pages.web import Backend

    gateway = api.platform.gateway
    with gateway.app_context():
        directory = gateway.extensions["twincity.gateway"].directory
        key, _fingerprint = Backend({}, directory, keys).coordinator_key(made["id"])
    assert key.scopes == ("read", "write") and not key.admin, "the session's caller is Karlsruhe's, not an admin"
    coordinator = Browser(gateway, "en")
    assert coordinator.coordinator(made["key"]).status_code == 302
    overview = coordinator.text("/coordinator?partnership=dresden-ulsk")
    assert "Dresden" not in overview and "Karlsruhe" in overview, "its own partnership, not another's"


def test_a_participant_never_sees_other_partnerships_or_e_mail_addresses(lab):
    api, demo = lab
    outsider_key = api.ok("POST", "/api-keys", body={"city": "krasnodar", "scopes": ["read"]})["key"]
    assert outsider_key  # the demo lab has one partnership; the pages show only the visitor's partnerships
    lena = Browser(api.platform.gateway, "en")
    lena.sign_in(LENA)
    everything = lena.text("/ideas") + lena.text("/matches") + lena.text("/projects")
    other = idea_of(api, demo, "krasnodar")
    everything += lena.text(f"/ideas/{other['id']}")
    addresses = set(re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", everything))
    assert addresses <= {LENA}, addresses  # her own address at most, nobody else's
    assert ANNA not in everything


def test_notifications_mark_only_their_own_words_with_their_language(lab):
    api, _ = lab
    lena = Browser(api.platform.gateway, "en")  # her notifications are in German, the interface in English
    lena.sign_in(LENA)
    wait_for(lambda: 'class="text"' in lena.text("/notifications"), 20, message="a notification for Lena")
    page = lena.text("/notifications")
    assert not re.search(r"<article[^>]*\blang=", page), "the buttons of the interface are not German"
    assert '<div class="text" lang="de">' in page


def test_words_of_the_interface_are_not_marked_as_the_language_of_an_idea(lab):
    from flask import render_template_string

    api, _ = lab
    template = '{% from "pages/macros.html" import match_card with context %}{{ match_card(m, "/matches") }}'
    person_side = {"city": "krasnodar", "participant_id": "prt_x", "title": None, "language": "ru"}
    idea_side = {"city": "karlsruhe", "idea_id": "idea_x", "author_id": "prt_y", "title": "Radweg", "language": "de"}
    match = {"id": "match_x", "kind": "interest", "status": "proposed", "score": 0.5, "reasons": [],
             "mine": idea_side, "other": person_side, "can_answer": False}
    with api.platform.gateway.test_request_context("/matches", headers={"Accept-Language": "en"}):
        html = render_template_string(template, m=match)
    assert '<span lang="de">Radweg</span>' in html
    # The placeholder for a person's interests is English here, not Russian.
    assert "(a participant's interests)" in html and 'lang="ru"' not in html


# --- sign-in answers tell nobody who takes part ---------------------------------------------------------------

class SlowServices(Transport):
    """The ideas and notify services as the gateway sees them over HTTP: notify takes its time to send."""

    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def request(self, method: str, path: str, *, body: bytes | None, headers: Any) -> Reply:
        if path.startswith("/internal/participants"):
            items = [{"id": "prt_1", "city": "karlsruhe", "email": LENA, "name": "Lena", "language": "de"}]
            found = items if "lena.hoffmann" in path else []
            return Reply(200, {"Content-Type": "application/json"}, json.dumps({"items": found}).encode())
        if path == "/sign-in-mails":
            time.sleep(0.6)
            with self.lock:
                self.mails.append(json.loads(body or b"{}"))
            return Reply(202, {"Content-Type": "application/json"}, b"{}")
        return Reply(404, {"Content-Type": "application/json"}, b"{}")


def test_the_answer_to_a_sign_in_request_takes_as_long_for_a_participant_as_for_a_stranger():
    from gateway import pages

    services = SlowServices()
    settings = make_settings("amqp://guest:guest@127.0.0.1:5672//", web_secret="s3cret" * 6)
    assert not settings.embedded  # no dev links: the production answer
    db = mongomock.MongoClient().db
    app = Flask(__name__)
    pages.install(app, settings=settings, db=db, directory=Directory(db), keys=KeyStore(db),
                  clients={name: ServiceClient(name, services) for name in ("ideas", "matching", "notify")})
    timings = {}
    for email in (LENA, "nobody@example.org"):
        browser = Browser(app)
        browser.get("/signin")
        started = time.perf_counter()
        response = browser.post("/signin", {"email": email})
        timings[email] = time.perf_counter() - started
        assert response.status_code == 302 and response.headers["Location"] == "/signin/sent"
        assert "signin-link" not in browser.text("/signin/sent")
    assert max(timings.values()) < 0.3, timings  # notify's 0.6 s are not part of the answer
    wait_for(lambda: services.mails, 5, message="the e-mail to be sent after the answer")
    assert [m["to"] for m in services.mails] == [LENA]
    assert services.mails[0]["link"].startswith(settings.public_url + "/signin/")


def test_signing_out_or_being_erased_ends_the_session_on_the_server_too(lab):
    api, demo = lab
    people = {name: api.ok("POST", "/participants", demo.city_keys["karlsruhe"], {
        "name": name, "email": f"{name.lower().replace(' ', '.')}@example.org", "language": "de"})
        for name in ("Mia Roth", "Paul Brandt")}
    api.settle()
    mia, copy = Browser(api.platform.gateway, "de"), Browser(api.platform.gateway, "de")
    mia.sign_in("mia.roth@example.org")
    copy.client.set_cookie("twincity_session", mia.client.get_cookie("twincity_session").value)
    assert copy.get("/ideas").status_code == 200, "a copied cookie works while the session lives"
    assert "sid" in session_of(mia)["who"] and "mia.roth@" not in json.dumps(session_of(mia))
    mia.get("/ideas")
    assert mia.post("/signout").status_code == 302
    assert copy.get("/ideas").status_code == 302, "signing out ends the session for every copy of the cookie"

    paul = Browser(api.platform.gateway, "de")
    paul.sign_in("paul.brandt@example.org")
    assert paul.get("/ideas").status_code == 200
    erased = api.call("DELETE", f"/participants/{people['Paul Brandt']['id']}", demo.city_keys["karlsruhe"])
    assert erased.status_code == 204
    assert paul.get("/ideas").status_code == 302, "erasure ends the person's web sessions"


def test_sign_in_forms_are_limited_per_address_with_a_page_in_the_visitor_s_language():
    with running_platform("memory://", signin_rate_limit="3/minute") as api:
        browser = Browser(api.platform.gateway, "de")
        browser.get("/signin")
        for _ in range(3):
            assert browser.post("/signin", {"email": "someone@example.org"}).status_code == 302
        limited = browser.post("/signin", {"email": "someone.else@example.org"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert "Zu viele Versuche" in limited.get_data(as_text=True) and limited.mimetype == "text/html"
        assert limited.headers["Content-Security-Policy"]
        # The coordinators' form counts for itself; reading the forms is never limited.
        assert browser.get("/signin").status_code == 200
        browser.get("/coordinator/signin")
        assert browser.post("/coordinator/signin", {"key": "tcl_wrong"}).status_code != 429
        # The API keeps its own limit and its problem+json.
        assert api.call("GET", "/themes").status_code == 200
