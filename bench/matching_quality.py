"""Matching quality on three labelled sets, side by side: recall@1, recall@3 and the precision of what is proposed.

    .venv/bin/python bench/matching_quality.py   # prints the table, writes bench/results/matching_quality.json

The sets (bench/data):
- rich: matching_eval.json, 56 ideas in German, Russian, French and English with long descriptions, tags, seeks and
  offers, each labelled with the partner ideas a coordinator would expect (and distractors with none);
- sparse: the same ideas as people write them on a workshop card: the title and the description's first sentence,
  no tags, seeks or offers (made here from the rich set);
- cards: workshop_cards.json, 48 cards of a title and one sentence in the four languages, 18 gold pairs and 12
  distractors (same theme, other topic; cards naming both cities).

Everything runs through the production code: the matching service's read models (on an in-memory mongomock store),
its encoder, engine and rules. The ideas arrive one after another, each city's in turn, as after a city's workshop,
and each is matched as the service matches a new idea; what it proposes is counted once a pair.
- recall@k: the share of an idea's expected partners among the first k of its ranking against the partner city's
  ideas (all of them there, at the end), averaged over the ideas that have one;
- precision: gold pairs among the pairs proposed; found: gold pairs proposed among all gold pairs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "matching-service"))

from matching import domain, engine  # noqa: E402
from matching.engine import Engine  # noqa: E402
from matching.repository import ReadModels  # noqa: E402
from matching.vectors import Encoder  # noqa: E402

DATA = Path(__file__).parent / "data"
RESULTS = Path(__file__).parent / "results"

DEFAULT = domain.MatchPolicy()
RANKING = replace(DEFAULT, threshold=0.0, floor=0.0)  # every candidate scored: for recall@k


@contextlib.contextmanager
def before() -> Iterator[None]:
    """Matching as it was before issue 19: the text as written (city names and all), nothing common taken out, a
    part the cards lack counted as 0, and only the absolute threshold proposes."""
    with mock.patch.object(domain, "TOPIC_FREE", ()), \
            mock.patch.object(domain, "_stem", lambda name: "\x00never\x00"), \
            mock.patch.object(engine, "COMMON_WEIGHT", 0.0), \
            mock.patch.object(engine, "complements", lambda a, b: True), \
            mock.patch.object(domain, "tag_overlap", lambda a, b: _jaccard(a, b)):
        yield


def _jaccard(a: Any, b: Any) -> float:
    sa, sb = {t.lower() for t in a}, {t.lower() for t in b}
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


VARIANTS: dict[str, tuple[domain.MatchPolicy, Any]] = {
    "before (threshold, raw text)": (replace(DEFAULT, floor=2.0), before),
    "text only": (replace(DEFAULT, theme=0, tags=0, complement=0), contextlib.nullcontext),
    "text + theme": (replace(DEFAULT, tags=0, complement=0), contextlib.nullcontext),
    "text + theme + tags": (replace(DEFAULT, complement=0), contextlib.nullcontext),
    "all parts (default)": (DEFAULT, contextlib.nullcontext),
    "all parts, threshold only": (replace(DEFAULT, floor=2.0), contextlib.nullcontext),
}


def first_sentence(text: str) -> str:
    found = re.match(r"(.+?[.!?…])(?:\s|$)", text.strip(), re.S)
    return found.group(1) if found else text.strip()


def sets() -> dict[str, dict[str, Any]]:
    rich = json.loads((DATA / "matching_eval.json").read_text(encoding="utf-8"))
    sparse = copy.deepcopy(rich)
    for idea in sparse["ideas"]:
        idea.update(description=first_sentence(idea["description"]), tags=[], seeks=[], offers=[])
    cards = json.loads((DATA / "workshop_cards.json").read_text(encoding="utf-8"))
    return {"rich": rich, "sparse": sparse, "cards": cards}


def in_arrival_order(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each city's ideas in turn (a city's workshop, then its partner's), in the order of the file."""
    cities = list(dict.fromkeys(i["city"] for i in data["ideas"]))
    return [i for city in cities for i in data["ideas"] if i["city"] == city]


def evaluate(data: dict[str, Any], policy: domain.MatchPolicy, encoder: Encoder) -> dict[str, Any]:
    repo = ReadModels(mongomock.MongoClient()["matching"])
    for key, city in data["cities"].items():
        repo.put_city(key, city["name"], city["language"], city.get("names"))
    for p in data["partnerships"]:
        repo.put_partnership(p["id"], p["id"], p["cities"], [])
        repo.put_settings(p["id"], policy)
    matcher = Engine(repo, encoder)
    ideas = in_arrival_order(data)
    partnership_of = {c: p["id"] for p in data["partnerships"] for c in p["cities"]}
    docs = []
    for idea, vectors in zip(ideas, matcher.ideas_vectors(ideas), strict=True):
        docs.append({"_id": idea["id"], "city": idea["city"], "title": idea["title"], "theme": idea["theme"],
                     "description": idea["description"], "tags": idea["tags"], "seeks": idea["seeks"],
                     "offers": idea["offers"], "language": idea["language"], "status": "open",
                     "partnerships": [partnership_of[idea["city"]]], **vectors})
    proposed: set[frozenset[str]] = set()
    for doc in docs:  # one after another, as the service matches each new idea
        repo.put_versioned(repo.ideas, doc["_id"], 1, {k: v for k, v in doc.items() if k != "_id"})
        matcher.sync()
        for proposal in matcher.proposals_for_idea(doc, synced=True):
            if proposal.fields["kind"] == "idea":
                proposed.add(frozenset(s["idea_id"] for s in proposal.fields["sides"]))
    expected = {i["id"]: set(i["expected"]) for i in ideas}
    gold = {frozenset((a, b)) for a, partners in expected.items() for b in partners}
    r1 = r3 = 0.0
    judged = [d for d in docs if expected[d["_id"]]]
    for doc in judged:
        pid = doc["partnerships"][0]
        city = next(c for c in repo.partnership(pid)["cities"] if c != doc["city"])
        ranking = [c["other"]["_id"] for c in matcher.candidates(doc, pid, city, replace(policy, threshold=0.0,
                                                                                            floor=0.0), every=True)]
        wanted = expected[doc["_id"]]
        r1 += len(wanted & set(ranking[:1])) / min(len(wanted), 1)
        r3 += len(wanted & set(ranking[:3])) / len(wanted)
    right = len(proposed & gold)
    return {"recall@1": round(r1 / len(judged), 3), "recall@3": round(r3 / len(judged), 3),
            "precision": round(right / len(proposed), 3) if proposed else None, "proposed": len(proposed),
            "gold_proposed": right, "gold_pairs": len(gold),
            "found": round(right / len(gold), 3),
            "distractors_proposed": sum(1 for pair in proposed for i in pair if not expected[i])}


def main() -> None:
    encoder = Encoder(threads=1)
    data = sets()
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name, (policy, context) in VARIANTS.items():
        with context():
            results[name] = {s: evaluate(d, policy, encoder) for s, d in data.items()}
    took = time.perf_counter() - started
    print(f"matching quality: rich {len(data['rich']['ideas'])} ideas, sparse (the same as cards), cards "
          f"{len(data['cards']['ideas'])}; de, ru, fr, en; {took:.0f} s")
    print(f"  defaults: threshold {DEFAULT.threshold}, floor {DEFAULT.floor}, margin {DEFAULT.margin}, top_k "
          f"{DEFAULT.top_k}; precision = gold pairs proposed / pairs proposed; found = of all gold pairs")
    header = "".join(f" | {s:^32}" for s in data)
    print(f"  {'variant':30}{header}")
    print(f"  {'':30}" + " | r@1   r@3   precision  found     " * len(data))
    for name, by_set in results.items():
        row = "".join(
            f" | {r['recall@1']:.2f}  {r['recall@3']:.2f}  "
            f"{(format(r['precision'], '.2f') if r['precision'] is not None else ' -- '):>4} {r['gold_proposed']:>2}/"
            f"{r['proposed']:<3} {r['found']:.2f}  " for r in by_set.values())
        print(f"  {name:30}{row}")
    RESULTS.mkdir(exist_ok=True)
    out = {"default_settings": DEFAULT.as_doc(), "variants": results}
    (RESULTS / "matching_quality.json").write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(f"  written to {RESULTS / 'matching_quality.json'}")


if __name__ == "__main__":
    main()
