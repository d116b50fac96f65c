"""Ideas that wait in matching's queue are handled together: one encoder call, one index sync, one search of
each city's index, the same proposals."""

from __future__ import annotations

import threading
from typing import Any

import matching.bootstrap
from services import bus, context, outbox, store
from services.contract import new_event
from tests.conftest import make_settings, wait_for
from tests.integration.test_matching_race import GARDEN_DE, GARDEN_RU, idea_event

ROUNDS = 12


def test_waiting_ideas_are_encoded_together_and_each_pair_is_proposed_once(rabbitmq: str):
    settings = make_settings(rabbitmq)
    service = matching.bootstrap.bootstrap(settings)
    runtime, engine = service.runtime, service.engine
    encoded: list[int] = []  # texts per encoder call
    proposed_in: dict[str, str | None] = {}  # pair -> correlation id in force when it was proposed
    original_encode, original_propose = engine.encoder.encode, service.uow.matches.propose

    def counting_encode(texts: Any) -> Any:
        encoded.append(len(texts))
        return original_encode(texts)

    def recording_propose(match: Any) -> bool:
        proposed_in[match.get("pair")] = context.correlation_id.get()
        return original_propose(match)

    searched_together: list[int] = []  # ideas per nearest_many call
    original_nearest = engine.nearest_many

    def counting_nearest(ideas: Any) -> Any:
        searched_together.append(len(ideas))
        return original_nearest(ideas)

    engine.encoder.encode = counting_encode
    service.uow.matches.propose = recording_propose
    engine.nearest_many = counting_nearest

    writer = store.database(settings, "batch_writer")
    relay = outbox.Relay("batch", writer, ["events"], lambda: bus.make_publisher(settings))
    stop = threading.Event()
    db = runtime.db
    try:
        runtime.start_worker(stop)
        wait_for(runtime.consuming, 15, message="the worker consuming")
        setup = []
        for i in range(ROUNDS):
            setup += [new_event("city.registered", {"city": f"ka{i}", "name": "Karlsruhe", "country": "DE",
                                                    "language": "de"}, producer="gateway"),
                      new_event("city.registered", {"city": f"kr{i}", "name": "Краснодар", "country": "RU",
                                                    "language": "ru"}, producer="gateway"),
                      new_event("partnership.formed", {"partnership_id": f"p{i}", "name": f"p{i}",
                                                       "cities": [f"ka{i}", f"kr{i}"], "themes": []},
                                producer="gateway")]
        writer.events.insert_one(outbox.with_events({"_id": "setup"}, setup))
        relay.relay_once()
        wait_for(lambda: db["partnerships"].count_documents({}) == ROUNDS, 30, message="the partnerships")

        # The worker is held while all ideas are published, so they wait in its queue.
        hold = threading.Event()
        original_sync = engine.sync

        def held_sync() -> None:
            hold.wait(30)
            original_sync()

        engine.sync = held_sync
        ideas = []
        for i in range(ROUNDS):
            with context.correlated(f"round-{i}"):
                ideas += [idea_event(f"de-{i}", f"ka{i}", f"p{i}", GARDEN_DE, "de"),
                          idea_event(f"ru-{i}", f"kr{i}", f"p{i}", GARDEN_RU, "ru")]
        writer.events.insert_one(outbox.with_events({"_id": "ideas"}, ideas))
        relay.relay_once()
        hold.set()
        wait_for(lambda: db["matches"].count_documents({"kind": "idea"}) >= ROUNDS, 60, message="the proposals")
        wait_for(lambda: runtime.relay.backlog() == 0, 15, message="the outbox to drain")
    finally:
        stop.set()
        relay.stop()
        runtime.relay.stop()
        bus.delete_topology(settings, [runtime.consumers(1)[0].topology], exchange=True)
        store.forget(settings.mongo_url)

    pairs = [m["pair"] for m in db["matches"].find({"kind": "idea"})]
    assert sorted(pairs) == sorted(f"idea:de-{i}|ru-{i}" for i in range(ROUNDS)), "each pair proposed once"
    print(f"texts per encoder call: {encoded}")
    assert len(encoded) < 2 * ROUNDS and max(encoded) > 2, f"ideas were encoded together: {encoded}"
    assert searched_together and max(searched_together) > 1, "their nearest ideas were searched together"
    for i in range(ROUNDS):
        assert proposed_in[f"idea:de-{i}|ru-{i}"] == f"round-{i}", "a proposal carries its own idea's correlation"
    for doc in db["ideas"].find():
        assert doc["vec_scale"] > 0 and doc["seeks_vec_scale"] == 0, "text vector stored; no seeks, no vector"
