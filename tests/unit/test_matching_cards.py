"""Workshop cards as people write them (a title and a sentence, a theme, nothing else) find their partners: the three
obvious cross-city pairs the review missed are proposed, and two cards that only share the cities' names are not
(the real encoder and engine, the read models on an in-memory store)."""

from __future__ import annotations

import mongomock
import pytest

from matching.engine import Engine
from matching.repository import ReadModels
from matching.vectors import Encoder

CARDS = [  # (id, city, theme, title, sentence)
    ("ka-startups", "karlsruhe", "innovation-economy", "Start-up-Brücke Karlsruhe–Krasnodar",
     "Gründerinnen und Gründer beider Städte lernen sich bei Online-Pitch-Abenden kennen."),
    ("ka-green", "karlsruhe", "ecology-health", "Mehr Grün gegen die Sommerhitze",
     "Wir wollen Straßen und Schulhöfe begrünen, damit es in der Stadt im Sommer kühler bleibt."),
    ("ka-diversity", "karlsruhe", "leisure-youth-social", "Vielfalt leben",
     "Ein Fest für Toleranz, bei dem Menschen unterschiedlicher Herkunft ihre Kultur zeigen."),
    ("ka-cookbook", "karlsruhe", "leisure-youth-social", "Ein Kochbuch für Karlsruhe und Krasnodar",
     "Familien aus beiden Städten sammeln ihre liebsten Rezepte für ein gemeinsames Kochbuch."),
    ("kr-startups", "krasnodar", "innovation-economy", "Стартап-мост",
     "Молодые предприниматели двух городов знакомятся на онлайн-питчах и ездят друг к другу на стажировки."),
    ("kr-green", "krasnodar", "ecology-health", "Зелёные дворы против жары",
     "Озеленим дворы и остановки, чтобы летом в городе было не так жарко."),
    ("kr-diversity", "krasnodar", "leisure-youth-social", "Фестиваль многообразия",
     "Праздник толерантности, где люди разных национальностей рассказывают о своих традициях."),
    ("kr-trams", "krasnodar", "city-admin-development", "Трамваи Краснодара и Карлсруэ",
     "Сравнить, как устроены трамвайные сети двух городов и как их обновляют."),
]


@pytest.fixture(scope="module")
def proposed() -> set[frozenset[str]]:
    repo = ReadModels(mongomock.MongoClient()["matching"])
    repo.put_city("karlsruhe", "Karlsruhe", "de", {"ru": "Карлсруэ"})
    repo.put_city("krasnodar", "Краснодар", "ru", {"de": "Krasnodar"})
    repo.put_partnership("ka-kr", "Twin City Lab", ["karlsruhe", "krasnodar"], [])
    engine = Engine(repo, Encoder())
    docs = [{"_id": i, "city": city, "theme": theme, "title": title, "description": text, "tags": [], "seeks": [],
             "offers": [], "status": "open", "partnerships": ["ka-kr"]} for i, city, theme, title, text in CARDS]
    found: set[frozenset[str]] = set()
    for doc, vectors in zip(docs, engine.ideas_vectors(docs), strict=True):
        doc.update(vectors)
        repo.put_versioned(repo.ideas, doc["_id"], 1, {k: v for k, v in doc.items() if k != "_id"})
        for proposal in engine.proposals_for_idea(doc):
            found.add(frozenset(side["idea_id"] for side in proposal.fields["sides"]))
    return found


@pytest.mark.parametrize("topic", ["startups", "green", "diversity"])
def test_the_obvious_cross_city_pairs_are_proposed(proposed, topic):
    assert frozenset((f"ka-{topic}", f"kr-{topic}")) in proposed


def test_cards_that_share_only_the_cities_names_are_not_a_match(proposed):
    assert frozenset(("ka-cookbook", "kr-trams")) not in proposed
    assert not any("ka-cookbook" in pair or "kr-trams" in pair for pair in proposed), proposed


def test_a_partnership_that_matches_within_rounds_pairs_only_ideas_of_one_round():
    """The green cards of two rounds are not paired when the partnership keeps its rounds apart; of one round,
    they are."""
    from matching.domain import MatchPolicy

    repo = ReadModels(mongomock.MongoClient()["matching"])
    repo.put_city("karlsruhe", "Karlsruhe", "de", {"ru": "Карлсруэ"})
    repo.put_city("krasnodar", "Краснодар", "ru", {"de": "Krasnodar"})
    repo.put_partnership("ka-kr", "Twin City Lab", ["karlsruhe", "krasnodar"], [])
    repo.put_settings("ka-kr", MatchPolicy(same_round=True))
    engine = Engine(repo, Encoder())
    green = {c[0]: c for c in CARDS if c[0] in ("ka-green", "kr-green")}
    docs = [{"_id": i, "city": city, "theme": theme, "title": title, "description": text, "tags": [], "seeks": [],
             "offers": [], "status": "open", "partnerships": ["ka-kr"],
             "round_id": "round-2026" if city == "karlsruhe" else "round-2027"}
            for i, city, theme, title, text in green.values()]
    for doc, vectors in zip(docs, engine.ideas_vectors(docs), strict=True):
        doc.update(vectors)
        repo.put_versioned(repo.ideas, doc["_id"], 1, {k: v for k, v in doc.items() if k != "_id"})
    engine.sync()
    assert engine.proposals_for_idea(docs[0], synced=True) == [], "two rounds: no pair"
    repo.put_settings("ka-kr", MatchPolicy(same_round=False))
    assert engine.proposals_for_idea(docs[0], synced=True), "the rounds together: the pair"
