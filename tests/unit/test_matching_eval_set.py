"""The labelled evaluation set of the matching benchmark (bench/data/matching_eval.json) is well formed.

The set is edited by hand; these checks catch the slips a person makes (a partner listed on one side only,
an id in the wrong city, a tag with a capital letter) and keep the mix the benchmark relies on: ideas in
all four languages, most with an expected partner, some distractors, some partners in different themes.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

EVAL_SET = Path(__file__).resolve().parents[2] / "bench" / "data" / "matching_eval.json"
THEMES = {"ecology-health", "innovation-economy", "leisure-youth-social", "city-admin-development"}
ID_PREFIX = {"karlsruhe": "ka-", "krasnodar": "kr-", "nancy": "na-", "nottingham": "no-"}


@pytest.fixture(scope="module")
def data():
    return json.loads(EVAL_SET.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ideas(data):
    return {idea["id"]: idea for idea in data["ideas"]}


@pytest.fixture(scope="module")
def partner_cities(data):
    """city -> the cities it is twinned with in this set."""
    partners: dict[str, set[str]] = {}
    for partnership in data["partnerships"]:
        a, b = partnership["cities"]
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    return partners


def expected_pairs(ideas):
    return {frozenset((i, j)) for i, idea in ideas.items() for j in idea["expected"]}


def test_size_and_unique_ids(data, ideas):
    assert len(data["ideas"]) >= 48
    duplicates = [i for i, n in Counter(idea["id"] for idea in data["ideas"]).items() if n > 1]
    assert not duplicates, f"duplicate ids: {duplicates}"


def test_partnerships_and_cities(data, partner_cities):
    assert {p["id"] for p in data["partnerships"]} == {"karlsruhe-krasnodar", "nancy-nottingham"}
    for partnership in data["partnerships"]:
        assert len(partnership["cities"]) == 2 and all(c in data["cities"] for c in partnership["cities"])
    assert set(partner_cities) == set(data["cities"])


def test_languages(data):
    assert {idea["language"] for idea in data["ideas"]} == {"de", "ru", "fr", "en"}
    for idea in data["ideas"]:
        assert idea["city"] in data["cities"], idea["id"]
        assert idea["language"] == data["cities"][idea["city"]]["language"], idea["id"]


def test_fields(data):
    for idea in data["ideas"]:
        i = idea["id"]
        assert i.startswith(ID_PREFIX[idea["city"]]), i
        assert idea["title"].strip() and idea["description"].strip(), i
        assert idea["theme"] in THEMES, f"{i}: unknown theme {idea['theme']!r}"
        tags = idea["tags"]
        assert 1 <= len(tags) <= 4, f"{i}: {len(tags)} tags"
        assert all(t and t == t.lower() and t == t.strip() for t in tags), f"{i}: tags must be lowercase: {tags}"
        assert len(set(tags)) == len(tags), f"{i}: repeated tag"
        assert len(idea["seeks"]) <= 2 and len(idea["offers"]) <= 2, i
        assert all(s.strip() for s in idea["seeks"] + idea["offers"]), i


def test_expected_ids_are_in_the_partner_city(ideas, partner_cities):
    for i, idea in ideas.items():
        assert len(set(idea["expected"])) == len(idea["expected"]), f"{i}: an expected id twice"
        for j in idea["expected"]:
            assert j in ideas, f"{i} expects unknown idea {j}"
            assert ideas[j]["city"] in partner_cities[idea["city"]], \
                f"{i} ({idea['city']}) expects {j} ({ideas[j]['city']}), not a partner city"


def test_expected_is_symmetric(ideas):
    one_sided = [(i, j) for i, idea in ideas.items() for j in idea["expected"] if i not in ideas[j]["expected"]]
    assert not one_sided, f"listed on one side only: {one_sided}"


def test_mix_of_partners_distractors_and_themes(ideas):
    with_partner = [i for i, idea in ideas.items() if idea["expected"]]
    distractors = [i for i, idea in ideas.items() if not idea["expected"]]
    assert len(with_partner) >= 0.75 * len(ideas)
    assert len(distractors) >= 5
    cross_theme = [p for p in expected_pairs(ideas) if len({ideas[i]["theme"] for i in p}) == 2]
    assert len(cross_theme) >= 4, f"only {len(cross_theme)} expected pairs across themes"


def test_theme_alone_does_not_find_the_partner(ideas):
    """Every idea with a partner has a same-theme idea in the partner city that is not its partner."""
    for i, idea in ideas.items():
        if not idea["expected"]:
            continue
        partner_city = ideas[idea["expected"][0]]["city"]
        decoys = [j for j, other in ideas.items() if other["city"] == partner_city
                  and other["theme"] == idea["theme"] and j not in idea["expected"]]
        assert decoys, f"{i}: every {idea['theme']} idea of {partner_city} is a partner"
