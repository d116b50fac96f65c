"""Matching worker, in-process: CPU per new idea of the whole handler, by batch size, with no broker or HTTP.

    .venv/bin/python bench/matching_worker.py                      # 3,000 ideas, batches of 1 and 4
    .venv/bin/python bench/matching_worker.py --ideas 6000 --batches 1 2 8
    .venv/bin/python bench/matching_worker.py --profile            # and cProfile's top functions (slower)

What the matching worker does for `idea.submitted`, measured apart from the rest of the pipeline: the
service's own Runtime (its handlers, engine, encoder, mongomock store with the
platform's indexes) gets the pipeline bench's ideas (bench/pipeline.py `Ideas`: pairs of a Karlsruhe idea and
its reworded Krasnodar partner, threshold 0.85, so each pair makes one match) as parsed events, handed to the
batched handler `--batch` at a time, as the consumer does with events that wait in the queue. The first half
fills the store and the index; the second half is measured: process CPU time per idea (user + system), and
the proposals made. Nothing is published (the relay does not run; its outbox is left in the store). Figures,
not pass/fail: compare runs of the same machine, side by side.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "matching-service"), str(Path(__file__).parent)]

from pipeline import THRESHOLD, Ideas  # noqa: E402

import matching.bootstrap  # noqa: E402
from services import store  # noqa: E402
from services.config import Settings  # noqa: E402
from services.contract import new_event, parse_event  # noqa: E402


def run(ideas: int, batch: int, profile: bool) -> dict[str, float]:
    settings = Settings.from_env().replace(amqp_url="memory://", mongo_url=f"mongomock://bench-{uuid.uuid4().hex}")
    service = matching.bootstrap.bootstrap(settings)
    try:
        handlers = service.runtime.handlers
        setup = [new_event("city.registered", {"city": "karlsruhe", "name": "Karlsruhe", "country": "DE",
                                               "language": "de"}, producer="gateway"),
                 new_event("city.registered", {"city": "krasnodar", "name": "Краснодар", "country": "RU",
                                               "language": "ru"}, producer="gateway"),
                 new_event("partnership.formed", {"partnership_id": "p", "name": "Karlsruhe–Krasnodar",
                                                  "cities": ["karlsruhe", "krasnodar"], "themes": []},
                           producer="gateway")]
        for raw in setup:
            for handler in handlers[raw["type"]]:
                handler(parse_event(raw))
        repo = service.repo
        repo.put_settings("p", dataclasses.replace(repo.settings("p"), threshold=THRESHOLD))
        made = Ideas(seed=3)
        events = []
        for i in range(ideas):
            city, body = made.next({"karlsruhe": None, "krasnodar": None})
            payload = {"idea_id": f"idea-{i}", "city": city, "partnerships": ["p"], "author_id": None,
                       "status": "open", "version": 1, **{k: v for k, v in body.items() if k != "author_id"},
                       "language": "de" if city == "karlsruhe" else "ru"}
            events.append(new_event("idea.submitted", payload, producer="ideas", city=city, partnership="p"))
        many = handlers["idea.submitted"][0].many
        half = ideas // 2
        for start in range(0, half, batch):
            many([parse_event(raw) for raw in events[start:start + batch]])
        matches = service.uow.matches.collection
        proposals = matches.count_documents({})
        profiler = cProfile.Profile() if profile else None
        cpu = time.process_time()
        wall = time.perf_counter()
        if profiler:
            profiler.enable()
        for start in range(half, ideas, batch):
            many([parse_event(raw) for raw in events[start:start + batch]])
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        measured = ideas - half
        result = {"batch": batch, "ideas_stored_before": half, "ideas_measured": measured,
                  "cpu_ms_per_idea": round(cpu / measured * 1000, 3),
                  "wall_ms_per_idea": round(wall / measured * 1000, 3),
                  "proposals_per_idea": round((matches.count_documents({}) - proposals) / measured, 3)}
        if profiler:
            print(f"\n  cProfile, batch {batch} (its overhead inflates Python-heavy parts):")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return result
    finally:
        store.forget(settings.mongo_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ideas", type=int, default=3000, help="ideas in all; the second half is measured")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="events handed over at once")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured half too")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the handler logs a line an idea
    from matching.vectors import blas

    print(f"matching worker in-process, {args.ideas} ideas (the second half measured); BLAS: {blas()}")
    print(f"  {'batch':>5}  {'CPU ms/idea':>11}  {'wall ms/idea':>12}  {'proposals/idea':>14}")
    for batch in args.batches:
        r = run(args.ideas, batch, args.profile)
        print(f"  {r['batch']:>5}  {r['cpu_ms_per_idea']:>11.2f}  {r['wall_ms_per_idea']:>12.2f}  "
              f"{r['proposals_per_idea']:>14.2f}")


if __name__ == "__main__":
    main()
