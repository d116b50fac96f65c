"""The public API end to end: cities, partnerships, keys, participants and ideas, through the gateway.

Each test runs twice: on memory:// and with the real RabbitMQ between the services (see conftest.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import wait_for
from tests.e2e.conftest import Api
from twincity.cli import main

IDEA_DE = {"title": "Urban Gardening am Rhein",
           "description": "Gemeinschaftsgärten für das Klima und die Nachbarschaft",
           "theme": "ecology-health", "tags": ["Garten", "klima"], "seeks": ["Partner in Krasnodar"],
           "offers": ["Saatgut"]}
IDEA_RU = {"title": "Апсайклинг в Краснодаре", "description": "Мастерские для молодёжи: вторая жизнь старых вещей",
           "theme": "ecology-health", "tags": ["upcycling"]}


def ideas_in_store(api: Api) -> int:
    return api.platform.runtime("ideas").db["ideas"].count_documents({})


# --- cities, partnerships, keys --------------------------------------------------------------------------

def test_cities_partnerships_and_keys_by_api(api: Api):
    keys = api.lab()
    assert [c["key"] for c in api.ok("GET", "/cities")["items"]] == ["dijon", "karlsruhe", "krasnodar", "nancy"]
    # A city key sees its own city and its partners, nothing of the Dijon–Nancy partnership's Dijon.
    assert [c["key"] for c in api.ok("GET", "/cities", keys["krasnodar"])["items"]] == ["karlsruhe", "krasnodar"]
    assert [p["id"] for p in api.ok("GET", "/partnerships", keys["karlsruhe"])["items"]] == [
        "karlsruhe-krasnodar", "karlsruhe-nancy"]
    themes = api.ok("GET", "/themes?partnership=karlsruhe-krasnodar", keys["krasnodar"])["items"]
    assert [t["key"] for t in themes] == ["ecology-health", "innovation-economy", "leisure-youth-social",
                                          "city-admin-development", "twin-sports"]
    assert themes[0]["labels"] == {"de": "Ökologie & Gesundheit", "ru": "Экология и здоровье", "en": "Ecology & health"}
    api.settle()
    assert api.observer.types()["city.registered"] == 4 and api.observer.types()["partnership.formed"] == 3
    formed = api.observer.of("partnership.formed", partnership_id="karlsruhe-krasnodar")[0]
    assert [t["key"] for t in formed.payload["themes"]][-2:] == ["city-admin-development", "twin-sports"]


def test_admin_resources_refuse_bad_input_and_duplicates(api: Api):
    keys = api.lab()
    assert api.call("POST", "/cities", body={"key": "karlsruhe", "name": "K", "country": "DE",
                                             "language": "de"}).status_code == 409
    r = api.call("POST", "/cities", body={"key": "Bad Key", "name": "", "country": "Germany", "language": "xx",
                                          "names": {"Russian": "Карлсруэ", "ru": "line\u2028break"}})
    assert r.status_code == 422 and set(r.json_body["errors"]) == {"key", "name", "country", "language", "names"}
    city = api.ok("POST", "/cities", body={"key": "brest", "name": "Brest", "country": "BY", "language": "ru",
                                           "names": {"ru": "Брест", "de": "Brest"}})
    assert city["names"] == {"ru": "Брест", "de": "Brest"}
    api.settle()
    assert api.observer.of("city.registered", city="brest")[0].payload["names"] == {"ru": "Брест", "de": "Brest"}
    renamed = api.ok("PATCH", "/cities/brest", body={"names": {"ru": "Брест", "de": "Brest", "en": "Brest"}})
    assert renamed["names"]["en"] == "Brest" and renamed["name"] == "Brest"
    assert api.call("PATCH", "/cities/brest", keys["karlsruhe"], {"name": "x"}).status_code == 403
    assert api.call("PATCH", "/cities/atlantis", body={"name": "x"}).status_code == 404
    assert api.call("PATCH", "/cities/brest", body={"names": {"Russian": "Брест"}}).status_code == 422
    api.settle()
    assert api.observer.of("city.updated", city="brest")[0].payload["names"]["en"] == "Brest"
    assert api.call("POST", "/partnerships", body={"cities": ["krasnodar", "karlsruhe"],
                                                   "name": "again"}).status_code == 409
    r = api.call("POST", "/partnerships", body={"cities": ["karlsruhe", "atlantis"], "name": "x"})
    assert r.status_code == 422 and "atlantis" in r.json_body["detail"]
    r = api.call("POST", "/api-keys", body={"city": "atlantis", "scopes": ["read"]})
    assert r.status_code == 422 and "atlantis" in str(r.json_body["errors"])
    assert api.call("POST", "/cities", keys["karlsruhe"], {"key": "x", "name": "x", "country": "DE",
                                                            "language": "de"}).status_code == 403


def test_cities_partnerships_and_keys_by_cli(api: Api, monkeypatch: pytest.MonkeyPatch):
    # The CLI writes to the gateway's store (here the in-memory one this process shares); the running
    # gateway's relay publishes what it caused.
    settings = api.platform.settings
    env = {"MONGO_URL": settings.mongo_url, "TWINCITY_MEMORY_STORE": "1", "AMQP_URL": settings.amqp_url,
           "TWINCITY_EXCHANGE": settings.exchange, "TWINCITY_NAMESPACE": settings.namespace}
    run = CliRunner().invoke
    for args in (["admin", "create-city", "karlsruhe", "--name", "Karlsruhe", "--country", "DE", "--language", "de"],
                 ["admin", "create-city", "krasnodar", "--name", "Краснодар", "--country", "RU", "--language", "ru"],
                 ["admin", "create-partnership", "karlsruhe", "krasnodar", "--name", "KA–KR"]):
        result = run(main, args, env=env)
        assert result.exit_code == 0, result.output
    result = run(main, ["admin", "create-key", "--city", "krasnodar", "--scopes", "read,write"], env=env)
    assert result.exit_code == 0, result.output
    secret = next(line.split()[1] for line in result.output.splitlines() if line.startswith("key:"))
    assert [c["key"] for c in api.ok("GET", "/cities", secret)["items"]] == ["karlsruhe", "krasnodar"]
    bad = run(main, ["admin", "create-city", "x", "--name", "X", "--country", "Xland", "--language", "de"], env=env)
    assert bad.exit_code != 0 and "country" in bad.output
    again = run(main, ["admin", "create-partnership", "karlsruhe", "krasnodar", "--name", "dup"], env=env)
    assert again.exit_code != 0 and "twinned already" in again.output
    listing = run(main, ["admin", "list"], env=env).output
    assert "karlsruhe-krasnodar" in listing and secret not in listing
    api.settle()
    assert api.observer.types()["partnership.formed"] == 1


def test_admin_cli_refuses_an_in_memory_store_by_default():
    result = CliRunner().invoke(main, ["admin", "list"], env={"MONGO_URL": "mongomock://"})
    assert result.exit_code != 0 and "nothing would be kept" in result.output


# --- ideas ---------------------------------------------------------------------------------------------

def test_submit_list_filter_page_update_and_withdraw(api: Api):
    keys = api.lab()
    author = api.ok("POST", "/participants", keys["karlsruhe"],
                    {"name": "Jonas", "email": "jonas@example.org", "language": "de"})["id"]
    de = api.call("POST", "/ideas", keys["karlsruhe"], {**IDEA_DE, "author_id": author})
    assert de.status_code == 201 and de.headers["Location"] == f"/api/v1/ideas/{de.json_body['id']}"
    idea = de.json_body
    assert (idea["status"], idea["city"], idea["language"], idea["language_detected"]) == ("open", "karlsruhe",
                                                                                          "de", True)
    assert idea["partnerships"] == ["karlsruhe-krasnodar", "karlsruhe-nancy"] and idea["tags"] == ["garten", "klima"]
    ru = api.ok("POST", "/ideas", keys["krasnodar"], IDEA_RU)
    assert ru["language"] == "ru"
    fr = api.ok("POST", "/ideas", keys["nancy"], {"title": "Jardins partagés pour les jeunes de la ville",
                                                  "theme": "ecology-health"})
    assert fr["language"] == "fr"
    sport = api.ok("POST", "/ideas", keys["krasnodar"], {"title": "Футбольный турнир", "theme": "twin-sports",
                                                         "language": "ru"})
    assert sport["language_detected"] is False

    listed = api.ok("GET", "/ideas", keys["karlsruhe"])["items"]
    assert [i["id"] for i in listed] == [sport["id"], fr["id"], ru["id"], idea["id"]], "newest first, partners' too"
    assert [i["id"] for i in api.ok("GET", "/ideas?city=krasnodar&theme=ecology-health", keys["karlsruhe"])[
        "items"]] == [ru["id"]]
    assert [i["id"] for i in api.ok("GET", "/ideas?language=de", keys["krasnodar"])["items"]] == [idea["id"]]
    assert [i["id"] for i in api.ok("GET", "/ideas?q=GÄRTEN", keys["krasnodar"])["items"]] == [idea["id"]]
    assert [i["id"] for i in api.ok("GET", "/ideas?q=garten", keys["krasnodar"])["items"]] == [idea["id"]], "tags"
    assert api.ok("GET", "/ideas?city=nancy", keys["krasnodar"])["items"] == [], "not a partner city"

    page1 = api.ok("GET", "/ideas?limit=2", keys["karlsruhe"])
    page2 = api.ok("GET", f"/ideas?limit=2&cursor={page1['next_cursor']}", keys["karlsruhe"])
    assert [i["id"] for i in page1["items"] + page2["items"]] == [i["id"] for i in listed]
    assert page2["next_cursor"] is None

    changed = api.ok("PATCH", f"/ideas/{idea['id']}", keys["karlsruhe"],
                     {"title": "Urban Gardening am Rhein und Kuban", "version": 1})
    assert changed["version"] == 2 and changed["title"].endswith("Kuban")
    stale = api.call("PATCH", f"/ideas/{idea['id']}", keys["karlsruhe"], {"title": "Alt", "version": 1})
    assert stale.status_code == 409 and "version 2" in stale.json_body["detail"]
    withdrawn = api.ok("POST", f"/ideas/{idea['id']}/withdraw", keys["karlsruhe"])
    assert withdrawn["status"] == "withdrawn" and withdrawn["version"] == 3
    assert api.call("POST", f"/ideas/{idea['id']}/withdraw", keys["karlsruhe"]).status_code == 409
    assert api.call("PATCH", f"/ideas/{idea['id']}", keys["karlsruhe"], {"title": "Neu"}).status_code == 409
    assert [i["id"] for i in api.ok("GET", "/ideas?status=withdrawn", keys["krasnodar"])["items"]] == [idea["id"]]


def test_every_change_produces_exactly_one_event(api: Api):
    keys = api.lab()
    k = keys["karlsruhe"]
    person = api.ok("POST", "/participants", k, {"name": "Lena", "email": "lena@example.org", "language": "de"})
    api.ok("PATCH", f"/participants/{person['id']}", k, {"interests": "Start-ups, Netzwerke"})
    idea = api.ok("POST", "/ideas", k, {**IDEA_DE, "author_id": person["id"]})
    api.ok("PATCH", f"/ideas/{idea['id']}", k, {"tags": ["garten", "klima", "jugend"]})
    api.ok("PATCH", f"/ideas/{idea['id']}", k, {"tags": ["garten", "klima", "jugend"]})  # no change: no event
    api.ok("POST", f"/ideas/{idea['id']}/withdraw", k)
    assert api.call("DELETE", f"/participants/{person['id']}", k).status_code == 204
    api.settle()

    counted = {t: n for t, n in api.observer.types().items() if t.startswith(("idea.", "participant."))}
    assert counted == {"participant.registered": 1, "participant.updated": 1, "participant.erased": 1,
                       "idea.submitted": 1, "idea.updated": 1, "idea.withdrawn": 1}
    updated = api.observer.of("idea.updated")[0]
    assert updated.payload["changed"] == ["tags"] and updated.payload["version"] == 2
    submitted = api.observer.of("idea.submitted")[0]
    assert submitted.producer == "ideas" and submitted.city == "karlsruhe"
    assert submitted.payload["idea_id"] == idea["id"] and submitted.payload["author_id"] == person["id"]
    # The erasure reached the ideas service's own handler: the idea stays, without its author.
    wait_for(lambda: api.ok("GET", f"/ideas/{idea['id']}", k)["author_id"] is None, message="the anonymized idea")
    assert api.call("GET", f"/participants/{person['id']}", k).status_code == 404


def test_request_id_becomes_the_events_correlation_id(api: Api):
    keys = api.lab()
    r = api.call("POST", "/ideas", keys["karlsruhe"], IDEA_DE, headers={"X-Request-ID": "workshop-board-42"})
    assert r.status_code == 201 and r.headers["X-Request-ID"] == "workshop-board-42"
    api.settle()
    assert api.observer.of("idea.submitted")[0].correlation_id == "workshop-board-42"


# --- who may do what -------------------------------------------------------------------------------------

def test_keys_and_scopes(api: Api):
    keys = api.lab()
    assert api.call("GET", "/ideas", key=None).status_code == 401
    r = api.call("GET", "/ideas", key="tcl_not-a-key")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.mimetype == "application/problem+json"
    assert api.call("GET", "/ideas", key=None, headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert api.call("GET", "/ideas", keys["karlsruhe-read"]).status_code == 200
    r = api.call("POST", "/ideas", keys["karlsruhe-read"], IDEA_DE)
    assert r.status_code == 403 and "write" in r.json_body["detail"]
    escalate = api.call("POST", "/api-keys", keys["karlsruhe"], {"city": "karlsruhe", "scopes": ["admin"]})
    assert escalate.status_code == 403
    city_admin = api.call("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read", "admin"]})
    assert city_admin.status_code == 422
    assert "admin key belongs to no city" in city_admin.json_body["errors"]["scopes"][0]
    key_id = next(k["id"] for k in api.ok("GET", "/api-keys")["items"] if k["scopes"] == ["read"])
    assert api.call("DELETE", f"/api-keys/{key_id}").status_code == 204
    assert api.call("GET", "/ideas", keys["karlsruhe-read"]).status_code == 401, "revoked"
    assert all("key" not in k for k in api.ok("GET", "/api-keys")["items"]), "secrets are never listed"
    made = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"], "label": "Stadtportal"})
    listed = next(k for k in api.ok("GET", "/api-keys")["items"] if k["id"] == made["id"])
    assert made == {**listed, "key": made["key"]}, "the new key is shown as it is listed, with its secret this once"


def test_partnerships_bound_what_a_key_sees_and_changes(api: Api):
    keys = api.lab()
    ka = api.ok("POST", "/ideas", keys["karlsruhe"], IDEA_DE)
    kr = api.ok("POST", "/ideas", keys["krasnodar"], IDEA_RU)
    dj = api.ok("POST", "/ideas", keys["dijon"], {"title": "Vélo pour tous", "theme": "ecology-health"})
    assert api.call("GET", f"/ideas/{kr['id']}", keys["karlsruhe"]).status_code == 200, "partner city reads"
    assert api.call("GET", f"/ideas/{kr['id']}", keys["nancy"]).status_code == 404, "another partnership's idea"
    assert api.call("GET", f"/ideas/{dj['id']}", keys["krasnodar"]).status_code == 404
    r = api.call("PATCH", f"/ideas/{ka['id']}", keys["krasnodar"], {"title": "Übernommen"})
    assert r.status_code == 403 and "karlsruhe" in r.json_body["detail"], "partners read but do not change"
    assert api.call("POST", f"/ideas/{ka['id']}/withdraw", keys["krasnodar"]).status_code == 403
    assert api.call("PATCH", f"/ideas/{dj['id']}", keys["krasnodar"], {"title": "x"}).status_code == 404
    r = api.call("POST", "/ideas", keys["krasnodar"], {**IDEA_RU, "city": "karlsruhe"})
    assert r.status_code == 403, "a city key cannot write for another city"
    r = api.call("POST", "/ideas", keys["nancy"], {**IDEA_RU, "theme": "twin-sports"})
    assert r.status_code == 422 and "twin-sports" in r.json_body["errors"]["theme"][0], "only KA–KR has this theme"
    admin = api.call("POST", "/ideas", body={**IDEA_DE, "city": "dijon"})
    assert admin.status_code == 201 and admin.json_body["city"] == "dijon"
    assert api.call("POST", "/ideas", body=IDEA_DE).status_code == 422, "an admin key names the city"


def test_participants_email_stays_in_its_city(api: Api):
    keys = api.lab()
    p = api.ok("POST", "/participants", keys["karlsruhe"],
               {"name": "Miriam", "email": "miriam@example.org", "language": "en", "interests": "Festivals"})
    assert api.ok("GET", f"/participants/{p['id']}", keys["karlsruhe"])["email"] == "miriam@example.org"
    seen = api.ok("GET", f"/participants/{p['id']}", keys["krasnodar"])
    assert "email" not in seen and seen["name"] == "Miriam"
    assert api.call("GET", f"/participants/{p['id']}", keys["dijon"]).status_code == 404
    assert api.call("PATCH", f"/participants/{p['id']}", keys["krasnodar"], {"name": "x"}).status_code == 403
    assert api.call("DELETE", f"/participants/{p['id']}", keys["krasnodar"]).status_code == 403
    dup = api.call("POST", "/participants", keys["karlsruhe"], {"name": "M2", "email": "MIRIAM@example.org",
                                                                 "language": "de"})
    assert dup.status_code == 409
    assert api.call("POST", "/participants", keys["krasnodar"], {"name": "M3", "email": "miriam@example.org",
                                                                  "language": "ru"}).status_code == 201
    r = api.call("POST", "/ideas", keys["krasnodar"], {**IDEA_RU, "author_id": p["id"]})
    assert r.status_code == 422 and "author_id" in r.json_body["errors"], "the author must be of the idea's city"


# --- bad input: a clear 4xx, nothing stored ----------------------------------------------------------------

BAD_IDEAS = [
    ("malformed JSON", dict(raw=b'{"title": "x",'), 400),
    ("lone surrogate", dict(raw=b'{"title": "Radtour \\ud800", "theme": "ecology-health"}'), 400),
    ("lone surrogate, upper case", dict(raw=b'{"title": "Radtour \\uDFFF", "theme": "ecology-health"}'), 400),
    ("not an object", dict(body=["a list"]), 400),
    ("form instead of JSON", dict(raw=b"title=x", content_type="application/x-www-form-urlencoded"), 415),
    ("wrong types", dict(body={"title": 5, "theme": ["ecology-health"], "tags": "garten"}), 422),
    ("missing fields", dict(body={}), 422),
    ("unknown theme", dict(body={**IDEA_DE, "theme": "astronautics"}), 422),
    ("unknown language", dict(body={**IDEA_DE, "language": "klingon"}), 422),
    ("unknown field", dict(body={**IDEA_DE, "status": "in_project"}), 422),
    ("operator in a field", dict(body={**IDEA_DE, "title": {"$gt": ""}}), 422),
    ("operator as a key", dict(body={**IDEA_DE, "$where": "sleep(1000)"}), 422),
    ("title too long", dict(body={**IDEA_DE, "title": "x" * 201}), 422),
    ("line break in the title", dict(body={**IDEA_DE, "title": "Zeile eins\r\nBcc: evil@example.org"}), 422),
    ("NUL in a tag", dict(body={**IDEA_DE, "tags": ["gar\u0000ten"]}), 422),
    ("NUL in the description", dict(body={**IDEA_DE, "description": "Zeile\nzwei\u0000"}), 422),
    ("1 MB title", dict(body={**IDEA_DE, "title": "x" * 1_000_000}), 413),
    ("too many tags", dict(body={**IDEA_DE, "tags": [f"t{i}" for i in range(30)]}), 422),
]


@pytest.mark.parametrize(("case", "request_kwargs", "status"), BAD_IDEAS, ids=[c[0] for c in BAD_IDEAS])
def test_bad_input_gets_a_problem_and_stores_nothing(api: Api, case, request_kwargs, status):
    keys = api.lab()
    response = api.call("POST", "/ideas", keys["karlsruhe"], **request_kwargs)
    assert response.status_code == status, response.json_body
    assert response.mimetype == "application/problem+json"
    assert response.json_body["detail"] and response.json_body["status"] == status
    if status == 413:
        assert "limit of 262,144 bytes (TWINCITY_MAX_BODY" in response.json_body["detail"]
    assert ideas_in_store(api) == 0
    api.settle()
    assert not api.observer.of("idea.submitted")


def test_a_title_too_short_to_tell_its_language_is_in_its_author_s(api: Api):
    keys = api.lab()
    lena = api.ok("POST", "/participants", keys["karlsruhe"], {"name": "Lena", "language": "de"})
    idea = {"title": "Radtour Karlsruhe–Krasnodar", "theme": "leisure-youth-social"}
    assert api.ok("POST", "/ideas", keys["karlsruhe"], {**idea, "author_id": lena["id"]})["language"] == "de"
    created = api.ok("POST", "/ideas", keys["karlsruhe"], idea)
    assert created["language"] == "en", "no author: English"
    read = api.ok("GET", f"/ideas/{created['id']}", keys["karlsruhe"])
    assert read["created_at"] == created["created_at"], "the time as stored (to the millisecond), in both answers"


def test_one_answer_names_every_error_of_an_idea(api: Api):
    """Field errors and the city's own checks (theme, author) in one 422, not one kind at a time."""
    keys = api.lab()
    r = api.call("POST", "/ideas", keys["karlsruhe"], {"title": "ab", "theme": "bogus", "author_id": "prt_nobody",
                                                      "tags": "not-a-list"})
    assert r.status_code == 422 and set(r.json_body["errors"]) == {"title", "theme", "author_id", "tags"}
    assert "unknown theme 'bogus'" in r.json_body["errors"]["theme"][0]
    padded = api.call("POST", "/ideas", keys["karlsruhe"], {"title": "ab", "theme": " ecology-health "})
    assert padded.status_code == 422 and set(padded.json_body["errors"]) == {"title"}, "a padded theme is fine"
    assert ideas_in_store(api) == 0
    # "webhook" was once taken as a person's channel (it did nothing): preferences read back with it still save.
    person = api.ok("POST", "/participants", keys["karlsruhe"], {"name": "Jonas", "language": "de",
                                                                 "preferences": {"channels": ["email", "webhook"]}})
    assert person["preferences"]["channels"] == ["email"]


def test_bad_queries_and_paths_are_problems_too(api: Api):
    keys = api.lab()
    k = keys["karlsruhe"]
    for path, status in (("/ideas?limit=0", 422), ("/ideas?limit=lots", 422), ("/ideas?status=done", 422),
                         ("/ideas?city[$ne]=x", 422), ("/ideas?city=a&city=b", 422), ("/ideas/nope", 404),
                         ("/nowhere", 404), ("/themes?partnership=dijon-nancy", 404)):
        r = api.call("GET", path, k)
        assert (r.status_code, r.mimetype) == (status, "application/problem+json"), path
    assert api.call("PATCH", "/ideas/nope", k, {"title": "abc"}).status_code == 404


def test_openapi_document_and_docs_page_describe_the_api(api: Api):
    from openapi_spec_validator import validate

    spec = api.client.get("/api/v1/openapi.json").json
    validate(spec)  # a valid OpenAPI 3 document, not just JSON that looks like one
    for path in ("/api/v1/cities", "/api/v1/partnerships", "/api/v1/api-keys", "/api/v1/themes",
                 "/api/v1/ideas", "/api/v1/ideas/{idea_id}", "/api/v1/ideas/{idea_id}/withdraw",
                 "/api/v1/participants", "/api/v1/participants/{participant_id}"):
        assert path in spec["paths"], path
    assert "IdeaIn" in spec["components"]["schemas"] and "Problem" in spec["components"]["schemas"]
    page = api.client.get("/docs")
    assert page.status_code == 200 and b"/api/v1/ideas" in page.data and b"Submit an idea" in page.data
    assert b"Needs the <code>admin</code> scope." in page.data and b"`" not in page.data, "Markdown code as code"


def test_every_operation_has_an_id_a_tag_an_answer_with_a_fitting_example_and_its_errors(api: Api):
    """What a client generator and a developer reading /docs need of each operation (the issue of the first hour)."""
    import jsonschema

    from gateway.apidocs import TAGS

    spec = api.client.get("/api/v1/openapi.json").json
    tags = [tag["name"] for tag in spec["tags"]]
    assert tags == [name for name, _ in TAGS] and tags[0] == "Ideas" and tags[-2:] == ["API keys", "Audit"]
    components = nullable_as_json_schema(spec["components"])
    ids, wrong = [], []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            ids.append(op.get("operationId"))
            if op.get("tags", [None])[0] not in tags:
                wrong.append(f"{where}: tag {op.get('tags')} is not one of the document's tags")
            success = [status for status in op["responses"] if status.startswith("2")]
            if len(success) != 1:
                wrong.append(f"{where}: success answers {success}")
                continue
            if not {"401", "403", "404", "422", "429", "503"} <= set(op["responses"]):
                wrong.append(f"{where}: error answers missing from {sorted(op['responses'])}")
            content = op["responses"][success[0]].get("content", {}).get("application/json")
            if success[0] == "204":
                continue
            if not content or "schema" not in content or "example" not in content:
                wrong.append(f"{where}: {success[0]} without a schema and an example (scripts/openapi-examples)")
                continue
            schema = {**nullable_as_json_schema(content["schema"]), "components": components}
            for error in jsonschema.Draft7Validator(schema).iter_errors(content["example"]):
                wrong.append(f"{where}: the example does not fit its schema at {list(error.path)}: {error.message}")
    assert None not in ids and len(ids) == len(set(ids)), "every operation has an operationId of its own"
    assert not wrong, "\n".join(wrong)
    page = api.client.get("/docs").get_data(as_text=True)
    toc, first_section = page.index('id="contents"'), page.index('<section><h2 id="ideas">')
    assert toc < first_section < page.index('id="api-keys"') < page.index('id="audit"'), "contents, then by tag"
    assert 'href="#acceptMatch"' in page and "operationId <code>acceptMatch</code>" in page and "Example" in page
    listing = page[page.index('id="listIdeas"'):page.index('id="readIdea"')]
    assert "<code>city</code>" in listing and "<code>cursor</code>" in listing, "query parameters are listed"
    assert 'curl -sg &#34;' in listing and '/api/v1/ideas&#34; -H' in listing, "each example as a curl line"


def nullable_as_json_schema(value: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema's type list (for jsonschema to check examples)."""
    if isinstance(value, list):
        return [nullable_as_json_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: nullable_as_json_schema(v) for k, v in value.items() if k != "nullable"}
    if value.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    elif value.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


# --- reactions to other services' events ----------------------------------------------------------------

def test_ideas_move_on_when_a_match_is_confirmed_and_a_project_forms(api: Api):
    from services import bus, outbox
    from services.contract import new_event

    keys = api.lab()
    ka = api.ok("POST", "/ideas", keys["karlsruhe"], IDEA_DE)
    kr = api.ok("POST", "/ideas", keys["krasnodar"], IDEA_RU)
    sides = [{"city": "karlsruhe", "idea_id": ka["id"]}, {"city": "krasnodar", "idea_id": kr["id"]}]
    # Events as the matching service will publish them, through an outbox of a stand-in writer.
    confirmed = new_event("match.confirmed", {"match_id": "m1", "partnership": "karlsruhe-krasnodar",
                                              "status": "confirmed", "sides": sides, "version": 3},
                          producer="matching")
    formed = new_event("project.formed", {"project_id": "p1", "match_id": "m1", "partnership": "karlsruhe-krasnodar",
                                          "idea_ids": [ka["id"], kr["id"]]}, producer="matching")
    db = api.platform.runtime("matching").db
    relay = outbox.Relay("stand-in", db, ["stand_in"], lambda: bus.make_publisher(api.platform.settings))
    db["stand_in"].insert_one(outbox.with_events({"_id": "m1"}, [confirmed, confirmed]))  # delivered twice
    relay.relay_once()
    wait_for(lambda: api.ok("GET", f"/ideas/{kr['id']}", keys["krasnodar"])["status"] == "matched",
             message="match.confirmed to move the ideas to matched")
    db["stand_in"].insert_one(outbox.with_events({"_id": "p1"}, [formed]))
    relay.relay_once()
    relay.stop()
    wait_for(lambda: api.ok("GET", f"/ideas/{ka['id']}", keys["karlsruhe"])["status"] == "in_project",
             message="project.formed to move the ideas into the project")
    api.settle()
    statuses = [e.payload["status"] for e in api.observer.of("idea.updated", idea_id=ka["id"])]
    assert statuses == ["matched", "in_project"], "one event per move, none for the duplicate"
    assert api.ok("GET", f"/ideas/{ka['id']}", keys["karlsruhe"])["version"] == 3
