"""The edge: rate limits, key rotation and last use, the audit log (embedded platform, in-process)."""

from __future__ import annotations

import time

from click.testing import CliRunner

from tests.conftest import wait_for
from tests.e2e.conftest import ADMIN, running_platform
from twincity.cli import main


def test_rate_limit_per_key_answers_429_with_retry_after():
    with running_platform("memory://", rate_limit="5/minute") as api:
        keys = api.lab()  # admin calls count against the admin key only
        remaining = []
        for _ in range(5):
            r = api.call("GET", "/ideas", keys["karlsruhe"])
            assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "5" and "Retry-After" not in r.headers
            remaining.append(int(r.headers["X-RateLimit-Remaining"]))
            assert int(r.headers["X-RateLimit-Reset"]) > time.time()
        assert remaining == [4, 3, 2, 1, 0]
        r = api.call("GET", "/ideas", keys["karlsruhe"])
        assert r.status_code == 429 and r.mimetype == "application/problem+json"
        assert int(r.headers["Retry-After"]) > 0 and r.headers["X-RateLimit-Limit"] == "5"
        assert "5 per 1 minute" in r.json_body["detail"]
        assert api.call("GET", "/ideas", keys["krasnodar"]).status_code == 200, "another key has its own budget"
        assert api.client.get("/healthz").status_code == 200, "health checks are never limited"


def test_keys_rotate_and_show_when_they_were_last_used():
    with running_platform("memory://") as api:
        keys = api.lab()
        api.ok("GET", "/ideas", keys["krasnodar"])
        listed = {k["city"]: k for k in api.ok("GET", "/api-keys")["items"] if k["scopes"] == ["read", "write"]}
        kr = listed["krasnodar"]
        assert kr["last_used_at"] is not None and listed["dijon"]["last_used_at"] is None
        rotated = api.ok("POST", f"/api-keys/{kr['id']}/rotate")
        assert rotated["id"] == kr["id"] and rotated["key"] != keys["krasnodar"] and rotated["rotated_at"]
        assert api.call("GET", "/ideas", keys["krasnodar"]).status_code == 401, "the old secret stops at once"
        assert api.call("GET", "/ideas", rotated["key"]).status_code == 200
        assert api.call("POST", "/api-keys/key_nope/rotate").status_code == 404
        assert api.call("POST", f"/api-keys/{kr['id']}/rotate", rotated["key"]).status_code == 403


def test_admin_changes_are_in_the_audit_log_readable_by_admins_only():
    with running_platform("memory://") as api:
        keys = api.lab()
        api.ok("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"top_k": 4})
        entries = api.ok("GET", "/audit?limit=100")["items"]
        actions = [e["action"] for e in entries]
        assert actions[0] == "PUT /api/v1/<path:rest>" and entries[0]["target"].endswith("/matching")
        assert actions.count("POST /api/v1/cities") == 4 and actions.count("POST /api/v1/api-keys") == 5
        assert all(e["request_id"] and e["status"] < 300 for e in entries)
        admin_id = next(k["id"] for k in api.ok("GET", "/api-keys")["items"] if k["label"] == "TWINCITY_ADMIN_KEY")
        assert {e["key_id"] for e in entries} == {admin_id}
        assert api.call("GET", "/audit", keys["karlsruhe"]).status_code == 403
        page = api.ok("GET", "/audit?limit=3")
        assert len(page["items"]) == 3 and page["next_cursor"]
        # Operator commands land in the same log.
        env = {"MONGO_URL": api.platform.settings.mongo_url, "TWINCITY_MEMORY_STORE": "1"}
        result = CliRunner().invoke(main, ["admin", "create-city", "lyon", "--name", "Lyon", "--country", "FR",
                                           "--language", "fr"], env=env)
        assert result.exit_code == 0, result.output
        latest = api.ok("GET", "/audit?limit=1")["items"][0]
        assert (latest["key_id"], latest["action"], latest["target"]) == ("cli", "admin create-city", "lyon")
        assert ADMIN not in str(entries), "no secret in the log"


def test_an_id_in_a_path_stays_one_segment_on_its_way_to_the_service():
    with running_platform("memory://") as api:
        keys = api.lab()
        idea = api.ok("POST", "/ideas", keys["karlsruhe"], {
            "title": "Radtour Karlsruhe–Krasnodar", "description": "Eine Radtour zwischen den Partnerstädten.",
            "theme": "leisure-youth-social"})
        assert api.call("GET", f"/ideas/{idea['id']}", keys["karlsruhe"]).status_code == 200
        # (An encoded slash is a slash: WSGI decodes the path before any routing.)
        for odd in (f"{idea['id']}%3Fx=1", f"{idea['id']}%23x", f"x%2F..%2F{idea['id']}", f"..%2Fideas%2F{idea['id']}"):
            r = api.call("GET", f"/ideas/{odd}", keys["karlsruhe"])
            assert r.status_code == 404 and r.mimetype == "application/problem+json", (odd, r.status_code)
        assert api.call("GET", "/ideas/../matches", keys["karlsruhe"]).status_code == 404


def test_a_repeated_query_parameter_is_a_clear_422_on_every_service():
    """Every service reads a query parameter once: given twice, the answer names it instead of picking one."""
    with running_platform("memory://") as api:
        keys = api.lab()
        person = api.ok("POST", "/participants", keys["karlsruhe"], {"name": "Anna", "language": "de"})
        idea = api.ok("POST", "/ideas", keys["karlsruhe"], {
            "title": "Radtour", "description": "Eine Radtour zwischen den Partnerstädten.",
            "theme": "leisure-youth-social"})
        ka = keys["karlsruhe"]
        inbox = f"/participants/{person['id']}/notifications"
        # 404 until notify has heard of the person (participant.registered, a moment after the 201).
        wait_for(lambda: api.call("GET", inbox, ka).status_code == 200, 30, message="notify to know the person")
        for path, key, name, value in (
                ("/themes", ka, "partnership", "karlsruhe-krasnodar"),  # the gateway's own
                ("/audit", None, "limit", "5"),  # the gateway's, admin
                ("/ideas", ka, "limit", "5"),  # ideas
                (f"/ideas/{idea['id']}/matches", ka, "status", "proposed"),  # matching
                ("/matches", ka, "limit", "5"),
                ("/projects", ka, "limit", "5"),
                (inbox, ka, "limit", "5")):  # notify
            once = api.call("GET", f"{path}?{name}={value}", *([key] if key else []))
            assert once.status_code == 200, (path, once.status_code, once.json_body)
            twice = api.call("GET", f"{path}?{name}={value}&{name}={value}", *([key] if key else []))
            assert twice.status_code == 422 and twice.mimetype == "application/problem+json", (path, twice.status_code)
            assert twice.json_body["errors"] == {name: ["give this parameter once"]}, (path, twice.json_body)



def test_a_cursor_no_page_gave_and_a_page_size_for_a_whole_list_are_clear_422s():
    """A mistyped cursor is named, not answered with an empty page that looks like the end of the list."""
    with running_platform("memory://", webhook_allow=("127.0.0.0/8",)) as api:
        keys = api.lab()
        ka = keys["karlsruhe"]
        person = api.ok("POST", "/participants", ka, {"name": "Anna", "language": "de"})
        hook = api.ok("POST", "/webhooks", ka, {"url": "http://127.0.0.1:9/hook", "events": ["*"],
                                                "secret": "a-long-enough-secret-0123"})
        inbox = f"/participants/{person['id']}/notifications"
        wait_for(lambda: api.call("GET", inbox, ka).status_code == 200, 30, message="notify to know the person")
        for title in ("Radtour", "Chorreise"):  # two ideas: pages of ideas and of the webhook's deliveries
            api.ok("POST", "/ideas", ka, {"title": title, "theme": "leisure-youth-social"})
        deliveries = f"/webhooks/{hook['id']}/deliveries"
        wait_for(lambda: len(api.ok("GET", deliveries, ka)["items"]) >= 2, 30, message="two deliveries")
        paged = set()
        for path, key in (("/audit", None), ("/ideas", ka), ("/matches", ka), ("/projects", ka), (inbox, ka),
                          (deliveries, ka)):
            for cursor in ("garbage", person["id"]):  # nothing like an id; an id of another kind of thing
                r = api.call("GET", f"{path}?cursor={cursor}", *([key] if key else []))
                assert r.status_code == 422 and "cursor" in r.json_body["errors"], (path, cursor, r.json_body)
            page = api.ok("GET", f"{path}?limit=1", *([key] if key else []))  # a real cursor still works
            if page.get("next_cursor"):
                paged.add(path)
                assert api.call("GET", f"{path}?cursor={page['next_cursor']}", *([key] if key else [])
                                ).status_code == 200, path
        assert {"/audit", "/ideas", deliveries} <= paged
        for path in ("/cities", "/partnerships", "/api-keys"):  # whole lists: a page size is not taken for one
            r = api.call("GET", f"{path}?limit=1")
            assert r.status_code == 422 and "limit" in r.json_body["errors"], (path, r.json_body)


def test_a_404_names_the_kind_of_thing_it_did_not_find():
    with running_platform("memory://") as api:
        keys = api.lab()
        ka = keys["karlsruhe"]
        person = api.ok("POST", "/participants", ka, {"name": "Anna", "language": "de"})
        inbox = f"/participants/{person['id']}/notifications"
        wait_for(lambda: api.call("GET", inbox, ka).status_code == 200, 30, message="notify to know the person")
        for path, key, detail in (
                ("/ideas/idea_0123456789abcdef0123456", ka, "no idea idea_0123456789abcdef0123456 here"),
                (f"/participants/{person['id']}", keys["dijon"], f"no participant {person['id']} here"),
                ("/matches/match_nope", ka, "no match match_nope here"),
                ("/projects/project_nope", ka, "no project project_nope here"),
                ("/partnerships/dijon-nancy/matching", ka, "no partnership dijon-nancy here"),
                (inbox, keys["krasnodar"], f"no participant {person['id']} here"),
                ("/webhooks/whk_nope", ka, "no webhook whk_nope here")):
            r = api.call("GET", path, key)
            assert r.status_code == 404 and r.json_body["detail"] == detail, (path, r.json_body)
