"""Chaos: a stream of events through several notify workers while the harness breaks things.

Three worker instances with their own broker connections (mongomock cannot be shared between processes,
so they share one store in this process) consume 1,000 match.proposed events. Meanwhile the harness kills
a worker in the middle of handling (its connection dies after the effect, before the ack, and it stays
dead), restarts the broker (a private node of the tests' own), injects poison messages and delivers 100 events
twice. At the end it counts, per event, the notifications made: each must exist exactly once per author; every
poison message must be parked, intact and replayable. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import kombu
import pytest

import notify.bootstrap
from services import bus, outbox, store
from services.contract import Event, new_event
from tests.conftest import make_settings, queue_depth, queue_messages, wait_for
from tests.private_rabbitmq import PrivateRabbitMQ

EVENTS = 1000
DUPLICATES = 100
POISON = 10
WORKERS = 3
KILL_AT = 250  # the dying worker's n-th event
RESTART_AT = 600  # events published before the broker restarts


def person(i: int, city: str) -> dict[str, Any]:
    return new_event("participant.registered", {
        "participant_id": f"{city}-{i}", "city": city, "name": f"Person {i}", "email": None,
        "language": "de" if city == "karlsruhe" else "ru", "preferences": {"channels": ["inbox"]}, "version": 1,
    }, producer="ideas", city=city)


def proposal(n: int) -> dict[str, Any]:
    sides = [{"city": "karlsruhe", "idea_id": f"ka-idea-{n}", "author_id": f"karlsruhe-{n % 10}",
              "title": f"Idee {n}", "language": "de"},
             {"city": "krasnodar", "idea_id": f"kr-idea-{n}", "author_id": f"krasnodar-{n % 10}",
              "title": f"Идея {n}", "language": "ru"}]
    return new_event("match.proposed", {
        "match_id": f"match-{n}", "partnership": "karlsruhe-krasnodar", "kind": "idea", "score": 0.8,
        "parts": {"semantic": 0.8}, "reasons": [], "sides": sides, "version": 1,
    }, producer="matching", partnership="karlsruhe-krasnodar")


@pytest.mark.broker_restart
def test_chaos_nothing_lost_nothing_doubled_poison_parked(private_rabbitmq: PrivateRabbitMQ):
    settings = make_settings(private_rabbitmq.url, prefetch=5, retry_delays_ms=(100, 200, 400, 800, 1600))
    workers = [notify.bootstrap.bootstrap(settings).runtime for _ in range(WORKERS)]
    handled: Counter[str] = Counter()
    lock = threading.Lock()
    stops = [threading.Event() for _ in workers]
    killed = threading.Event()

    for index, runtime in enumerate(workers):
        handlers = {t: list(hs) for t, hs in runtime.handlers.items()}
        notify_people = handlers["match.proposed"][0]

        def counting(event: Event, notify_people=notify_people, index=index, runtime=runtime) -> None:
            notify_people(event)  # the effect is stored
            with lock:
                handled[event.id] += 1
                mine = handled[f"worker-{index}"] = handled[f"worker-{index}"] + 1
            if index == 0 and mine == KILL_AT and not killed.is_set():
                killed.set()  # killed now: after the effect, before the ack; it never comes back
                stops[0].set()
                runtime.running[0].connection.connection.sock.shutdown(socket.SHUT_RDWR)

        handlers["match.proposed"] = [counting]
        runtime.wiring.handlers = handlers

    writer = store.database(settings, "chaos_writer")
    relay = outbox.Relay("chaos", writer, ["stream"], lambda: bus.make_publisher(settings), poll_interval=0.05)
    db = workers[0].db
    started = time.monotonic()
    try:
        for runtime, stop in zip(workers, stops, strict=True):
            runtime.start_worker(stop)
        wait_for(lambda: all(r.consuming() for r in workers), 15, message="the workers")
        relay.start()

        people = [person(i, c) for c in ("karlsruhe", "krasnodar") for i in range(10)]
        writer.stream.insert_one(outbox.with_events({"_id": "people"}, people))
        relay.kick()
        wait_for(lambda: db["people"].count_documents({}) == 20, 30, message="the people")

        events = [proposal(n) for n in range(EVENTS)]
        for n in range(0, EVENTS, 50):
            writer.stream.insert_one(outbox.with_events({"_id": f"batch-{n}"}, events[n:n + 50]))
            relay.kick()
            if n == RESTART_AT:
                private_rabbitmq.restart_app()
            time.sleep(0.02)
        # Duplicates: 100 events published again with the same ids.
        writer.stream.insert_one(outbox.with_events({"_id": "duplicates"}, events[::EVENTS // DUPLICATES]))
        relay.kick()
        # Poison: not JSON, wrong schema, unknown type, future version, not an envelope.
        queue = workers[1].running[0].topology.queue
        bad = [b"{broken", json.dumps({**events[0], "payload": {"score": "high"}}).encode(),
               json.dumps({**events[1], "type": "match.exploded"}).encode(),
               json.dumps({**events[2], "version": 9}).encode(), b"[]"]
        poison = [bad[i % len(bad)] for i in range(POISON)]
        with bus.connection(settings, confirm=True) as conn:
            producer = kombu.Producer(conn.channel())
            for body in poison:
                producer.publish(body, exchange="", routing_key=queue, content_type="application/json",
                                 content_encoding="utf-8", timeout=10)

        notifications = db["notifications"]
        wait_for(lambda: notifications.count_documents({"event_type": "match.proposed"}) >= 2 * EVENTS, 120,
                 interval=0.2, message=f"{2 * EVENTS} notifications")
        dead = workers[1].running[0].topology.dead
        wait_for(lambda: queue_depth(settings, dead) == POISON, 30, message="the parked poison")
        wait_for(lambda: relay.backlog() == 0 and queue_depth(settings, queue) == 0, 30, message="drained")
        time.sleep(0.5)  # anything still in flight lands before counting

        per_event = Counter(d["event_id"] for d in notifications.find({"event_type": "match.proposed"}))
        keys = Counter(d["key"] for d in notifications.find({}, {"key": 1}))
        ids = {e["id"] for e in events}
        lost = sorted(i for i in ids if per_event[i] == 0)
        short = sorted(i for i in ids if 0 < per_event[i] < 2)
        doubled = sorted(i for i in ids if per_event[i] > 2)

        parked = queue_messages(settings, dead)
        bodies = [m.body if isinstance(m.body, bytes) else m.body.encode() for m in parked]
        reasons = Counter(m.headers["x-twincity-park-reason"] for m in parked)
        # Replayable: the parked bodies go back to the queue as they are; being poison, they park again.
        with bus.connection(settings, confirm=True) as conn:
            producer = kombu.Producer(conn.channel())
            for body in bodies:
                producer.publish(body, exchange="", routing_key=queue, content_type="application/json",
                                 content_encoding="utf-8", timeout=10)
        wait_for(lambda: queue_depth(settings, dead) == POISON, 30, message="the replayed poison parked again")
        replayed = len(queue_messages(settings, dead))
        deliveries = sum(handled[i] for i in ids)
        elapsed = time.monotonic() - started
    finally:
        for stop in stops:
            stop.set()
        relay.stop()
        for runtime in workers:
            runtime.relay.stop()
        private_rabbitmq.await_startup()
        bus.delete_topology(settings, [workers[0].consumers(1)[0].topology], exchange=True)
        store.forget(settings.mongo_url)

    rows = [
        ("events in the stream", EVENTS), ("published twice (duplicates)", DUPLICATES),
        ("poison messages injected", POISON), ("workers / killed mid-handling", f"{WORKERS} / 1"),
        ("broker restarts", 1), ("deliveries to handlers", deliveries),
        ("events handled (distinct)", sum(1 for i in ids if handled[i])),
        ("notifications expected (2 authors each)", 2 * EVENTS),
        ("notifications stored", sum(per_event[i] for i in ids)),
        ("events lost", len(lost)), ("events short of a notification", len(short)),
        ("events notified twice", len(doubled)), ("notification keys stored twice", sum(n > 1 for n in keys.values())),
        ("poison parked", len(parked)), ("poison parked again after replay", replayed),
        ("seconds", round(elapsed, 1)),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(["", "chaos run", *(f"  {name:<{width}}  {value:>8}" for name, value in rows)]))

    assert killed.is_set(), "the worker was killed mid-handling"
    assert not lost and not short and not doubled, (lost[:5], short[:5], doubled[:5])
    assert deliveries > EVENTS, "duplicates and redeliveries reached the handlers (and changed nothing)"
    assert len(parked) == POISON and sorted(bodies) == sorted(poison), "every poison parked, bodies intact"
    assert set(reasons) == {"undecodable", "invalid payload", "unknown event type", "unsupported version",
                            "not an event envelope"}
    assert replayed == POISON
