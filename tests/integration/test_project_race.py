"""Two matching workers on one queue, two confirmations of one idea handled at the same moment: one project holds
the idea, its two partner ideas and their authors; never two projects of one idea (issue 20).

As in test_matching_race: the workers are threads (mongomock is one process's store), each with its own broker
connection; the confirmations come through real RabbitMQ in one confirmed batch, so that with prefetch 1 the broker
deals them to the two idle workers at once.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import matching.bootstrap
from services import bus, outbox, store
from services.contract import Event, new_event
from tests.conftest import make_settings, wait_for

ROUNDS = 15


def side(city: str, idea: str, author: str) -> dict[str, str]:
    return {"city": city, "idea_id": idea, "author_id": author, "participant_id": None, "title": idea,
            "language": "de" if city.startswith("ka") else "ru", "answer": "accepted"}


def confirmed(i: int, partner: str) -> dict:
    """Karlsruhe's idea a-i with Krasnodar's `partner`-i, both sides accepted."""
    pid = f"ka{i}-kr{i}"
    return {"_id": f"match-{partner}-{i}", "pair": f"idea:a-{i}|{partner}-{i}", "kind": "idea", "partnership": pid,
            "score": 0.7, "parts": {}, "reasons": [], "status": "confirmed", "version": 3,
            "created_at": datetime.now(UTC), "expires_at": datetime.now(UTC),
            "sides": [side(f"ka{i}", f"a-{i}", f"lena-{i}"), side(f"kr{i}", f"{partner}-{i}", f"{partner}-author-{i}")]}


def confirmation(match: dict) -> dict:
    return new_event("match.confirmed", {"match_id": match["_id"], "partnership": match["partnership"],
                                         "status": "confirmed", "sides": [], "version": 3},
                     producer="matching", partnership=match["partnership"])


def test_two_confirmations_of_one_idea_at_once_make_one_project(rabbitmq: str):
    settings = make_settings(rabbitmq, prefetch=1, retry_delays_ms=(50, 100, 200, 400))
    workers = [matching.bootstrap.bootstrap(settings).runtime for _ in range(2)]
    handled_by: dict[str, str] = {}
    lock = threading.Lock()
    for name, runtime in zip(("w1", "w2"), workers, strict=True):
        handlers = dict(runtime.handlers)
        [original] = handlers["match.confirmed"]

        def recording(event: Event, original=original, name=name) -> None:
            original(event)
            with lock:
                handled_by[event.payload["match_id"]] = name

        handlers["match.confirmed"] = [recording]
        runtime.wiring.handlers = handlers

    stop = threading.Event()
    db = workers[0].db
    writer = store.database(settings, "project_race_writer")
    relay = outbox.Relay("race", writer, ["events"], lambda: bus.make_publisher(settings))
    try:
        for i in range(ROUNDS):
            db["partnerships"].insert_one({"_id": f"ka{i}-kr{i}", "cities": [f"ka{i}", f"kr{i}"]})
            db["ideas"].insert_many([{"_id": f"{k}-{i}", "title": f"Idee {k}{i}"} for k in "abc"])
            db["matches"].insert_many([confirmed(i, "b"), confirmed(i, "c")])
        for runtime in workers:
            runtime.start_worker(stop, concurrency=1)
        wait_for(lambda: all(rt.consuming() for rt in workers), 15, message="both workers consuming")
        for i in range(ROUNDS):
            both = [confirmation(confirmed(i, "b")), confirmation(confirmed(i, "c"))]
            writer.events.insert_one(outbox.with_events({"_id": f"round-{i}"}, both))
            relay.relay_once()
            wait_for(lambda i=i: {f"match-b-{i}", f"match-c-{i}"} <= handled_by.keys(), 30, interval=0.002,
                     message=f"round {i} handled")
        wait_for(lambda: all(r.relay.backlog() == 0 for r in workers), 15, message="the outboxes to drain")
    finally:
        stop.set()
        relay.stop()
        for runtime in workers:
            runtime.relay.stop()
        bus.delete_topology(settings, [workers[0].consumers(1)[0].topology], exchange=True)
        store.forget(settings.mongo_url)

    projects = list(db["projects"].find({}))
    per_idea = Counter(i for p in projects for i in p["idea_ids"])
    assert len(projects) == ROUNDS and set(per_idea.values()) == {1}, f"an idea in two projects: {per_idea}"
    for p in projects:
        i = p["partnership"].removeprefix("ka").partition("-")[0]
        assert sorted(p["idea_ids"]) == [f"a-{i}", f"b-{i}", f"c-{i}"]
        assert sorted(m["participant_id"] for m in p["members"]) == sorted(
            [f"lena-{i}", f"b-author-{i}", f"c-author-{i}"])
        assert sorted(p["match_ids"]) == [f"match-b-{i}", f"match-c-{i}"]
    # The race was run: in most rounds the two confirmations went to the two workers.
    split = sum(handled_by[f"match-b-{i}"] != handled_by[f"match-c-{i}"] for i in range(ROUNDS))
    assert split >= ROUNDS // 2, f"the workers split only {split} of {ROUNDS} rounds"
