"""Findings of the outside review (issue 17), each as the attacker or operator met it, through the gateway."""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from werkzeug.test import Client

from gateway import bootstrap as gateway_app
from gateway.keys import KeyStore
from services import store
from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import ADMIN, Api, running_platform
from tests.e2e.test_pages import Browser
from twincity.demo import seed


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Api, Any, dict[str, str]]]:
    with running_platform("memory://") as api:
        demo = seed(api.platform.gateway, ADMIN)
        keys = {"karlsruhe": demo.city_keys["karlsruhe"], "krasnodar": demo.city_keys["krasnodar"],
                "karlsruhe-read": api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"]})["key"]}
        api.settle()
        yield api, demo, keys


def karlsruhe_person(api: Api, keys: dict[str, str]) -> dict[str, Any]:
    return api.ok("GET", "/ideas?city=karlsruhe&limit=1", keys["karlsruhe"])["items"][0]


# --- 1. single-line fields -------------------------------------------------------------------------------

LINE_BREAKERS = {"\x85": "U+0085", "\u2028": "U+2028", "\u2029": "U+2029", "\u202e": "U+202E", "\u2066": "U+2066",
                 "\u200b": "U+200B", "\x1b": "U+001B", "\r\n": "U+000D"}


@pytest.mark.parametrize("char", sorted(LINE_BREAKERS))
def test_every_single_line_field_refuses_line_breaks_and_invisible_controls_naming_field_and_character(lab, char):
    api, _demo, keys = lab
    bad = f"Radtour{char}Karlsruhe"
    code = LINE_BREAKERS[char]
    idea = {"title": "Radtour", "theme": "ecology-health"}
    for path, key, body, field in (
            ("/ideas", keys["karlsruhe"], {**idea, "title": bad}, "title"),
            ("/ideas", keys["karlsruhe"], {**idea, "tags": ["rad", bad]}, "tags"),
            ("/ideas", keys["karlsruhe"], {**idea, "seeks": [bad]}, "seeks"),
            ("/ideas", keys["karlsruhe"], {**idea, "offers": [bad]}, "offers"),
            ("/participants", keys["karlsruhe"], {"name": bad, "language": "de"}, "name"),
            ("/cities", ADMIN, {"key": "speyer", "name": bad, "country": "DE", "language": "de"}, "name"),
            ("/partnerships", ADMIN, {"cities": ["karlsruhe", "krasnodar"], "name": bad, "id": "x"}, "name"),
            ("/partnerships", ADMIN, {"cities": ["karlsruhe", "krasnodar"], "name": "P", "id": "y",
                                      "themes": [{"key": "t", "labels": {"de": bad}}]}, "themes"),
            ("/api-keys", ADMIN, {"city": "karlsruhe", "scopes": ["read"], "label": bad}, "label")):
        refused = api.call("POST", path, key, body)
        assert refused.status_code == 422, (path, field, refused.json_body)
        said = json.dumps(refused.json_body["errors"][field], ensure_ascii=False)
        assert code in said and "position 8" in said, (path, field, said)


def test_a_description_keeps_its_lines_whatever_breaks_them(lab):
    api, _demo, keys = lab
    idea = api.ok("POST", "/ideas", keys["karlsruhe"], {
        "title": "Stadtgarten", "theme": "ecology-health",
        "description": "Erste Zeile\u2028zweite\x85dritte\r\nvierte"})
    assert idea["description"] == "Erste Zeile\nzweite\ndritte\nvierte"


def test_the_idea_form_names_the_character_in_the_visitor_s_language(lab):
    api, _demo, _keys = lab
    lena = Browser(api.platform.gateway, "de")
    lena.sign_in("lena.hoffmann@example.org")
    lena.get("/ideas/new")
    answer = lena.post("/ideas/new", {"title": "Radtour\u2028Karlsruhe", "theme": "ecology-health"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "Bitte eine Zeile reiner Text: U+2028 (LINE SEPARATOR) an Stelle 8" in page


# --- 2. every change reached from a page is checked for the caller's scope -------------------------------

CSV = "title,theme\nRadtour an den Rhein,leisure-youth-social\n"


def coordinator_forms() -> list[tuple[str, dict[str, str]]]:
    return [("/coordinator/import", {"text": CSV}), ("/coordinator/import/confirm", {"text": CSV})]


def coordinator_with(api: Api, kind: str, label: str, *, before_revoking: str = "") -> Browser:
    """A Karlsruhe coordinator signed in with a key of this kind (read, read+write, or one revoked after signing
    in, once `before_revoking` was opened)."""
    scopes = ["read"] if kind == "read" else ["read", "write"]
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": scopes, "label": f"{label} {kind}"})
    coordinator = Browser(api.platform.gateway, "en")
    assert coordinator.coordinator(made["key"]).status_code == 302
    if before_revoking:
        coordinator.get(before_revoking)
    if kind == "revoked":
        assert api.call("DELETE", f"/api-keys/{made['id']}").status_code == 204
    return coordinator


@pytest.mark.parametrize("kind", ["read", "read+write", "revoked"])
def test_every_coordinator_form_by_key_kind(lab, kind):
    api, _demo, _keys = lab
    coordinator = coordinator_with(api, kind, "table")

    def stored() -> int:
        return sum(i["title"] == "Radtour an den Rhein" for i in api.ok("GET", "/ideas?q=Rhein&limit=100",
                                                                          ADMIN)["items"])

    before = stored()
    for path, form in coordinator_forms():
        answer = coordinator.post(path, form)
        page = answer.get_data(as_text=True)
        if kind == "revoked":
            assert answer.status_code == 302 and "/coordinator/signin" in answer.headers["Location"], path
        elif kind == "read":
            assert answer.status_code == 422, (path, answer.status_code)
            assert "Your key may only read; importing needs a key with the write scope." in page, path
        else:
            assert answer.status_code in (200, 302), (path, answer.status_code, page[-500:])
    assert stored() == before + (1 if kind == "read+write" else 0)


def test_the_service_itself_refuses_a_change_from_a_read_only_caller(lab):
    """Not only the gateway's API checks scopes: the ideas, matching and notify services do, for any path."""
    api, _demo, _keys = lab
    from services.tenancy import HEADER, Caller

    reader = Caller(city="karlsruhe", scopes=("read",), visible_cities=("karlsruhe", "krasnodar"),
                    default_themes=("ecology-health",))
    for service, method, path, body in (
            ("ideas", "POST", "/internal/ideas/import", {"ideas": [{"title": "Radtour", "theme": "ecology-health"}]}),
            ("ideas", "POST", "/ideas", {"title": "Radtour", "theme": "ecology-health"}),
            ("ideas", "DELETE", "/participants/p-1", None),
            ("matching", "POST", "/matches/match_1/accept", {}),
            ("notify", "POST", "/webhooks", {"url": "https://example.org/h", "events": ["*"], "secret": "s" * 16})):
        client = Client(api.platform.apps[service])
        answer = client.open(path, method=method, json=body, headers={HEADER: reader.encode()})
        assert answer.status_code == 403, (service, path, answer.status_code)
        assert "may only read" in answer.get_json()["detail"]


def test_a_key_that_may_only_write_reads_nothing_through_the_pages_or_the_services(lab):
    api, _demo, _keys = lab
    from services.tenancy import HEADER, Caller

    writer = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["write"]})
    coordinator = Browser(api.platform.gateway, "en")
    refused = coordinator.coordinator(writer["key"])
    assert refused.status_code == 401 and "need a key with the read scope" in refused.get_data(as_text=True)
    assert coordinator.get("/coordinator/export/ideas.csv").status_code == 302, "not signed in"
    only_writes = Caller(city="karlsruhe", scopes=("write",), visible_cities=("karlsruhe", "krasnodar"))
    for service, path in (("ideas", "/ideas"), ("matching", "/matches"), ("notify", "/webhooks")):
        answer = Client(api.platform.apps[service]).get(path, headers={HEADER: only_writes.encode()})
        assert answer.status_code == 403 and "may not read" in answer.get_json()["detail"], service


# --- 3. signing out ends a coordinator's session on the server --------------------------------------------

def test_a_coordinator_cookie_copied_before_signing_out_no_longer_works(lab):
    api, demo, _keys = lab
    coordinator = Browser(api.platform.gateway, "en")
    coordinator.coordinator(demo.city_keys["karlsruhe"])
    copied = coordinator.client.get_cookie("twincity_session").value
    assert coordinator.get("/coordinator").status_code == 200
    assert coordinator.post("/signout").status_code == 302
    thief = Browser(api.platform.gateway, "en")
    thief.client.set_cookie("twincity_session", copied)
    assert thief.get("/coordinator").status_code == 302, "the copied cookie names a session that is gone"
    assert thief.post("/coordinator/import/confirm", {"text": CSV}).status_code in (302, 400)


# --- 5, 6. bodies too deep or too long ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/cities", "/ideas", "/webhooks", "/participants"])
def test_json_nested_a_thousand_deep_is_a_400_naming_the_limit(lab, path):
    api, _demo, keys = lab
    body = b'{"title": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    answer = api.call("POST", path, ADMIN if path == "/cities" else keys["karlsruhe"], raw=body)
    assert answer.status_code == 400, (path, answer.status_code)
    assert "more than 64 levels" in answer.json_body["detail"]
    fine = api.call("POST", path, keys["karlsruhe"], raw=b'{"title": ' + b"[" * 60 + b"]" * 60 + b"}")
    assert fine.status_code in (403, 422), (path, fine.status_code)  # read, and refused for what it says


def test_a_webhook_url_with_an_impossible_port_is_a_422(lab):
    api, _demo, keys = lab
    answer = api.call("POST", "/webhooks", keys["karlsruhe"],
                      {"url": "https://hooks.example.org:99999/x", "events": ["*"], "secret": "s" * 16})
    assert answer.status_code == 422 and answer.json_body["errors"]["url"] == [
        "the port must be a number from 1 to 65535"]


@pytest.mark.parametrize("url", ["http://100.64.0.1/", "http://[2002:7f00:1::]/", "http://198.18.0.1/",
                                 "http://[64:ff9b::7f00:1]/", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"])
def test_webhooks_to_addresses_the_internet_does_not_reach_are_refused(lab, url):
    api, _demo, keys = lab
    answer = api.call("POST", "/webhooks", keys["karlsruhe"], {"url": url, "events": ["*"], "secret": "s" * 16})
    assert answer.status_code == 422 and "public internet" in answer.json_body["errors"]["url"][0], answer.json_body


def chunked(api: Api, path: str, body: bytes, key: str, **headers: str) -> Any:
    return api.client.open(path, method="POST", input_stream=io.BytesIO(body),
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked", **headers},
                           environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})


def test_a_chunked_body_over_the_limit_is_a_413_not_cut_and_processed(lab):
    api, _demo, keys = lab
    limit = api.platform.settings.max_body_bytes
    title = "x" * 150
    body = json.dumps({"title": title, "theme": "ecology-health", "description": "y" * (limit + 10)}).encode()
    answer = chunked(api, "/api/v1/ideas", body, keys["karlsruhe"])
    assert answer.status_code == 413, answer.status_code
    assert "TWINCITY_MAX_BODY" in json.loads(answer.get_data())["detail"]
    small = json.dumps({"title": "Radtour per Chunk", "theme": "ecology-health"}).encode()
    assert chunked(api, "/api/v1/ideas", small, keys["karlsruhe"]).status_code == 201


# --- 7. admin keys ------------------------------------------------------------------------------------------

def test_an_admin_key_cannot_revoke_or_rotate_itself_or_the_configured_key(lab):
    api, _demo, _keys = lab
    other = api.ok("POST", "/api-keys", body={"city": None, "scopes": ["admin"], "label": "second admin"})
    listed = {k["id"]: k for k in api.ok("GET", "/api-keys")["items"]}
    bootstrap = next(k for k in listed.values() if k["label"] == "TWINCITY_ADMIN_KEY")
    for method, suffix in (("DELETE", ""), ("POST", "/rotate")):
        itself = api.call(method, f"/api-keys/{other['id']}{suffix}", other["key"])
        assert itself.status_code == 409 and "the key making the call" in itself.json_body["detail"]
        configured = api.call(method, f"/api-keys/{bootstrap['id']}{suffix}", other["key"])
        assert configured.status_code == 409 and "TWINCITY_ADMIN_KEY" in configured.json_body["detail"]
    assert api.call("GET", "/api-keys", other["key"]).status_code == 200, "both still work"
    assert api.call("DELETE", f"/api-keys/{other['id']}").status_code == 204, "another admin key may revoke it"


def test_a_gateway_starts_cleanly_whatever_the_store_holds_of_its_configured_key():
    settings = make_settings("memory://", admin_key="tcl_bootstrap-key-0123456789abcdef")
    try:
        gateway = gateway_app.create_app(settings, service_apps={"ideas": None, "matching": None, "notify": None})
        keys: KeyStore = gateway.extensions["twincity.gateway"].keys
        key_id = keys.authenticate(settings.admin_key).id
        # Revoked (an older version allowed it), expired and stripped of a scope: the next start brings it back.
        keys.collection.update_one({"_id": key_id}, {"$set": {"revoked": True, "scopes": ["read"],
                                                              "expires_at": datetime.now(UTC) - timedelta(days=1)}})
        assert keys.authenticate(settings.admin_key) is None
        again = gateway_app.create_app(settings, service_apps={"ideas": None, "matching": None, "notify": None})
        back = again.extensions["twincity.gateway"].keys.authenticate(settings.admin_key)
        assert back is not None and back.id == key_id and back.admin
        assert keys.collection.count_documents({}) == 1
    finally:
        store.forget(settings.mongo_url)


def test_keys_may_expire(lab):
    api, _demo, _keys = lab
    past = api.call("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"],
                                               "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422 and past.json_body["errors"]["expires_at"] == ["must lie in the future"]
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"], "expires_at": until.isoformat()})
    assert datetime.fromisoformat(made["expires_at"]) == until and made["expired"] is False
    listed = next(k for k in api.ok("GET", "/api-keys")["items"] if k["id"] == made["id"])
    assert datetime.fromisoformat(listed["expires_at"]) == until
    assert api.call("GET", "/ideas", made["key"]).status_code == 200
    keys: KeyStore = api.platform.gateway.extensions["twincity.gateway"].keys
    keys.collection.update_one({"_id": made["id"]}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    gone = api.call("GET", "/ideas", made["key"])
    assert gone.status_code == 401 and "expired" in gone.json_body["detail"]
    assert next(k for k in api.ok("GET", "/api-keys")["items"] if k["id"] == made["id"])["expired"] is True


def test_an_expiry_beyond_ten_years_or_with_an_odd_offset_is_a_422_not_a_500(lab):
    api, _demo, _keys = lab
    for when in ("9999-12-31T23:59:59-14:00", "2200-01-01T00:00:00Z"):
        answer = api.call("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"], "expires_at": when})
        assert answer.status_code == 422 and "at most 10 years" in answer.json_body["errors"]["expires_at"][0], when
    soon = (datetime.now(UTC) + timedelta(days=2)).astimezone(timezone(timedelta(hours=-14))).replace(microsecond=0)
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"], "expires_at": soon.isoformat()})
    assert made["expires_at"].endswith("+00:00") and datetime.fromisoformat(made["expires_at"]) == soon


def test_an_expired_key_gets_no_new_secret(lab):
    api, _demo, _keys = lab
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"]})
    keys: KeyStore = api.platform.gateway.extensions["twincity.gateway"].keys
    keys.collection.update_one({"_id": made["id"]}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    answer = api.call("POST", f"/api-keys/{made['id']}/rotate")
    assert answer.status_code == 409 and "expired" in answer.json_body["detail"]


# --- 8. made-up tokens ------------------------------------------------------------------------------------

def test_made_up_tokens_count_against_the_address_they_come_from():
    with running_platform("memory://", rate_limit="5/minute") as api:
        answers = [api.call("GET", "/ideas", f"tcl_{secrets.token_urlsafe(16)}").status_code for _ in range(7)]
        assert answers[:5] == [401] * 5 and answers[5:] == [429, 429], answers
        # A real key has a count of its own.
        assert api.call("GET", "/cities", ADMIN).status_code == 200


# --- 9. who answers a match ------------------------------------------------------------------------------

def test_a_match_is_answered_in_the_name_of_a_participant_of_the_acting_city_only(lab):
    api, demo, keys = lab
    def proposals() -> list[dict[str, Any]]:
        return api.ok("GET", "/matches?status=proposed&kind=idea&limit=5", keys["karlsruhe"])["items"]

    wait_for(proposals, 20, message="a proposal in the demo lab")
    match = proposals()[0]
    anna, lena = demo.participants["krasnodar"][0], demo.participants["karlsruhe"][0]
    for who in (anna, "nobody-such"):
        refused = api.call("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"], {"participant_id": who})
        assert refused.status_code == 422, (who, refused.json_body)
        assert "participant_id" in refused.json_body["errors"]
    assert api.ok("GET", f"/matches/{match['id']}", keys["karlsruhe"])["status"] == "proposed"
    answered = api.call("POST", f"/matches/{match['id']}/decline", keys["karlsruhe"], {"participant_id": lena})
    assert answered.status_code == 200, answered.json_body


# --- 10. /docs and /metrics --------------------------------------------------------------------------------

def test_the_docs_page_has_the_pages_security_headers(lab):
    api, _demo, _keys = lab
    for path in ("/docs",):
        response = api.client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'none'" in csp and "unsafe-inline" not in csp, path
        assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Referrer-Policy"] == "no-referrer"
        assert re.search(r'<link rel="stylesheet" href="/static/pages/docs.css">', response.get_data(as_text=True))
    assert api.client.get("/static/pages/docs.css").status_code == 200
    assert api.call("GET", "/cities").headers["X-Content-Type-Options"] == "nosniff"


def test_metrics_answer_only_with_the_operator_s_token():
    with running_platform("memory://", metrics_token="metrics-secret-123") as api:
        assert api.client.get("/metrics").status_code == 401
        assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = api.client.get("/metrics", headers={"Authorization": "Bearer metrics-secret-123"})
        assert allowed.status_code == 200 and b"twincity_http_request_seconds" in allowed.get_data()
        assert api.client.get("/healthz").status_code == 200, "health stays open (probes carry no token)"


# --- what the second review found (pages, CLI, stored names) --------------------------------------------

def test_a_bad_tag_on_the_idea_form_is_named_item_by_item_in_the_visitor_s_language(lab):
    api, _demo, _keys = lab
    lena = Browser(api.platform.gateway, "de")
    lena.sign_in("lena.hoffmann@example.org")
    lena.get("/ideas/new")
    answer = lena.post("/ideas/new", {"title": "Radtour", "theme": "ecology-health", "tags": "rad, gut\u202ebös"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "Eintrag 2: Bitte eine Zeile reiner Text: U+202E (RIGHT-TO-LEFT OVERRIDE) an Stelle 4" in page, page[-2000:]


def test_a_bad_tag_in_a_csv_import_is_named_in_the_coordinator_s_language(lab):
    api, demo, _keys = lab
    coordinator = Browser(api.platform.gateway, "de")
    coordinator.coordinator(demo.city_keys["karlsruhe"])
    text = 'title,theme,tags\nRadtour,ecology-health,"rad,gut\u200bbös"\n'
    answer = coordinator.post("/coordinator/import", {"text": text})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "Eintrag 2: Bitte eine Zeile reiner Text: U+200B" in page, page[-2000:]


def test_the_preferences_page_marks_bad_interests(lab):
    api, _demo, _keys = lab
    lena = Browser(api.platform.gateway, "en")
    lena.sign_in("lena.hoffmann@example.org")
    lena.get("/preferences")
    answer = lena.post("/preferences", {"language": "en", "interests": "Gärten \u202eund Radwege",
                                        "channel_email": "on", "digest": "immediate"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and 'id="interests-error"' in page and "U+202E" in page


def test_a_name_stored_before_the_rules_still_gets_its_sign_in_link(lab):
    api, demo, _keys = lab
    ideas = api.platform.runtime("ideas").db["participants"]
    person = demo.participants["karlsruhe"][1]
    ideas.update_one({"_id": person}, {"$set": {"name": "Jonas\u2028Weber"}})
    email = ideas.find_one({"_id": person})["email"]
    visitor = Browser(api.platform.gateway, "en")
    visitor.get("/signin")
    assert visitor.post("/signin", {"email": email}).status_code == 302
    assert 'class="signin-link"' in visitor.text("/signin/sent")


def test_the_admin_commands_hold_names_and_labels_to_one_line_and_keep_the_last_admin_key():
    from click.testing import CliRunner

    from twincity.cli import main

    env = {"MONGO_URL": "mongomock://cli-hardening", "TWINCITY_MEMORY_STORE": "1", "TWINCITY_ADMIN_KEY": ""}
    run = CliRunner()
    try:
        empty = run.invoke(main, ["admin", "list"], env=env)
        assert empty.exit_code == 0 and "no cities, partnerships or keys yet" in empty.output
        for city in ("karlsruhe", "krasnodar"):
            assert run.invoke(main, ["admin", "create-city", city, "--name", city.title(), "--country", "DE",
                                     "--language", "de"], env=env).exit_code == 0
        bad = run.invoke(main, ["admin", "create-partnership", "karlsruhe", "krasnodar", "--name", "Twin\u2028Lab"],
                         env=env)
        assert bad.exit_code == 1 and "U+2028" in bad.output
        label = run.invoke(main, ["admin", "create-key", "--admin", "--label", "ops\u202e"], env=env)
        assert label.exit_code == 1 and "U+202E" in label.output
        made = run.invoke(main, ["admin", "create-key", "--admin", "--label", "ops"], env=env)
        key_id = re.search(r"id:\s+(\S+)", made.output).group(1)
        last = run.invoke(main, ["admin", "revoke-key", key_id], env=env)
        assert last.exit_code == 1 and "last active admin key" in last.output
        # The CLI runs the same use cases as the API: the same rules, said plainly.
        nowhere = run.invoke(main, ["admin", "create-key", "--city", "nowhere"], env=env)
        assert nowhere.exit_code == 1 and "unknown city 'nowhere'; create it first" in nowhere.output
        both = run.invoke(main, ["admin", "create-key", "--admin", "--city", "karlsruhe", "--scopes", "read"], env=env)
        assert both.exit_code == 2 and "give --admin alone" in both.output
        past = run.invoke(main, ["admin", "create-key", "--city", "karlsruhe", "--expires", "2020-01-01"], env=env)
        assert past.exit_code == 1 and "--expires: must lie in the future" in past.output
        scope = run.invoke(main, ["admin", "create-key", "--city", "karlsruhe", "--scopes", "root"], env=env)
        assert scope.exit_code == 1 and "--scopes: must be some of read, write, admin; got root" in scope.output
        missing = run.invoke(main, ["admin", "revoke-key", "key_nope"], env=env)
        assert missing.exit_code == 1 and "no API key key_nope" in missing.output
        twin = run.invoke(main, ["admin", "create-partnership", "karlsruhe", "karlsruhe", "--name", "Solo"], env=env)
        assert twin.exit_code == 1 and "two different cities" in twin.output
    finally:
        store.forget("mongomock://cli-hardening")


def test_metrics_say_their_content_type_once(lab):
    api, _demo, _keys = lab
    assert api.client.get("/metrics").headers["Content-Type"].count("charset") == 1


def fresh_pair(api: Api, keys: dict[str, str]) -> tuple[str, str]:
    """A Karlsruhe and a Krasnodar idea that resemble nothing, once matching has heard of both and has not paired
    them (should the rules ever propose such a pair, another one is made)."""
    for _ in range(3):
        n = secrets.token_hex(3)
        a = api.ok("POST", "/ideas", keys["karlsruhe"], {
            "title": f"Schachturnier im Park {n}", "theme": "leisure-youth-social",
            "description": "Jeden Sonntag Schach unter den Platanen."})["id"]
        b = api.ok("POST", "/ideas", keys["krasnodar"], {
            "title": f"Ремонт подъездов {n}", "theme": "city-admin-development",
            "description": "Жильцы сами красят стены в подъездах."})["id"]

        def known(a: str = a, b: str = b) -> list[dict[str, Any]]:
            return (api.ok("GET", f"/ideas/{a}/candidates?limit=50", keys["karlsruhe"])["items"]
                    and api.ok("GET", f"/ideas/{b}/candidates?limit=50", keys["krasnodar"])["items"])

        wait_for(known, 20, message="matching to know them")
        api.settle()
        if not api.ok("GET", f"/ideas/{a}/matches", keys["karlsruhe"])["items"]:
            return a, b
    raise AssertionError("every fresh pair got a proposal")


@pytest.mark.parametrize("kind", ["read", "read+write", "revoked"])
def test_pairing_and_withdrawing_from_the_matrix_by_key_kind(lab, kind):
    api, _demo, keys = lab
    coordinator = coordinator_with(api, kind, "matrix", before_revoking="/coordinator/matrix")
    a, b = fresh_pair(api, keys)
    c, d = fresh_pair(api, keys)
    open_match = api.ok("POST", "/matches", keys["krasnodar"], {"ideas": [d, c], "note": "zum Zurückziehen"})

    paired = coordinator.post("/coordinator/pair", {"a": a, "b": b, "note": "Beide draußen"})
    withdrawn = coordinator.post(f"/coordinator/matches/{open_match['id']}/withdraw", {"reason": "Doppelt"})
    for answer in (paired, withdrawn):
        assert answer.status_code == 302
        if kind == "revoked":
            assert "/coordinator/signin" in answer.headers["Location"]
    said = coordinator.text("/coordinator/matrix") if kind != "revoked" else ""
    pairs = [m for m in api.ok("GET", f"/ideas/{a}/matches", keys["karlsruhe"])["items"]]
    status = api.ok("GET", f"/matches/{open_match['id']}", keys["karlsruhe"])["status"]
    if kind == "read+write":
        assert [m["kind"] for m in pairs] == ["coordinator"] and status == "withdrawn"
        assert "The proposal is withdrawn" in said or "are proposed to each other" in said
    else:
        assert pairs == [] and status == "proposed"
    if kind == "read":
        assert "could not be" in said and "may only read" in said, said[-800:]
