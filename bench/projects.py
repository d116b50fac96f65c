"""What forming a project costs: a confirmed match becoming a project (or joining one) through the use case, with
its per-partnership lease (two store writes more), against the bare insert of the same project document.

    .venv/bin/python bench/projects.py [--n 2000] [--mongo mongomock://bench]

Prints p50/p95 per operation in microseconds. The store is mongomock by default (the embedded mode); point --mongo
at a real MongoDB (mongodb://...) to measure it there.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from matching import domain, repository, usecases
from services import store


def confirmed(i: int, partner: str) -> dict:
    sides = [{"city": "ka", "idea_id": f"a{i}", "author_id": f"lena{i}", "participant_id": None, "title": "A",
              "language": "de", "answer": "accepted"},
             {"city": "kr", "idea_id": f"{partner}{i}", "author_id": f"{partner}-author{i}", "participant_id": None,
              "title": "B", "language": "ru", "answer": "accepted"}]
    return {"_id": f"m-{partner}-{i}", "pair": f"idea:a{i}|{partner}{i}", "kind": "idea", "partnership": "ka-kr",
            "score": 0.7, "parts": {}, "reasons": [], "status": "confirmed", "version": 3, "sides": sides,
            "created_at": datetime.now(UTC), "expires_at": datetime.now(UTC)}


def percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"p50 {statistics.median(samples) * 1e6:7.0f} µs   p95 {q[18] * 1e6:7.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--mongo", default="mongomock://bench-projects")
    args = parser.parse_args()
    db = store.client_for(args.mongo)["bench_projects"]
    store.ensure_indexes(db, repository.INDEXES)
    uow = repository.unit_of_work(db)
    db["partnerships"].insert_one({"_id": "ka-kr", "cities": ["ka", "kr"]})
    db["matches"].insert_many([confirmed(i, p) for i in range(args.n) for p in ("b", "c")])
    raw, formed, joined = [], [], []
    for i in range(args.n):
        doc = domain.Project.form(confirmed(i, "b"), {}, ["ka", "kr"], cause="bench", at=datetime.now(UTC)).doc
        doc = {**doc, "_id": f"raw-{i}", "match_id": f"raw-{i}"}
        start = time.perf_counter()
        db["raw_projects"].insert_one(doc)
        raw.append(time.perf_counter() - start)
    for i in range(args.n):
        start = time.perf_counter()
        usecases.form_project(uow, f"m-b-{i}", "bench", lambda: datetime.now(UTC))
        formed.append(time.perf_counter() - start)
    for i in range(args.n):
        start = time.perf_counter()
        usecases.form_project(uow, f"m-c-{i}", "bench", lambda: datetime.now(UTC))
        joined.append(time.perf_counter() - start)
    assert db["projects"].count_documents({}) == args.n
    print(f"{args.n} projects on {args.mongo.split(':')[0]}")
    print(f"  baseline: insert of the project document   {percentiles(raw)}")
    print(f"  a confirmed match forms a project           {percentiles(formed)}")
    print(f"  a second match of its idea joins it         {percentiles(joined)}")
    store.client_for(args.mongo).drop_database("bench_projects")


if __name__ == "__main__":
    main()
