"""Matching speed: time to match one new idea against 10k, 100k and 1M stored ideas, and memory per idea.

    .venv/bin/python bench/matching_speed.py                 # 10k, 100k, 1M on one core
    .venv/bin/python bench/matching_speed.py --sizes 10000 100000 --queries 200

One core (BLAS limited to one thread). Stored ideas are random unit vectors in the production index
(int8 codes, one scale each; matching.vectors.Segment): the search's cost does not depend on the
values. Per new idea it measures, as the matching worker does them:
  encode   an idea's texts with the real encoder, as matching does: its text, two seek and two offer phrases
           (without the token cache, and with it when none and when all of the tokens are kept)
  search   the 50 nearest ideas of the partner city (brute force over the whole segment), less what that
           city's ideas share (Segment.common: each row's projection kept, so the codes are still read once)
  score    the full score of those 50 (theme, tags, complementarity) and which are proposed (domain.chosen)
Prints p50/p95/p99 per stage and per size, the index's bytes per idea, and writes
bench/results/matching_speed.json.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "matching-service"))

from matching import domain  # noqa: E402
from matching.engine import CANDIDATES, COMMON_WEIGHT, best_complement_cosine  # noqa: E402
from matching.vectors import DIM, Encoder, Segment, blas, quantize  # noqa: E402

RESULTS = Path(__file__).parent / "results"
THEMES = ("ecology-health", "innovation-economy", "leisure-youth-social", "city-admin-development")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3), "p99_ms": round(pct(ms, 99), 3)}


def build_segment(n: int, rng: np.random.Generator) -> Segment:
    segment = Segment()
    segment._grow(n)
    for start in range(0, n, 50_000):
        stop = min(start + 50_000, n)
        block = rng.standard_normal((stop - start, DIM)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        scales = np.abs(block).max(axis=1) / 127.0
        segment.codes[start:stop] = np.round(block / scales[:, None]).astype(np.int8)
        segment.scales[start:stop] = scales
    segment.size = n
    for start in range(0, n, 50_000):  # what Segment.put keeps up: the sum of the vectors
        stop = min(start + 50_000, n)
        segment.total += (segment.codes[start:stop].astype(np.float64) * segment.scales[start:stop, None]).sum(0)
    segment.ids = [f"idea-{i}" for i in range(n)]
    segment.rows = {key: i for i, key in enumerate(segment.ids)}
    return segment


def fake_doc(i: int, rng: np.random.Generator) -> dict:
    """What the store returns for a candidate (metadata and the complement vectors)."""
    doc = {"_id": f"idea-{i}", "city": "krasnodar", "status": "open", "theme": THEMES[i % 4],
           "tags": ["garten", "klima"][: i % 3]}
    for name in ("seeks_vec", "offers_vec"):
        vector = rng.standard_normal(DIM).astype(np.float32)
        doc[name], doc[f"{name}_scale"] = quantize(vector / np.linalg.norm(vector))
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100, help="new ideas matched per size")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    settings = domain.MatchPolicy()

    texts = ["Gemeinschaftsgärten gegen die Sommerhitze. Nachbarschaften legen gemeinsam Gärten an.",
             "Erfahrungen mit Trockenheit", "Freiwillige für das Gießen", "Saatgut und Gartengeräte",
             "Kurse über Kompost"]
    encoder = Encoder(threads=1)
    encoder.encode(texts)  # load the model first: the figure is encoding, not loading
    encode_times = []
    for _ in range(50):
        started = time.perf_counter()
        encoder.encode(texts)
        encode_times.append(time.perf_counter() - started)
    encodes = {"encoder": summary(encode_times)}
    print(f"BLAS: {blas()}")
    print("matching speed, one core; encoding a new idea's 5 texts: " + "; ".join(
        f"{name} p50 {e['p50_ms']:.2f} ms p95 {e['p95_ms']:.2f}" for name, e in encodes.items()))
    print(f"  {'stored ideas':>12}  {'search p50':>10} {'p95':>7} {'p99':>7}  {'score p50':>9}  "
          f"{'total p50':>9} {'p99':>7}  {'index bytes/idea':>16}")

    idea = {"_id": "new", "city": "karlsruhe", "theme": THEMES[0], "tags": ["garten"]}
    for name in ("vec", "seeks_vec", "offers_vec"):
        vector = rng.standard_normal(DIM).astype(np.float32)
        idea[name], idea[f"{name}_scale"] = quantize(vector / np.linalg.norm(vector))
    candidates_pool = {f"idea-{i}": fake_doc(i, rng) for i in range(2000)}

    results: dict[str, object] = {"encode_5_texts": encodes, "sizes": {}}
    for n in args.sizes:
        segment = build_segment(n, rng)
        query = np.frombuffer(idea["vec"], dtype=np.int8).astype(np.float32) * idea["vec_scale"]
        search_t, score_t, total_t = [], [], []
        segment.common()  # taken once, as the first search after a tenth more ideas does
        for _ in range(args.queries):
            started = time.perf_counter()
            hits = segment.search(query, CANDIDATES, common=COMMON_WEIGHT)
            searched = time.perf_counter()
            scored = []
            for key, cosine in hits:
                other = candidates_pool[f"idea-{int(key.split('-')[1]) % 2000}"]
                parts = domain.parts_of(cosine, idea["theme"] == other["theme"], idea["tags"], other["tags"],
                                        best_complement_cosine(idea, other))
                scored.append({"id": key, "score": parts.score(settings)})
            scored.sort(key=lambda c: -c["score"])
            _ = domain.chosen(scored, settings)
            done = time.perf_counter()
            search_t.append(searched - started)
            score_t.append(done - searched)
            total_t.append(done - started)
        s, sc, t = summary(search_t), summary(score_t), summary(total_t)
        per_idea = segment.nbytes() / n
        results["sizes"][str(n)] = {"search": s, "score": sc, "total": t, "index_bytes_per_idea": per_idea}
        print(f"  {n:>12,}  {s['p50_ms']:>10.2f} {s['p95_ms']:>7.2f} {s['p99_ms']:>7.2f}  {sc['p50_ms']:>9.2f}  "
              f"{t['p50_ms']:>9.2f} {t['p99_ms']:>7.2f}  {per_idea:>16.0f}")
        del segment
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["peak_rss_mb"] = round(peak_mb)
    results["note"] = ("index bytes/idea is the search index (int8 vector, scale, projection onto the common "
                       "direction). The matching worker also "
                       "keeps what a score reads of each idea (theme, tags, the seeks/offers int8 vectors): about "
                       "1.5 KB an idea in all (tracemalloc, 20k ideas). The read-model document in the store "
                       "holds the same and the texts.")
    print(f"  peak memory of this run: {peak_mb:,.0f} MB; float32 vectors would take 2,048 bytes an idea")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "matching_speed.json").write_text(json.dumps(results, indent=2))
    print(f"  written to {RESULTS / 'matching_speed.json'}")


if __name__ == "__main__":
    main()
