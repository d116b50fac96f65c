"""Rules of matching: score parts, pair keys, the answers' state machine, reasons; the compact index."""

import numpy as np
import pytest

from matching import domain
from matching.engine import CANDIDATES, COMMON_WEIGHT, Engine
from matching.vectors import DIM, Index, Segment, dequantize, quantize


def test_similarity_is_mapped_onto_0_to_1():
    assert domain.similarity_part(0.05) == 0.0 and domain.similarity_part(0.9) == 1.0
    assert domain.similarity_part(0.35) == pytest.approx(0.5)


def test_score_weighs_the_parts_and_stays_within_0_and_1():
    parts = domain.parts_of(0.6, True, ["garten", "klima"], ["garten"], 0.6)
    assert parts == domain.Parts(semantic=1.0, theme=1.0, tags=0.5, complement=1.0)
    settings = domain.MatchPolicy(semantic=1, theme=1, tags=1, complement=1)
    assert parts.score(settings) == pytest.approx(0.875)
    assert domain.Parts(0, 0, 0, 0).score(domain.MatchPolicy(semantic=0, theme=0, tags=0, complement=0)) == 0.0


def test_tag_overlap_is_jaccard_and_ignores_case():
    assert domain.tag_overlap(["Garten", "klima"], ["garten", "jugend"]) == pytest.approx(1 / 3)
    assert domain.tag_overlap(["x"], ["y"]) == 0.0
    assert domain.tag_overlap([], ["x"]) is None, "nothing to compare is no overlap of 0"


def test_a_part_the_cards_do_not_have_gives_its_weight_to_those_they_have():
    policy = domain.MatchPolicy()
    card = domain.parts_of(0.45, True, [], [], None)
    assert card.tags is None and card.complement is None and "tags" not in card.as_dict()
    expected = (policy.semantic * card.semantic + policy.theme * 1.0) / (policy.semantic + policy.theme)
    assert card.score(policy) == pytest.approx(expected, abs=1e-4)
    assert domain.parts_of(0.45, True, ["x"], ["y"], 0.1).score(policy) < card.score(policy), \
        "tags that differ and needs nobody offers do count against a pair"


def cands(*scores: float) -> list[dict]:
    return [{"id": chr(ord("a") + i), "score": score} for i, score in enumerate(scores)]


def test_above_the_threshold_the_best_few_are_proposed():
    policy = domain.MatchPolicy(threshold=0.65, top_k=2)
    assert [c["id"] for c in domain.chosen(cands(0.9, 0.7, 0.66, 0.5), policy)] == ["a", "b"]


def test_below_the_threshold_only_a_best_that_stands_out_is_proposed():
    policy = domain.MatchPolicy(threshold=0.65, floor=0.40, margin=0.10)
    assert [c["id"] for c in domain.chosen(cands(0.50, 0.38), policy)] == ["a"]
    assert domain.chosen(cands(0.50, 0.45), policy) == [], "two about as good: no clear partner"
    assert domain.chosen(cands(0.39), policy) == [], "below the floor"
    assert [c["id"] for c in domain.chosen(cands(0.42), policy)] == ["a"], "alone, it leads"
    assert domain.chosen([], policy) == []


def test_city_names_and_words_about_the_partnership_say_nothing_about_the_topic():
    topic = domain.TopicFilter(["karlsruhe", "Karlsruhe", "Карлсруэ", "krasnodar", "Краснодар"])
    assert topic("Ein Kochbuch für Karlsruhe und Krasnodar. Familien aus beiden Städten sammeln Rezepte für ein "
                 "gemeinsames Kochbuch.") == "Ein Kochbuch für und. Familien aus sammeln Rezepte für ein Kochbuch."
    assert topic("Трамваи Краснодара и Карлсруэ: сравнить трамвайные сети двух городов") == \
        "Трамваи и: сравнить трамвайные сети"
    assert topic("Karlsruher Stadtbäume") == "Stadtbäume", "with its endings"
    assert topic("Krasse Ideen") == "Krasse Ideen", "only the names, not words that begin like them"


def test_an_idea_pair_has_one_key_whichever_side_comes_first():
    assert domain.pair_key("idea", "b", "a") == domain.pair_key("idea", "a", "b") == "idea:a|b"
    assert domain.pair_key("interest", "person", "idea") == "interest:person|idea"


def test_settings_from_a_stored_document_keep_defaults_for_what_is_missing():
    s = domain.MatchPolicy.from_doc({"top_k": 5, "unknown": 1})
    assert s.top_k == 5 and s.threshold == domain.MatchPolicy().threshold


MATCH = {"status": "proposed", "sides": [{"city": "karlsruhe"}, {"city": "krasnodar"}]}


def test_one_side_accepting_waits_for_the_other():
    result = domain.answer(MATCH, "karlsruhe", accept=True)
    assert (result.status, result.events) == ("accepted", ["match.accepted"])


def test_both_sides_accepting_confirms():
    accepted = {"status": "accepted", "sides": [{"city": "karlsruhe", "answer": "accepted"}, {"city": "krasnodar"}]}
    result = domain.answer(accepted, "krasnodar", accept=True)
    assert (result.status, result.events) == ("confirmed", ["match.accepted", "match.confirmed"])


def test_declining_closes_and_closed_matches_take_no_answers():
    assert domain.answer(MATCH, "krasnodar", accept=False).status == "declined"
    for status in ("confirmed", "declined", "expired"):
        with pytest.raises(domain.RuleViolation):
            domain.answer({**MATCH, "status": status}, "karlsruhe", accept=True)
    with pytest.raises(domain.NotASide, match="not a side"):
        domain.answer(MATCH, "nancy", accept=True)
    twice = {"status": "accepted", "sides": [{"city": "karlsruhe", "answer": "accepted"}, {"city": "krasnodar"}]}
    with pytest.raises(domain.RuleViolation, match="already"):
        domain.answer(twice, "karlsruhe", accept=True)


def test_reasons_are_sentences_in_three_languages_strongest_first():
    parts = domain.Parts(semantic=0.9, theme=1.0, tags=0.5, complement=0.7)
    reasons = domain.reasons(
        parts=parts, theme_labels={"de": "Ökologie & Gesundheit", "ru": "Экология и здоровье", "en": "Ecology"},
        shared_tags=["garten"], titles=("Gärten", "Сады"), cosine=0.55,
        complement=domain.Complement({"de": "Krasnodar", "ru": "Краснодар", "en": "Krasnodar"},
                                     {"de": "Karlsruhe", "ru": "Карлсруэ", "en": "Karlsruhe"}, "Опыт", "Erfahrungen",
                                     0.5),
    )
    assert [r["code"] for r in reasons] == ["similar_plans", "offers_what_is_sought", "same_theme", "shared_tags"]
    assert all(set(r["text"]) == {"de", "ru", "en"} for r in reasons)
    assert reasons[0]["text"]["de"] == "Ähnliches Vorhaben: „Gärten“ und „Сады“"
    assert reasons[0]["text"]["ru"] == "Похожие замыслы: «Gärten» и «Сады»"
    assert reasons[1]["text"]["en"] == "Krasnodar offers what Karlsruhe seeks: “Опыт” for “Erfahrungen”"
    assert reasons[1]["text"]["ru"] == "Краснодар предлагает то, что ищет Карлсруэ: «Опыт» для «Erfahrungen»", \
        "each language names the cities in its own way"


def unit(rng, n):
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_int8_vectors_keep_similarities_within_a_hundredth():
    rng = np.random.default_rng(1)
    a, b = unit(rng, 2)
    qa, qb = dequantize(*quantize(a)), dequantize(*quantize(b))
    assert abs(float(qa @ qb) - float(a @ b)) < 0.01
    assert quantize(np.zeros(DIM, dtype=np.float32))[1] == 0.0


def segment_of(vectors: np.ndarray) -> Segment:
    segment = Segment()
    for i, v in enumerate(vectors):
        segment.put(f"i{i}", *quantize(v))
    return segment


def test_segment_search_agrees_with_brute_force_after_removals():
    rng = np.random.default_rng(2)
    vectors = unit(rng, 300)
    segment = segment_of(vectors)
    for i in range(0, 300, 3):
        segment.remove(f"i{i}")
    segment.put("i1", *quantize(vectors[0]))  # an update in place
    query = vectors[0]
    kept = {f"i{i}": vectors[i] for i in range(300) if i % 3}
    kept["i1"] = vectors[0]
    expected = sorted(kept, key=lambda k: -float(kept[k] @ query))[:5]
    found = segment.search(query, 5)
    assert [k for k, _ in found] == expected and found[0] == ("i1", pytest.approx(1.0, abs=0.01))
    assert segment.size == len(kept) and "i0" not in segment.rows
    assert [k for k, _ in segment.search(query, 5, exclude=["i1"])] == expected[1:5] + [
        k for k in sorted(kept, key=lambda k: -float(kept[k] @ query))[5:6]]


def test_several_queries_at_once_find_what_each_finds_alone():
    rng = np.random.default_rng(5)
    vectors = unit(rng, 500)
    segment = segment_of(vectors)
    queries = np.stack([vectors[0], vectors[7], unit(rng, 1)[0], vectors[7]])
    excludes = [["i0"], [], ["i7", "i3"], ["missing"]]
    together = segment.search_many(queries, 20, excludes)
    for query, exclude, found in zip(queries, excludes, together, strict=True):
        alone = segment.search(query, 20, exclude)
        assert [k for k, _ in found] == [k for k, _ in alone]
        assert np.allclose([c for _, c in found], [c for _, c in alone], atol=1e-5)
        assert not set(exclude) & {k for k, _ in found}
    assert Segment().search_many(queries, 5, excludes) == [[], [], [], []]
    assert Index().search_many(("p", "ka"), queries, 5, excludes) == [[], [], [], []]


def test_index_moves_an_idea_between_groups():
    rng = np.random.default_rng(3)
    v = unit(rng, 1)[0]
    index = Index()
    index.put("idea", [("p1", "ka"), ("p2", "ka")], *quantize(v))
    assert index.search(("p2", "ka"), v, 1)[0][0] == "idea"
    index.put("idea", [("p1", "ka")], *quantize(v))
    assert index.search(("p2", "ka"), v, 1) == [] and len(index) == 1
    index.remove("idea")
    assert index.search(("p1", "ka"), v, 1) == [] and len(index) == 0


def test_nearest_of_several_ideas_at_once_are_each_ideas_own():
    class Partnerships:
        def partnership(self, pid: str) -> dict | None:
            return {"cities": ["ka", "kr"]} if pid == "p" else None

    engine = Engine(repo=Partnerships(), encoder=None)  # type: ignore[arg-type]
    rng = np.random.default_rng(9)

    def idea(i: int, city: str, partnerships: list[str], status: str = "open") -> dict:
        code, scale = quantize(unit(rng, 1)[0])
        return {"_id": f"{city}-{i}", "city": city, "partnerships": partnerships, "status": status,
                "vec": code, "vec_scale": scale}

    stored = [idea(i, city, ["p"]) for i in range(60) for city in ("ka", "kr")]
    for doc in stored:
        engine.ideas.put(doc["_id"], [("p", doc["city"])], doc["vec"], doc["vec_scale"])
    batch = stored[:7] + [idea(99, "ka", ["unknown"]), idea(98, "kr", ["p"], status="withdrawn")]
    nearest = engine.nearest_many(batch)
    assert set(nearest) == {doc["_id"] for doc in stored[:7]}, "unknown partnership and unmatchable left out"
    for doc in stored[:7]:
        partner = "kr" if doc["city"] == "ka" else "ka"
        alone = engine.ideas.search(("p", partner), dequantize(bytes(doc["vec"]), doc["vec_scale"]), CANDIDATES,
                                    exclude=[doc["_id"]], common=COMMON_WEIGHT)
        assert list(nearest[doc["_id"]]) == [("p", partner)]
        assert [k for k, _ in nearest[doc["_id"]][("p", partner)]] == [k for k, _ in alone]


def test_the_city_names_taken_out_of_texts_are_read_again_after_a_city_event_not_per_batch():
    class Cities:
        reads = 0
        names = ["Karlsruhe"]

        def city_name_forms(self) -> list[str]:
            self.reads += 1
            return list(self.names)

    repo = Cities()
    engine = Engine(repo=repo, encoder=None)  # type: ignore[arg-type]
    for _ in range(3):
        assert engine.topic_filter()("Karlsruher Gärten") == "Gärten"
    assert repo.reads == 1, "not once an encoded batch"
    repo.names = ["Karlsruhe", "Краснодар"]
    engine.forget_city_names()  # this process handled city.registered / city.updated
    assert engine.topic_filter()("Сады Краснодара") == "Сады" and repo.reads == 2


def test_an_idea_is_not_proposed_for_a_persons_interests_when_their_own_idea_is_proposed_with_it():
    policy = domain.MatchPolicy()

    def idea_side(idea: str, author: str | None) -> dict:
        return {"idea_id": idea, "author_id": author, "participant_id": None}

    def interest(person: str, idea: str) -> domain.Proposal:
        return domain.Proposal({"kind": "interest", "sides": [
            {"idea_id": None, "author_id": None, "participant_id": person}, idea_side(idea, "anna")]}, policy)

    pair = domain.Proposal({"kind": "idea", "sides": [idea_side("netzwerk", "lena"), idea_side("networking", "anna")]},
                           policy)
    asked: list[str] = []

    def before(idea: str) -> set[str]:
        asked.append(idea)
        return {"jonas"} if idea == "networking" else set()

    kept = domain.without_repeats([pair, interest("lena", "networking"), interest("jonas", "networking"),
                                   interest("miriam", "networking"), interest("lena", "festival")], before)
    # Lena's own idea is proposed with it (this batch), Jonas's was matched with it before: one card each, not two.
    assert kept == [pair, interest("miriam", "networking"), interest("lena", "festival")]
    assert set(asked) <= {"networking", "festival"}
