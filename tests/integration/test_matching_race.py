"""Two matching workers on one queue, fitting ideas arriving at the same moment: proposed once, never missed.

Each worker has its own engine and in-memory index (as separate processes would) and its own broker
connection; they share the store (mongomock cannot be shared between processes, so they are threads).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

import matching.bootstrap
from services import bus, outbox, store
from services.contract import Event, new_event
from tests.conftest import make_settings, wait_for

ROUNDS = 40

GARDEN_DE = {"title": "Gemeinschaftsgärten gegen die Sommerhitze",
             "description": "Nachbarschaften legen gemeinsam Gärten an und pflanzen Bäume gegen die Hitze.",
             "theme": "ecology-health", "tags": ["garten"], "seeks": [], "offers": []}
GARDEN_RU = {"title": "Общественные сады против летней жары",
             "description": "Соседи вместе разбивают сады и сажают деревья, чтобы защитить город от жары.",
             "theme": "ecology-health", "tags": ["сад"], "seeks": [], "offers": []}


def idea_event(idea_id: str, city: str, partnership: str, body: dict[str, Any], lang: str) -> dict[str, Any]:
    payload = {"idea_id": idea_id, "city": city, "partnerships": [partnership], "language": lang,
               "author_id": None, "status": "open", "version": 1, **body}
    return new_event("idea.submitted", payload, producer="ideas", city=city, partnership=partnership)


@pytest.mark.parametrize("overlap", ["natural", "forced"])
def test_two_workers_propose_each_fitting_pair_exactly_once(rabbitmq: str, overlap: str):
    """natural: the workers race as they will. forced: each waits (briefly) until the partner idea is
    stored before it searches, so that a split pair is seen by both and both try to propose it."""
    settings = make_settings(rabbitmq, prefetch=1, retry_delays_ms=(50, 100, 200, 400))
    services = [matching.bootstrap.bootstrap(settings) for _ in range(2)]
    workers = [service.runtime for service in services]
    assert services[0].engine is not services[1].engine
    handled_by: dict[str, str] = {}
    lock = threading.Lock()
    attempts: Counter[str] = Counter()

    if overlap == "forced":
        for service in services:
            runtime, engine, matches = service.runtime, service.engine, service.uow.matches
            original_match = engine.proposals_for_idea
            original_propose = matches.propose

            def match_after_partner(idea: dict, original_match=original_match, db=runtime.db, **_: Any) -> Any:
                kind, _, n = idea["_id"].partition("-")
                partner = f"{'ru' if kind == 'de' else 'de'}-{n}"
                pause = threading.Event()
                for _ in range(30):  # up to 0.3 s: long enough when the other worker has it in hand
                    if db["ideas"].count_documents({"_id": partner}):
                        break
                    pause.wait(0.01)
                return original_match(idea)  # and it syncs now, after the wait (whatever the handler did)

            def counting_propose(match: Any, original_propose=original_propose) -> bool:
                with lock:
                    attempts[match.get("pair")] += 1
                return original_propose(match)

            engine.proposals_for_idea = match_after_partner
            matches.propose = counting_propose

    # Record which worker handled which idea event (wrapping each worker's own handler).
    for name, runtime in zip(("w1", "w2"), workers, strict=True):
        handlers = dict(runtime.handlers)
        original = handlers["idea.submitted"][0]

        def recording(event: Event, original=original, name=name) -> None:
            original(event)
            with lock:
                handled_by[event.payload["idea_id"]] = name

        handlers["idea.submitted"] = [recording]
        runtime.wiring.handlers = handlers

    stop = threading.Event()
    db = workers[0].db
    writer = store.database(settings, "race_writer")
    relay = outbox.Relay("race", writer, ["events"], lambda: bus.make_publisher(settings))
    try:
        for runtime in workers:
            runtime.start_worker(stop, concurrency=1)
        wait_for(lambda: all(rt.consuming() for rt in workers), 15, message="both workers consuming")

        # One partnership per round, so rounds cannot crowd each other out of the top-k.
        setup = []
        for i in range(ROUNDS):
            pid = f"ka{i}-kr{i}"
            setup += [new_event("city.registered", {"city": f"ka{i}", "name": "Karlsruhe", "country": "DE",
                                                    "language": "de"}, producer="gateway"),
                      new_event("city.registered", {"city": f"kr{i}", "name": "Краснодар", "country": "RU",
                                                    "language": "ru"}, producer="gateway"),
                      new_event("partnership.formed", {"partnership_id": pid, "name": pid,
                                                       "cities": [f"ka{i}", f"kr{i}"], "themes": []},
                                producer="gateway")]
        writer.events.insert_one(outbox.with_events({"_id": "setup"}, setup))
        relay.relay_once()
        wait_for(lambda: db["partnerships"].count_documents({}) == ROUNDS, 30, message="the partnerships")

        # Each round: both ideas in one confirmed batch, so they reach the two workers at the same moment. A
        # round starts once the last one is handled: with prefetch 1, the broker then deals the two ideas to
        # the two idle workers. (Sent back to back, the rounds queued up and the workers fell into step: a
        # worker often took both ideas of a pair one after the other, and the race was rarely run.)
        for i in range(ROUNDS):
            pid = f"ka{i}-kr{i}"
            pair = [idea_event(f"de-{i}", f"ka{i}", pid, GARDEN_DE, "de"),
                    idea_event(f"ru-{i}", f"kr{i}", pid, GARDEN_RU, "ru")]
            writer.events.insert_one(outbox.with_events({"_id": f"round-{i}"}, pair))
            relay.relay_once()
            wait_for(lambda i=i: {f"de-{i}", f"ru-{i}"} <= handled_by.keys(), 30, interval=0.002,
                     message=f"round {i} handled")

        def all_proposed() -> bool:
            return db["matches"].count_documents({"kind": "idea"}) >= ROUNDS and len(handled_by) == 2 * ROUNDS

        wait_for(all_proposed, 60, interval=0.05, message=f"{ROUNDS} proposals")
        # Let any late duplicate attempt land before counting: both outboxes drained, then a moment more.
        wait_for(lambda: all(r.relay.backlog() == 0 for r in workers), 15, message="the outboxes to drain")
        stop.wait(0.5)
    finally:
        stop.set()
        relay.stop()
        for runtime in workers:
            runtime.relay.stop()
        bus.delete_topology(settings, [workers[0].consumers(1)[0].topology], exchange=True)
        store.forget(settings.mongo_url)

    pairs = Counter(m["pair"] for m in db["matches"].find({"kind": "idea"}))
    expected = {f"idea:de-{i}|ru-{i}" for i in range(ROUNDS)}
    assert set(pairs) == expected, f"missed: {expected - set(pairs)}, unexpected: {set(pairs) - expected}"
    assert set(pairs.values()) == {1}, f"proposed twice: {[p for p, n in pairs.items() if n > 1]}"
    split = sum(handled_by[f"de-{i}"] != handled_by[f"ru-{i}"] for i in range(ROUNDS))
    both_tried = sum(attempts[p] >= 2 for p in expected)
    print(f"{overlap}: {split} of {ROUNDS} rounds split across the workers; {both_tried} pairs proposed by both")
    assert split >= ROUNDS // 4, "the race was hardly exercised: the two workers rarely split a pair"
    if overlap == "forced":
        assert both_tried >= ROUNDS // 4, "both workers should have tried to propose the split pairs"
