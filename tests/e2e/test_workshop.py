"""The bilateral workshop, end to end through the gateway: workshop cards from two cities, the near misses an idea
has, a pair made by hand, a poor proposal withdrawn (both sides told, in their language), both accept, a project."""

from __future__ import annotations

from typing import Any

from tests.conftest import wait_for
from tests.e2e.conftest import Api
from tests.e2e.test_notify import authors

CARD = {"tags": [], "seeks": [], "offers": []}
KARLSRUHE_CARDS = [
    ("Mehr Grün gegen die Sommerhitze", "ecology-health",
     "Wir wollen Straßen und Schulhöfe begrünen, damit es in der Stadt im Sommer kühler bleibt."),
    ("Bienen auf dem Rathausdach", "ecology-health",
     "Bienenstöcke auf öffentlichen Dächern sollen die Artenvielfalt in der Stadt fördern."),
]
KRASNODAR_CARDS = [
    ("Зелёные дворы против жары", "ecology-health",
     "Озеленим дворы и остановки, чтобы летом в городе было не так жарко."),
    ("Чистые берега Кубани", "ecology-health",
     "Волонтёры собирают мусор на берегах реки и рассказывают о её охране."),
]


def cards(api: Api, key: str, author: str, texts: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [api.ok("POST", "/ideas", key, {**CARD, "title": t, "theme": theme, "description": d, "author_id": author})
            for t, theme, d in texts]


def workshop(api: Api) -> tuple[dict[str, str], dict, dict, list[dict[str, Any]], list[dict[str, Any]]]:
    """The lab, an author per city, and both cities' cards: (keys, lena, anna, Karlsruhe's, Krasnodar's)."""
    keys = api.lab()
    lena, anna = authors(api, keys)
    api.settle()
    return (keys, lena, anna, cards(api, keys["karlsruhe"], lena["id"], KARLSRUHE_CARDS),
            cards(api, keys["krasnodar"], anna["id"], KRASNODAR_CARDS))


def inbox(api: Api, key: str, person: dict[str, Any]) -> list[dict[str, Any]]:
    return api.ok("GET", f"/participants/{person['id']}/notifications", key)["items"]


def test_coordinators_see_near_misses_pair_by_hand_withdraw_and_a_project_forms(api: Api):
    keys, lena, anna, (green_de, bees), (green_ru, river) = workshop(api)
    api.settle()

    # The Karlsruhe coordinator looks at the bees card: every Krasnodar card, best first, near misses included.
    def candidates(idea: dict[str, Any]) -> list[dict[str, Any]]:
        return api.ok("GET", f"/ideas/{idea['id']}/candidates?limit=10", keys["karlsruhe"])["items"]

    wait_for(lambda: len(candidates(bees)) == 2 and candidates(green_de)[0]["match_id"], 30,
             message="matching to have heard of every card")
    seen = candidates(bees)
    assert {c["idea"]["idea_id"] for c in seen} == {green_ru["id"], river["id"]}
    assert [c["score"] for c in seen] == sorted((c["score"] for c in seen), reverse=True)
    assert all(c["reasons"] and set(c["parts"]) == {"semantic", "theme"} for c in seen)
    near = next(c for c in seen if c["idea"]["idea_id"] == river["id"])
    assert near["proposed"] is False and near["match_id"] is None, "a near miss, not proposed by the rules"
    green = candidates(green_de)[0]
    assert green["idea"]["idea_id"] == green_ru["id"] and green["proposed"] is True and green["match_id"]
    assert api.ok("GET", f"/ideas/{bees['id']}/candidates", keys["nancy"])["items"] == [], \
        "Nancy sees the card (Karlsruhe's other twin) but none of Krasnodar's"
    assert api.call("GET", f"/ideas/{bees['id']}/candidates", keys["dijon"]).status_code == 404

    # Pairing by hand: the bees and the river, with a note; again is a 409 naming the match; same city is a 422.
    paired = api.ok("POST", "/matches", keys["karlsruhe"], {"ideas": [bees["id"], river["id"]],
                                                             "note": "Beide schützen die Natur in der Stadt"})
    assert paired["kind"] == "coordinator" and paired["status"] == "proposed"
    assert paired["reasons"][0]["text"]["ru"] == "Предложение координаторов: Beide schützen die Natur in der Stadt"
    again = api.call("POST", "/matches", keys["krasnodar"], {"ideas": [river["id"], bees["id"]]})
    assert again.status_code == 409 and again.json_body["match_id"] == paired["id"]
    same = api.call("POST", "/matches", keys["karlsruhe"], {"ideas": [bees["id"], green_de["id"]]})
    assert same.status_code == 422 and "ideas" in same.json_body["errors"]
    assert api.call("POST", "/matches", keys["nancy"], {"ideas": [bees["id"], river["id"]]}).status_code == 422, \
        "Nancy does not see Krasnodar's card"
    assert api.call("POST", "/matches", keys["karlsruhe"], {"ideas": [bees["id"]]}).status_code == 422

    # The Krasnodar coordinator withdraws the greening proposal: both authors are told, each in their language.
    withdrawn = api.ok("POST", f"/matches/{green['match_id']}/withdraw", keys["krasnodar"],
                       {"reason": "Дворы уже озеленяет другой проект"})
    assert withdrawn["status"] == "withdrawn" and withdrawn["closed_reason"] == "Дворы уже озеленяет другой проект"
    assert api.call("POST", f"/matches/{green['match_id']}/withdraw", keys["karlsruhe"],
                    {"reason": "again"}).status_code == 409
    assert api.call("POST", f"/matches/{paired['id']}/withdraw", keys["karlsruhe"], {}).status_code == 422
    blank = api.call("POST", f"/matches/{paired['id']}/withdraw", keys["karlsruhe"], {"reason": "   "})
    assert blank.status_code == 422 and "reason" in blank.json_body["errors"]

    def told(key: str, person: dict[str, Any]) -> list[dict[str, Any]]:
        return [n for n in inbox(api, key, person) if n["template"] == "match_withdrawn"]

    wait_for(lambda: told(keys["karlsruhe"], lena) and told(keys["krasnodar"], anna), 30, message="both told")
    [for_lena], [for_anna] = told(keys["karlsruhe"], lena), told(keys["krasnodar"], anna)
    assert for_lena["language"] == "de" and "zurückgezogen" in for_lena["subject"]
    assert "Дворы уже озеленяет другой проект" in for_lena["text"]
    assert for_anna["language"] == "ru" and "отозвано" in for_anna["subject"]

    # Both sides accept the pair made by hand: a project forms.
    api.ok("POST", f"/matches/{paired['id']}/accept", keys["karlsruhe"])
    confirmed = api.ok("POST", f"/matches/{paired['id']}/accept", keys["krasnodar"])
    assert confirmed["status"] == "confirmed"

    def project() -> list[dict[str, Any]]:
        return [p for p in api.ok("GET", "/projects", keys["karlsruhe"])["items"] if p["match_id"] == paired["id"]]

    wait_for(project, 30, message="the project")
    assert sorted(project()[0]["idea_ids"]) == sorted([bees["id"], river["id"]])


def test_changed_settings_take_effect_on_the_ideas_already_there(api: Api):
    keys, _lena, _anna, _karlsruhe, _krasnodar = workshop(api)
    settings = "/partnerships/karlsruhe-krasnodar/matching"

    def matches() -> list[dict[str, Any]]:
        return api.ok("GET", "/matches?city=karlsruhe&limit=100", keys["karlsruhe"])["items"]

    wait_for(lambda: any(m["status"] == "proposed" for m in matches()), 30, message="the greening proposal")
    assert api.ok("GET", settings, keys["karlsruhe"])["last_run"] is None
    [green] = [m for m in matches() if m["status"] == "proposed"]

    def finished(after: str | None) -> dict[str, Any] | None:
        run = api.ok("GET", settings, keys["karlsruhe"])["last_run"]
        return run if run and run["status"] == "finished" and run["id"] != after else None

    # Stricter than anything: the unanswered proposal no longer qualifies and is withdrawn, with that reason.
    changed = api.ok("PUT", settings, body={"threshold": 1.0, "floor": 1.0})
    assert changed["last_run"]["status"] in ("requested", "running", "finished")
    wait_for(lambda: finished(None), 30, message="the run after the change")
    run = finished(None)
    assert (run["ideas_seen"], run["proposals_added"], run["proposals_withdrawn"]) == (4, 0, 1)
    assert run["started_at"] and run["finished_at"] >= run["started_at"]
    gone = api.ok("GET", f"/matches/{green['id']}", keys["karlsruhe"])
    assert gone["status"] == "withdrawn" and "no longer proposed" in gone["closed_reason"]

    # Looser than anything: every pair is proposed, the one the first run withdrew reopened (not made twice).
    api.ok("PUT", settings, body={"threshold": 0.0, "floor": 0.0, "top_k": 5})
    wait_for(lambda: finished(run["id"]), 30, message="the second run")
    second = finished(run["id"])
    assert (second["ideas_seen"], second["proposals_added"], second["proposals_withdrawn"]) == (4, 4, 0)
    pairs = [frozenset(s["idea_id"] for s in m["sides"]) for m in matches()]
    assert len(pairs) == len(set(pairs)) == 4, "each pair once"
    assert {m["status"] for m in matches()} == {"proposed"}
    back = api.ok("GET", f"/matches/{green['id']}", keys["karlsruhe"])
    assert back["status"] == "proposed" and back["closed_reason"] is None and back["version"] == 3
    assert api.call("PUT", settings, body={"floor": 0.9, "threshold": 0.5}).status_code == 422
