"""Matching quality on the labelled evaluation set: recall@1, recall@3, and what each score part adds.

    .venv/bin/python bench/matching_quality.py            # prints a table, writes bench/results/matching_quality.json

The set (bench/data/matching_eval.json) has ideas in German, Russian, French and English in two
partnerships, each with the partner ideas a city coordinator would expect. Every idea with an expected
partner is ranked against the ideas of its partner city, with the production code (the same encoder,
int8 vectors, score parts and weights). recall@k: the share of expected partners found in the first k,
averaged over ideas. At the default threshold it also counts right and wrong proposals.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "matching-service"))

from matching import domain  # noqa: E402
from matching.engine import Engine, best_complement_cosine  # noqa: E402
from matching.vectors import Encoder, dequantize  # noqa: E402

DATA = Path(__file__).parent / "data" / "matching_eval.json"
RESULTS = Path(__file__).parent / "results"

DEFAULT = domain.MatchPolicy()
VARIANTS: dict[str, domain.MatchPolicy] = {
    "text only": replace(DEFAULT, semantic=1, theme=0, tags=0, complement=0),
    "text + theme": replace(DEFAULT, theme=DEFAULT.theme, tags=0, complement=0),
    "text + tags": replace(DEFAULT, theme=0, complement=0),
    "text + complement": replace(DEFAULT, theme=0, tags=0),
    "all parts (default weights)": DEFAULT,
}


def load() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def encode(ideas: list[dict[str, Any]], encoder: Encoder) -> None:
    """Attach int8 vectors to each idea the way the matching service stores them."""
    engine = Engine(repo=None, encoder=encoder)  # type: ignore[arg-type]  # ideas_vectors reads no store
    for idea, vectors in zip(ideas, engine.ideas_vectors(ideas), strict=True):
        idea.update(vectors)


def partner_ideas(idea: dict[str, Any], ideas: list[dict[str, Any]], partnerships: list[dict[str, Any]]) -> list:
    cities = next(p["cities"] for p in partnerships if idea["city"] in p["cities"])
    return [o for o in ideas if o["city"] in cities and o["city"] != idea["city"]]


def parts(a: dict[str, Any], b: dict[str, Any]) -> tuple[domain.Parts, float]:
    cosine = float(dequantize(a["vec"], a["vec_scale"]) @ dequantize(b["vec"], b["vec_scale"]))
    return domain.parts_of(cosine, a["theme"] == b["theme"], a["tags"], b["tags"], best_complement_cosine(a, b)), cosine


def evaluate(data: dict[str, Any], settings: domain.MatchPolicy) -> dict[str, float]:
    ideas, partnerships = data["ideas"], data["partnerships"]
    r1 = r3 = 0.0
    judged = 0
    right = wrong = 0
    distractors_proposed = 0
    for idea in ideas:
        candidates = partner_ideas(idea, ideas, partnerships)
        scored = sorted(((parts(idea, o)[0].score(settings), o["id"]) for o in candidates), reverse=True)
        ranking = [i for _, i in scored]
        expected = set(idea["expected"])
        proposed = [i for s, i in scored[: settings.top_k] if s >= settings.threshold]
        right += len(expected & set(proposed))
        wrong += len(set(proposed) - expected)
        if not expected:
            distractors_proposed += bool(proposed)
            continue
        judged += 1
        r1 += len(expected & set(ranking[:1])) / min(len(expected), 1)
        r3 += len(expected & set(ranking[:3])) / len(expected)
    expected_total = sum(len(i["expected"]) for i in ideas)
    return {
        "recall@1": round(r1 / judged, 3),
        "recall@3": round(r3 / judged, 3),
        "proposed_right": right,
        "proposed_wrong": wrong,
        "expected_total": expected_total,
        "distractors_with_a_proposal": distractors_proposed,
        "distractors": sum(1 for i in ideas if not i["expected"]),
    }


def main() -> None:
    data = load()
    started = time.perf_counter()
    encode(data["ideas"], Encoder(threads=1))
    encoded = time.perf_counter() - started
    languages = sorted({i["language"] for i in data["ideas"]})
    print(f"matching quality on {len(data['ideas'])} ideas ({', '.join(languages)}), "
          f"{len(data['partnerships'])} partnerships; encoding took {encoded:.1f} s")
    print(f"  threshold {DEFAULT.threshold}, top_k {DEFAULT.top_k}; 'proposed' counts idea->partner proposals "
          f"(each pair is seen from both sides)")
    print(f"  {'variant':30} {'recall@1':>9} {'recall@3':>9}   proposed right / wrong   distractors proposed")
    results = {}
    for name, settings in VARIANTS.items():
        r = evaluate(data, settings)
        results[name] = r
        print(f"  {name:30} {r['recall@1']:9.3f} {r['recall@3']:9.3f}   {r['proposed_right']:3d} of "
              f"{r['expected_total']:3d} / {r['proposed_wrong']:3d}        {r['distractors_with_a_proposal']} of "
              f"{r['distractors']}")
    RESULTS.mkdir(exist_ok=True)
    out = {"ideas": len(data["ideas"]), "languages": languages, "default_settings": DEFAULT.as_doc(),
           "variants": results}
    (RESULTS / "matching_quality.json").write_text(json.dumps(out, indent=2))
    print(f"  written to {RESULTS / 'matching_quality.json'}")


if __name__ == "__main__":
    main()
