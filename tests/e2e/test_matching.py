"""Matching end to end: proposals with reasons across languages, the double opt-in, projects, expiry.

Each test runs on memory:// and with the real RabbitMQ between the services (see conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import wait_for
from tests.e2e.conftest import Api

GARDEN_DE = {"title": "Gemeinschaftsgärten gegen die Sommerhitze",
             "description": "Nachbarschaften legen gemeinsam Gärten an, pflanzen Bäume und teilen Wissen über "
                            "Klimaanpassung und Begrünung der Stadt.",
             "theme": "ecology-health", "tags": ["garten", "klima"],
             "seeks": ["Erfahrungen mit Trockenheit"], "offers": ["Saatgut und Gartengeräte"]}
GARDEN_RU = {"title": "Общественные сады и озеленение города",
             "description": "Соседи вместе разбивают сады, сажают деревья и делятся опытом, как защитить город "
                            "от летней жары и засухи.",
             "theme": "ecology-health", "tags": ["сад", "климат"],
             "seeks": ["Семена и садовый инвентарь"], "offers": ["Опыт борьбы с засухой"]}
HACK_RU = {"title": "IT-хакатон городов-побратимов",
           "description": "Команды программистов из двух городов за выходные создают цифровые сервисы для горожан.",
           "theme": "city-admin-development", "tags": ["хакатон"]}
GARDEN_FR = {"title": "Jardins partagés contre la chaleur de l'été",
             "description": "Les voisins créent ensemble des jardins, plantent des arbres et partagent leur savoir "
                            "sur l'adaptation au climat et la végétalisation de la ville.",
             "theme": "ecology-health", "tags": ["jardin", "climat"]}


def matches_of(api: Api, idea_id: str, key: str, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return api.ok("GET", f"/ideas/{idea_id}/matches" + (f"?{query}" if query else ""), key)["items"]


def proposed_pair(api: Api, keys: dict[str, str], author: str | None = None) -> tuple[dict, dict, dict]:
    de = api.ok("POST", "/ideas", keys["karlsruhe"], {**GARDEN_DE, **({"author_id": author} if author else {})})
    ru = api.ok("POST", "/ideas", keys["krasnodar"], GARDEN_RU)

    def pair() -> list[dict[str, Any]]:
        return [m for m in matches_of(api, de["id"], keys["karlsruhe"])
                if ru["id"] in {s["idea_id"] for s in m["sides"]}]

    wait_for(pair, timeout=30, message="the proposal")
    [match] = pair()
    return de, ru, match


def test_german_and_russian_ideas_get_each_other_proposed_with_reasons(api: Api):
    keys = api.lab()
    de, ru, match = proposed_pair(api, keys)
    assert {s["idea_id"] for s in match["sides"]} == {de["id"], ru["id"]}
    assert match["status"] == "proposed" and match["partnership"] == "karlsruhe-krasnodar"
    assert 0 < match["score"] <= 1 and set(match["parts"]) == {"semantic", "theme", "tags", "complement"}
    codes = [r["code"] for r in match["reasons"]]
    assert "similar_plans" in codes and "same_theme" in codes
    same_theme = next(r for r in match["reasons"] if r["code"] == "same_theme")
    assert same_theme["text"] == {"de": "Gleiches Thema: Ökologie & Gesundheit",
                                  "ru": "Общая тема: Экология и здоровье", "en": "Same theme: Ecology & health"}
    complement = next(r for r in match["reasons"] if r["code"] == "offers_what_is_sought")
    assert complement["text"]["de"].startswith(("Karlsruhe bietet", "Краснодар bietet"))
    # The Russian side sees the same match from its idea.
    assert [m["id"] for m in matches_of(api, ru["id"], keys["krasnodar"]) if m["kind"] == "idea"] == [match["id"]]
    api.settle()
    [event] = api.observer.of("match.proposed", match_id=match["id"])
    assert event.payload["reasons"] == match["reasons"] and event.partnership == "karlsruhe-krasnodar"


def test_a_french_idea_partnered_only_with_karlsruhe_never_goes_to_krasnodar(api: Api):
    keys = api.lab()
    fr = api.ok("POST", "/ideas", keys["nancy"], GARDEN_FR)
    de, ru, _ = proposed_pair(api, keys)
    wait_for(lambda: any(m["kind"] == "idea" for m in matches_of(api, fr["id"], keys["nancy"])), timeout=30,
             message="Nancy's idea to be matched with Karlsruhe's")
    api.settle()
    for event in api.observer.of("match.proposed"):
        cities = {s["city"] for s in event.payload["sides"]}
        assert cities in ({"karlsruhe", "krasnodar"}, {"karlsruhe", "nancy"}), cities
    assert not [m for m in matches_of(api, ru["id"], keys["krasnodar"]) if fr["id"] in
                {s["idea_id"] for s in m["sides"]}]
    fr_partners = {s["idea_id"] for m in matches_of(api, fr["id"], keys["nancy"]) for s in m["sides"]}
    assert de["id"] in fr_partners and ru["id"] not in fr_partners
    assert api.call("GET", f"/ideas/{fr['id']}/matches", keys["krasnodar"]).status_code == 404


def test_both_sides_accept_and_exactly_one_project_forms(api: Api):
    keys = api.lab()
    de, ru, match = proposed_pair(api, keys)
    assert [s["answer"] for s in match["sides"]] == [None, None], "unanswered sides say so"
    one = api.ok("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"])
    assert one["status"] == "accepted" and api.ok("GET", "/projects", keys["karlsruhe"])["items"] == []
    again = api.call("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"])
    assert again.status_code == 409, "one answer a side"
    both = api.ok("POST", f"/matches/{match['id']}/accept", keys["krasnodar"])
    assert both["status"] == "confirmed"
    wait_for(lambda: api.ok("GET", "/projects", keys["krasnodar"])["items"], timeout=30, message="the project")
    [project] = api.ok("GET", "/projects", keys["krasnodar"])["items"]
    assert sorted(project["idea_ids"]) == sorted([de["id"], ru["id"]]) and project["match_id"] == match["id"]
    assert api.ok("GET", f"/projects/{project['id']}", keys["karlsruhe"])["title"]
    for idea, key in ((de, keys["karlsruhe"]), (ru, keys["krasnodar"])):
        wait_for(lambda i=idea, k=key: api.ok("GET", f"/ideas/{i['id']}", k)["status"] == "in_project",
                 timeout=30, message="both ideas in the project")
    api.settle()
    assert len(api.observer.of("project.formed")) == 1 and len(api.observer.of("match.confirmed")) == 1
    assert api.call("POST", f"/matches/{match['id']}/decline", keys["krasnodar"]).status_code == 409
    assert api.call("GET", f"/projects/{project['id']}", keys["dijon"]).status_code == 404


def test_an_erased_author_leaves_no_trace_on_their_match_and_project(api: Api):
    keys = api.lab()
    anna = api.ok("POST", "/participants", keys["karlsruhe"], {"name": "Anna", "language": "de"})
    _de, _ru, match = proposed_pair(api, keys, author=anna["id"])
    api.ok("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"])
    api.ok("POST", f"/matches/{match['id']}/accept", keys["krasnodar"])
    wait_for(lambda: api.ok("GET", "/projects", keys["karlsruhe"])["items"], timeout=30, message="the project")
    [project] = api.ok("GET", "/projects", keys["karlsruhe"])["items"]
    assert anna["id"] in json.dumps(project), "the project names its author before the erasure"
    assert api.call("DELETE", f"/participants/{anna['id']}", keys["karlsruhe"]).status_code == 204

    def traces() -> list[str]:
        return [path for path in (f"/projects/{project['id']}", f"/matches/{match['id']}")
                if anna["id"] in json.dumps(api.ok("GET", path, keys["karlsruhe"]))]

    wait_for(lambda: not traces(), timeout=30, message="the erasure to reach matching")
    project = api.ok("GET", f"/projects/{project['id']}", keys["karlsruhe"])
    assert [m["city"] for m in project["members"]] == [] and len(project["sides"]) == 2


def test_decline_closes_the_match(api: Api):
    keys = api.lab()
    _, _, match = proposed_pair(api, keys)
    api.ok("POST", f"/matches/{match['id']}/accept", keys["krasnodar"])
    declined = api.ok("POST", f"/matches/{match['id']}/decline", keys["karlsruhe"])
    assert declined["status"] == "declined"
    assert api.call("POST", f"/matches/{match['id']}/accept", keys["krasnodar"]).status_code == 409
    api.settle()
    assert [e.payload["city"] for e in api.observer.of("match.declined")] == ["karlsruhe"]
    assert not api.observer.of("project.formed")


def test_unanswered_proposals_expire(api: Api):
    keys = api.lab()
    api.ok("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"expiry_days": 0.00002})  # ~1.7 s
    _, _, match = proposed_pair(api, keys)
    wait_for(lambda: api.ok("GET", f"/matches/{match['id']}", keys["karlsruhe"])["status"] == "expired",
             timeout=30, message="the expiry")
    assert api.call("POST", f"/matches/{match['id']}/accept", keys["karlsruhe"]).status_code == 409
    api.settle()
    assert len(api.observer.of("match.expired", match_id=match["id"])) == 1


def test_a_withdrawn_idea_closes_its_proposals(api: Api):
    keys = api.lab()
    de, _, match = proposed_pair(api, keys)
    api.ok("POST", f"/ideas/{de['id']}/withdraw", keys["karlsruhe"])
    wait_for(lambda: api.ok("GET", f"/matches/{match['id']}", keys["karlsruhe"])["status"] == "declined",
             timeout=30, message="the proposal to close")
    api.settle()
    [closed] = api.observer.of("match.declined", match_id=match["id"])
    assert closed.payload["reason"] == "withdrawn"


def test_only_a_side_of_the_match_can_answer(api: Api):
    keys = api.lab()
    _, _, match = proposed_pair(api, keys)
    # Nancy is Karlsruhe's partner, but not in the Karlsruhe–Krasnodar partnership: its matches do not exist there.
    assert api.call("POST", f"/matches/{match['id']}/accept", keys["nancy"]).status_code == 404, "a third city"
    assert api.call("POST", f"/matches/{match['id']}/accept", keys["dijon"]).status_code == 404, "another partnership"
    assert api.call("POST", f"/matches/{match['id']}/accept").status_code == 403, "an admin key"
    assert api.call("POST", f"/matches/{match['id']}/accept", keys["karlsruhe-read"]).status_code == 403, "read-only"
    assert api.ok("GET", f"/matches/{match['id']}", keys["karlsruhe"])["status"] == "proposed"


def test_interests_are_matched_with_partner_ideas(api: Api):
    keys = api.lab()
    person = api.ok("POST", "/participants", keys["krasnodar"],
                    {"name": "Анна", "language": "ru",
                     "interests": "Городские сады, озеленение, защита климата, работа с соседями"})
    de = api.ok("POST", "/ideas", keys["karlsruhe"], GARDEN_DE)
    wait_for(lambda: any(m["kind"] == "interest" for m in matches_of(api, de["id"], keys["karlsruhe"])),
             timeout=30, message="the interest match")
    [interest] = [m for m in matches_of(api, de["id"], keys["karlsruhe"]) if m["kind"] == "interest"]
    assert interest["sides"][0]["participant_id"] == person["id"]
    assert interest["reasons"][0]["code"] == "fits_interests"
    assert api.ok("GET", "/matches?kind=interest&city=krasnodar", keys["krasnodar"])["items"][0]["id"] == interest["id"]


def test_matching_settings_are_per_partnership_and_admin_only(api: Api):
    keys = api.lab()
    assert api.ok("GET", "/partnerships/karlsruhe-krasnodar/matching", keys["karlsruhe"])["top_k"] == 3
    r = api.call("PUT", "/partnerships/karlsruhe-krasnodar/matching", keys["karlsruhe"], {"top_k": 5})
    assert r.status_code == 403
    assert api.ok("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"top_k": 5, "theme": 0.3})["top_k"] == 5
    assert api.ok("GET", "/partnerships/karlsruhe-nancy/matching", keys["karlsruhe"])["top_k"] == 3
    assert api.call("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"threshold": 2}).status_code == 422
    changed = api.ok("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"floor": 0.5, "margin": 0.2})
    assert (changed["floor"], changed["margin"], changed["threshold"]) == (0.5, 0.2, 0.65)
    r = api.call("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"floor": -1, "margin": "wide"})
    assert r.status_code == 422 and set(r.json_body["errors"]) == {"floor", "margin"}
    assert api.call("GET", "/partnerships/dijon-nancy/matching", keys["krasnodar"]).status_code == 404


def test_workshop_cards_of_a_title_and_a_sentence_find_their_partner_and_city_names_do_not(api: Api):
    """As people write them at a workshop: no tags, no seeks or offers; one pair of cards names both cities."""
    keys = api.lab()
    card = {"theme": "ecology-health", "tags": [], "seeks": [], "offers": []}
    green_de = api.ok("POST", "/ideas", keys["karlsruhe"], {
        **card, "title": "Mehr Grün gegen die Sommerhitze",
        "description": "Wir wollen Straßen und Schulhöfe begrünen, damit es in der Stadt im Sommer kühler bleibt."})
    cookbook = api.ok("POST", "/ideas", keys["karlsruhe"], {
        **card, "theme": "leisure-youth-social", "title": "Ein Kochbuch für Karlsruhe und Krasnodar",
        "description": "Familien aus beiden Städten sammeln ihre liebsten Rezepte für ein gemeinsames Kochbuch."})
    trams = api.ok("POST", "/ideas", keys["krasnodar"], {
        **card, "theme": "city-admin-development", "title": "Трамваи Краснодара и Карлсруэ",
        "description": "Сравнить, как устроены трамвайные сети двух городов и как их обновляют."})
    green_ru = api.ok("POST", "/ideas", keys["krasnodar"], {
        **card, "title": "Зелёные дворы против жары",
        "description": "Озеленим дворы и остановки, чтобы летом в городе было не так жарко."})

    def green_pair() -> list[dict[str, Any]]:
        return [m for m in matches_of(api, green_de["id"], keys["karlsruhe"])
                if green_ru["id"] in {s["idea_id"] for s in m["sides"]}]

    wait_for(green_pair, timeout=30, message="the cards' proposal")
    [match] = green_pair()
    assert set(match["parts"]) == {"semantic", "theme"}, "no tags, no seeks or offers: parts they lack do not count"
    api.settle()
    assert matches_of(api, cookbook["id"], keys["karlsruhe"]) == [], "sharing the cities' names is no match"
    assert matches_of(api, trams["id"], keys["krasnodar"]) == []
