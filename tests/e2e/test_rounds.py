"""A round of a lab through the gateway (issue 21): opened with dates, ideas collected into it, collecting closed
(a late idea is a 409 naming the round), the workshop's matches and projects, and a report whose figures equal
what the test made. Through real RabbitMQ too (amqp)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import Api, Receiver, SmtpServer, running_platform, transport_url
from tests.e2e.test_matching import GARDEN_DE, GARDEN_RU, matches_of

PID = "karlsruhe-krasnodar"


@pytest.fixture(params=["memory", "amqp"])
def hapi(request: pytest.FixtureRequest) -> Iterator[Api]:
    """The platform with webhooks allowed to the loopback receiver."""
    with running_platform(transport_url(request), webhook_allow=("127.0.0.0/8",)) as running:
        yield running


def lab_dates(days: int = 10) -> dict[str, Any]:
    day = datetime.now(UTC).date() + timedelta(days=days)
    return {"collect_until": day.isoformat(), "workshop_at": f"{(day + timedelta(days=2)).isoformat()}T10:00:00+01:00",
            "projects_from": (day + timedelta(days=3)).isoformat(), "timezone": "Europe/Berlin"}


def test_a_round_collects_closes_matches_and_reports_what_happened(hapi: Api, receiver: Receiver):
    api = hapi
    keys = api.lab()
    ka, kr = keys["karlsruhe"], keys["krasnodar"]
    api.ok("POST", "/webhooks", ka, {"url": receiver.url, "secret": "round-hook-secret-0123456789",
                                     "events": ["round.opened", "round.updated", "round.phase_changed",
                                                "round.closed"]})
    opened = api.ok("POST", f"/partnerships/{PID}/rounds", ka, {"name": "Twin City Lab 2O27", **lab_dates()})
    renamed = api.ok("PATCH", f"/rounds/{opened['id']}", kr, {"name": "Twin City Lab 2027", "version": 1})
    assert (renamed["name"], renamed["version"], renamed["phase"]) == ("Twin City Lab 2027", 2, "collecting")
    assert opened["phase"] == "collecting" and opened["cities"] == ["karlsruhe", "krasnodar"]
    assert api.ok("GET", f"/rounds/{opened['id']}", kr)["name"] == "Twin City Lab 2027"
    assert api.call("GET", f"/rounds/{opened['id']}", keys["nancy"]).status_code == 404
    lena = api.ok("POST", "/participants", ka, {"name": "Lena", "language": "de"})["id"]
    anna = api.ok("POST", "/participants", kr, {"name": "Анна", "language": "ru"})["id"]
    api.settle()
    de = api.ok("POST", "/ideas", ka, {**GARDEN_DE, "author_id": lena})
    ru = api.ok("POST", "/ideas", kr, {**GARDEN_RU, "author_id": anna})
    extra = api.ok("POST", "/ideas", ka, {"title": "Schachturnier", "description": "Ein Schachturnier für alle.",
                                          "theme": "leisure-youth-social"})
    assert {de["round_id"], ru["round_id"], extra["round_id"]} == {opened["id"]}, "new ideas join the current round"

    # Collecting closed (the workshop held early): a late idea for the round is a 409 naming it and its dates
    assert api.ok("POST", f"/rounds/{opened['id']}/advance", ka)["phase"] == "matching"
    late = api.call("POST", "/ideas", kr, {**GARDEN_RU, "round_id": opened["id"]})
    assert late.status_code == 409 and "Twin City Lab 2027" in late.json_body["detail"]
    assert lab_dates()["collect_until"] in late.json_body["detail"]

    # The workshop: the pair is proposed and confirmed, a project forms
    def pair() -> list[dict[str, Any]]:
        return [m for m in matches_of(api, de["id"], ka) if ru["id"] in {s["idea_id"] for s in m["sides"]}]

    wait_for(pair, 30, message="the proposal")
    [match] = pair()
    api.ok("POST", f"/matches/{match['id']}/accept", ka)
    api.ok("POST", f"/matches/{match['id']}/accept", kr)
    wait_for(lambda: api.ok("GET", "/projects", ka)["items"], 30, message="the project")
    api.settle()

    report = api.ok("GET", f"/rounds/{opened['id']}/report", kr)
    assert report["round"]["id"] == opened["id"] and report["round"]["phase"] == "matching"
    assert report["ideas"]["total"] == 3
    assert report["ideas"]["by_theme_and_city"] == {"ecology-health": {"karlsruhe": 1, "krasnodar": 1},
                                                    "leisure-youth-social": {"karlsruhe": 1}}
    assert report["ideas"]["by_language"] == {"de": 2, "ru": 1}
    assert report["matches"]["by_status"].get("confirmed") == 1 and report["projects"] == {
        "total": 1, "by_status": {"forming": 1}}
    assert report["participants"]["authors_by_city"] == {"karlsruhe": 1, "krasnodar": 1}
    assert report["participants"]["registered_by_city"] == {"karlsruhe": 1, "krasnodar": 1}
    waiting = report["first_proposal"]
    assert waiting["ideas_proposed"] >= 2 and waiting["ideas_proposed"] + waiting["ideas_waiting"] == 3
    assert 0 <= waiting["median_hours"] < 1, "proposed within moments of being written"
    assert api.call("GET", f"/rounds/{opened['id']}/report", keys["nancy"]).status_code == 404

    # The workshop is over: the round's people hear that the results are in, in their language
    api.ok("POST", f"/rounds/{opened['id']}/advance", kr)

    def results_for(key: str, pid: str) -> list[dict[str, Any]]:
        return [n for n in api.ok("GET", f"/participants/{pid}/notifications", key)["items"]
                if n.get("template") == "round_results"]

    wait_for(lambda: results_for(kr, anna) and results_for(ka, lena), 30, message="the results told")
    assert results_for(kr, anna)[0]["title"] == "Итоги «Twin City Lab 2027» готовы"
    assert results_for(ka, lena)[0]["link"].endswith("/matches")

    # Closed: the webhooks heard every step
    assert api.ok("POST", f"/rounds/{opened['id']}/advance", ka)["phase"] == "closed"
    def heard() -> list[str]:
        return sorted(json.loads(c["body"])["type"] for c in receiver.calls)

    wait_for(lambda: heard() == ["round.closed", "round.opened"] + ["round.phase_changed"] * 3 + ["round.updated"],
             30, message="the round's webhooks")


def test_a_coordinator_opens_a_round_moves_it_on_and_prints_its_report():
    from tests.e2e.test_pages import Browser

    with running_platform("memory://") as api:
        keys = api.lab()
        ka, kr = keys["karlsruhe"], keys["krasnodar"]
        coordinator = Browser(api.platform.gateway, "de")
        coordinator.coordinator(ka)
        dates = lab_dates()
        opened = coordinator.post("/coordinator/rounds?partnership=karlsruhe-krasnodar", {
            "name": "Twin City Lab 2027", "collect_until": dates["collect_until"],
            "workshop_at": f"{dates['workshop_at'][:10]}T10:00", "projects_from": dates["projects_from"],
            "timezone": "Europe/Berlin"})
        assert opened.status_code == 302
        page = coordinator.text("/coordinator/rounds")
        assert "Twin City Lab 2027" in page and "Die Runde ist offen" in page
        [found] = api.ok("GET", f"/partnerships/{PID}/rounds", kr)["items"]
        assert found["workshop_at"].startswith(f"{dates['workshop_at'][:10]}T09:00"), "10:00 in Berlin, in UTC"
        api.ok("POST", "/ideas", ka, GARDEN_DE)
        api.ok("POST", "/ideas", kr, GARDEN_RU)
        api.settle()
        report = coordinator.text(f"/coordinator/rounds/{found['id']}/report")
        assert "Bericht: Twin City Lab 2027" in report and "<svg" in report and "Ökologie &amp; Gesundheit" in report
        csv_text = coordinator.get(f"/coordinator/rounds/{found['id']}/report.csv").get_data(as_text=True)
        assert "Ideen,gesamt,,2" in csv_text and "Ideen nach Sprache,Russisch,,1" in csv_text, csv_text
        assert "Ideen nach Thema und Stadt,Ökologie & Gesundheit,Karlsruhe,1" in csv_text, "words, not keys"
        assert "_hours" not in csv_text and "by_status" not in csv_text
        # a typo in the name and a workshop moved by a day, on the page; a stale form is told, not saved
        page = coordinator.text("/coordinator/rounds")
        assert "Name oder Termine ändern" in page and f'value="{dates["workshop_at"][:10]}T10:00"' in page
        moved_to = (date.fromisoformat(dates["collect_until"]) + timedelta(days=1)).isoformat()  # a day earlier
        form = {"name": "Twin City Lab 2027 Karlsruhe–Krasnodar", "collect_until": dates["collect_until"],
                "workshop_at": f"{moved_to}T10:00", "projects_from": dates["projects_from"],
                "timezone": "Europe/Berlin", "version": str(found["version"])}
        changed = coordinator.post(f"/coordinator/rounds/{found['id']}/change", form)
        assert "Die Runde ist geändert: Twin City Lab 2027 Karlsruhe–Krasnodar" in coordinator.text(
            changed.headers["Location"])
        now = api.ok("GET", f"/rounds/{found['id']}", kr)
        assert now["name"] == form["name"] and now["workshop_at"].startswith(f"{moved_to}T09:00")
        stale = coordinator.post(f"/coordinator/rounds/{found['id']}/change", {**form, "name": "Alt"})
        assert "jemand hat sie inzwischen geändert" in coordinator.text(stale.headers["Location"])
        assert api.ok("GET", f"/rounds/{found['id']}", kr)["name"] == form["name"]
        moved = coordinator.post(f"/coordinator/rounds/{found['id']}/advance")
        assert moved.status_code == 302
        assert api.ok("GET", f"/rounds/{found['id']}", ka)["phase"] == "matching"
        refused = coordinator.post("/coordinator/rounds?partnership=karlsruhe-krasnodar", {
            "name": "Falsch", "collect_until": dates["projects_from"], "workshop_at": f"{dates['collect_until']}T10:00",
            "projects_from": dates["collect_until"], "timezone": "Europe/Berlin"})
        assert "nicht eröffnet" in coordinator.text(refused.headers["Location"])


def test_an_idea_limited_to_one_partnership_is_invisible_to_the_other_partner_city_everywhere(api: Api):
    keys = api.lab()
    ka, kr, na = keys["karlsruhe"], keys["krasnodar"], keys["nancy"]
    limited = api.ok("POST", "/ideas", ka, {**GARDEN_DE, "partnerships": ["karlsruhe-krasnodar"]})
    nancy_twin = api.ok("POST", "/ideas", na, {**GARDEN_DE, "title": "Jardins partagés contre la chaleur"})
    api.ok("POST", "/ideas", kr, GARDEN_RU)
    api.settle()
    assert limited["id"] not in {i["id"] for i in api.ok("GET", "/ideas?limit=100", na)["items"]}
    for path in (f"/ideas/{limited['id']}", f"/ideas/{limited['id']}/matches", f"/ideas/{limited['id']}/candidates"):
        assert api.call("GET", path, na).status_code == 404, path
    assert limited["id"] in {i["id"] for i in api.ok("GET", "/ideas?limit=100", kr)["items"]}
    wait_for(lambda: matches_of(api, limited["id"], ka), 30, message="matched in Karlsruhe–Krasnodar")
    assert {m["partnership"] for m in matches_of(api, limited["id"], ka)} == {"karlsruhe-krasnodar"}, \
        "never matched in Karlsruhe–Nancy"
    assert not [m for m in api.ok("GET", "/matches?limit=100", na)["items"]
                if limited["id"] in {s["idea_id"] for s in m["sides"]}]
    # Offered to Karlsruhe–Nancy after all: now Nancy sees it, and it is matched there too
    api.ok("PATCH", f"/ideas/{limited['id']}", ka, {"partnerships": ["karlsruhe-krasnodar", "karlsruhe-nancy"]})
    assert api.ok("GET", f"/ideas/{limited['id']}", na)["id"] == limited["id"]
    wait_for(lambda: any(nancy_twin["id"] in {s["idea_id"] for s in m["sides"]}
                         for m in matches_of(api, limited["id"], ka)), 30, message="matched with Nancy's twin idea")
    # Taken back from Karlsruhe–Krasnodar: its matches there are out of Krasnodar's sight too
    kr_match = next(m for m in matches_of(api, limited["id"], ka) if m["partnership"] == "karlsruhe-krasnodar")
    api.ok("PATCH", f"/ideas/{limited['id']}", ka, {"partnerships": ["karlsruhe-nancy"]})
    api.settle()
    assert api.call("GET", f"/matches/{kr_match['id']}", kr).status_code == 404
    ru_side = next(s["idea_id"] for s in kr_match["sides"] if s["idea_id"] != limited["id"])
    assert kr_match["id"] not in {m["id"] for m in api.ok("GET", f"/ideas/{ru_side}/matches", kr)["items"]}
    assert limited["id"] not in json.dumps(api.ok("GET", "/matches?limit=100", kr))


def test_a_participant_keeps_an_idea_from_one_partner_city_on_the_form():
    from tests.e2e.test_pages import Browser

    with running_platform("memory://") as api:
        keys = api.lab()
        api.ok("POST", "/participants", keys["karlsruhe"], {"name": "Lena", "email": "lena@example.org",
                                                            "language": "de"})
        api.settle()
        lena = Browser(api.platform.gateway, "de")
        lena.sign_in("lena@example.org")
        form = lena.text("/ideas/new")
        assert "Wer diese Idee sieht" in form and "Краснодар" in form and "Nancy" in form
        sent = lena.post("/ideas/new", {"title": "Queere Jugendtreffs", "description": "Austausch queerer Gruppen.",
                                        "theme": "leisure-youth-social", "language": "de",
                                        "choose_partnerships": "1", "partnerships": ["karlsruhe-nancy"]})
        assert sent.status_code == 302, sent.get_data(as_text=True)[-500:]
        idea_id = sent.headers["Location"].rsplit("/", 1)[-1]
        assert api.ok("GET", f"/ideas/{idea_id}", keys["nancy"])["id"] == idea_id
        assert api.call("GET", f"/ideas/{idea_id}", keys["krasnodar"]).status_code == 404


def test_a_whole_round_from_the_invitation_to_the_report(napi: Api, smtp: SmtpServer):
    """Issue 21's walk: a round opened with dates, an invitation accepted, ideas collected (one limited to one
    partnership, invisible to the other partner city), collecting closed (a late idea is a 409), the workshop's
    matches, a project, and a report whose figures are what this test made."""
    import re

    from tests.e2e.test_pages import Browser

    api = napi
    keys = api.lab()
    ka, kr, na = keys["karlsruhe"], keys["krasnodar"], keys["nancy"]
    api.settle()
    lab = api.ok("POST", f"/partnerships/{PID}/rounds", kr, {"name": "Twin City Lab 2027", **lab_dates()})
    api.ok("POST", "/invitations", kr, {"email": "olga@example.org", "name": "Ольга", "language": "ru"})
    wait_for(lambda: smtp.to("olga@example.org"), 30, message="the invitation")
    link = re.search(r"http://lab\.example(/signin/invitation/\S+)",
                     smtp.to("olga@example.org")[0].get_body(("plain",)).get_content()).group(1)
    olga = Browser(api.platform.gateway, "ru")
    olga.get(link)
    assert olga.post(link, {"name": "Ольга", "language": "ru", "interests": "сады"}).status_code == 302
    olga_id = api.ok("GET", "/participants?q=olga", kr)["items"][0]["id"]
    lena = api.ok("POST", "/participants", ka, {"name": "Lena", "language": "de"})["id"]
    api.settle()

    de = api.ok("POST", "/ideas", ka, {**GARDEN_DE, "author_id": lena})
    ru = api.ok("POST", "/ideas", kr, {**GARDEN_RU, "author_id": olga_id})
    only_kr = api.ok("POST", "/ideas", ka, {"title": "Queere Jugendtreffs", "description": "Jugendgruppen treffen "
                                                                                          "sich.",
                                            "theme": "leisure-youth-social", "partnerships": ["karlsruhe-krasnodar"]})
    assert {de["round_id"], ru["round_id"], only_kr["round_id"]} == {lab["id"]}
    assert api.call("GET", f"/ideas/{only_kr['id']}", na).status_code == 404
    assert only_kr["id"] not in {i["id"] for i in api.ok("GET", "/ideas?limit=100", na)["items"]}

    api.ok("POST", f"/rounds/{lab['id']}/advance", ka)  # collecting closed: the workshop
    late = api.call("POST", "/ideas", kr, {**GARDEN_RU, "round_id": lab["id"]})
    assert late.status_code == 409 and "Twin City Lab 2027" in late.json_body["detail"]

    def pair() -> list[dict[str, Any]]:
        return [m for m in matches_of(api, de["id"], ka) if ru["id"] in {s["idea_id"] for s in m["sides"]}]

    wait_for(pair, 30, message="the workshop's proposal")
    [match] = pair()
    api.ok("POST", f"/matches/{match['id']}/accept", ka)
    api.ok("POST", f"/matches/{match['id']}/accept", kr)
    wait_for(lambda: api.ok("GET", "/projects", kr)["items"], 30, message="the project")
    api.settle()

    report = api.ok("GET", f"/rounds/{lab['id']}/report", ka)
    assert report["ideas"]["total"] == 3 and report["ideas"]["by_city"] == {"karlsruhe": 2, "krasnodar": 1}
    assert report["ideas"]["by_theme_and_city"] == {"ecology-health": {"karlsruhe": 1, "krasnodar": 1},
                                                    "leisure-youth-social": {"karlsruhe": 1}}
    assert report["ideas"]["by_language"] == {"de": 2, "ru": 1}
    assert report["matches"]["by_status"]["confirmed"] == 1 and report["projects"]["total"] == 1
    assert report["participants"] == {"authors_by_city": {"karlsruhe": 1, "krasnodar": 1},
                                      "registered_by_city": {"karlsruhe": 1, "krasnodar": 1}}
    assert report["first_proposal"]["ideas_proposed"] >= 2
