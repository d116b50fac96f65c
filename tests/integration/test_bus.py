"""The event flows of the kernel, against the real RabbitMQ and (the same tests) on memory:// + mongomock."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import kombu
import pytest

from services import bus, context, inbox, outbox, store
from services.bus import PublishError
from services.config import Settings
from services.contract import Event, new_event, parse_event
from tests.conftest import Consumers, make_settings, queue_depth, queue_messages, unique_service, wait_for
from tests.private_rabbitmq import PrivateRabbitMQ

IDEA = {
    "idea_id": "idea-1", "city": "karlsruhe", "partnerships": ["ka-kr"], "title": "Urban Gardening am Rhein",
    "description": "Gemeinschaftsgärten in beiden Städten", "theme": "ecology-health", "tags": ["garden"],
    "seeks": ["Partner in Krasnodar"], "offers": ["Saatgut"], "language": "de", "author_id": "p-1",
    "status": "open", "version": 1,
}


def withdrawn(n: int | str) -> dict[str, Any]:
    return new_event("idea.withdrawn", {"idea_id": str(n), "city": "karlsruhe", "version": 1}, producer="test")


class Effects:
    """A handler with a stored effect: one document per event, made once through the inbox."""

    def __init__(self, settings: Settings, name: str = "effects") -> None:
        self.collection = store.database(settings, "consumer")[name]
        self.deliveries: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.deliveries[event.id] += 1
        inbox.insert_once(self.collection, {"_id": event.id, "type": event.type, "payload": event.payload})

    def count(self) -> int:
        return self.collection.count_documents({})


def write_with_events(db: Any, doc_id: str, events: list[dict[str, Any]]) -> None:
    """A state change and its events in one single-document write (what a repository does)."""
    db.things.insert_one(outbox.with_events({"_id": doc_id, "state": "changed"}, events))


def relay_for(settings: Settings, db: Any, **kw: Any) -> outbox.Relay:
    return outbox.Relay("writer", db, ["things"], lambda: bus.make_publisher(settings), **kw)


def test_outbox_event_reaches_every_bound_queue_with_envelope_intact(settings: Settings, consumers: Consumers):
    got_a: list[Event] = []
    got_b: list[Event] = []
    got_other: list[Event] = []
    consumers.start(unique_service(), {"idea.submitted": [got_a.append]})
    consumers.start(unique_service(), {"idea.submitted": [got_b.append], "idea.withdrawn": [got_b.append]})
    [other] = consumers.start(unique_service(), {"participant.erased": [got_other.append]})

    db = store.database(settings, "writer")
    with context.correlated("req-abcdef12"):
        event = new_event("idea.submitted", IDEA, producer="ideas", city="karlsruhe", partnership="ka-kr")
    write_with_events(db, "idea-1", [event])
    assert relay_for(settings, db).relay_once() == 1

    wait_for(lambda: got_a and got_b, message="both bound services to receive the event")
    expected = parse_event(json.loads(json.dumps(event)))
    assert got_a == [expected] and got_b == [expected]
    received = got_a[0]
    assert received.id == event["id"] and received.correlation_id == "req-abcdef12"
    assert (received.producer, received.city, received.partnership) == ("ideas", "karlsruhe", "ka-kr")
    assert received.payload["title"] == "Urban Gardening am Rhein"
    assert db.things.find_one({"_id": "idea-1"})["_outbox"] == [], "published events leave the outbox"
    assert got_other == [] and queue_depth(settings, other.topology.queue) == 0


def test_failing_handler_retries_then_parks_while_the_rest_goes_on(transport: str, consumers: Consumers):
    settings = make_settings(transport, retry_delays_ms=(400, 800))
    consumers.settings = settings
    attempts: Counter[str] = Counter()
    handled: list[str] = []

    def handler(event: Event) -> None:
        if event.payload["idea_id"] == "poison":
            attempts["poison"] += 1
            raise RuntimeError("this idea always breaks the handler")
        handled.append(event.payload["idea_id"])

    [consumer] = consumers.start(unique_service(), {"idea.withdrawn": [handler]}, settings=settings)
    db = store.database(settings, "writer")
    write_with_events(db, "doc", [withdrawn("poison"), *[withdrawn(i) for i in range(5)]])
    relay_for(settings, db).relay_once()

    wait_for(lambda: len(handled) == 5, message="the messages behind the failing one")
    assert attempts["poison"] < 3, "the good messages did not wait for the failing one's retries"
    wait_for(lambda: queue_depth(settings, consumer.topology.dead) == 1, timeout=15, message="the parked message")
    assert attempts["poison"] == 3, "one try and one retry per configured delay"
    [parked] = queue_messages(settings, consumer.topology.dead)
    assert parked.headers["x-twincity-park-reason"] == "handler failed"
    assert "always breaks" in parked.headers["x-twincity-error"]
    assert parked.headers["x-twincity-attempts"] == 3
    assert json.loads(parked.body)["payload"]["idea_id"] == "poison", "parked with its body intact"
    assert sorted(handled) == ["0", "1", "2", "3", "4"]


def test_waiting_events_reach_a_batched_handler_together_in_order(transport: str, consumers: Consumers):
    settings = make_settings(transport, retry_delays_ms=(50,))
    consumers.settings = settings
    calls: list[list[str]] = []
    service = unique_service()
    handler = bus.batched(lambda events: calls.append([e.payload["idea_id"] for e in events]))
    [first] = consumers.start(service, {"idea.withdrawn": [handler]}, settings=settings)
    consumers.stop(first)  # the queue stays, bound: the events wait in it
    db = store.database(settings, "writer")
    write_with_events(db, "doc", [withdrawn(i) for i in range(20)])
    relay_for(settings, db).relay_once()
    wait_for(lambda: queue_depth(settings, first.topology.queue) == 20, message="the events waiting")

    [consumer] = consumers.start(service, {"idea.withdrawn": [handler]}, settings=settings)
    wait_for(lambda: sum(map(len, calls)) == 20, message="every event handled")
    assert [i for call in calls for i in call] == [str(i) for i in range(20)], "in the order they were sent"
    assert max(map(len, calls)) > 1, f"waiting events went to the handler together: {calls}"
    assert max(map(len, calls)) <= settings.prefetch
    wait_for(lambda: queue_depth(settings, consumer.topology.queue) == 0, message="all acked")


def test_a_failing_batch_is_handled_one_event_at_a_time(transport: str, consumers: Consumers):
    settings = make_settings(transport, retry_delays_ms=(50,))
    consumers.settings = settings
    handled: Counter[str] = Counter()
    sizes: list[int] = []
    service = unique_service()

    def many(events: list[Event]) -> None:
        sizes.append(len(events))
        if any(e.payload["idea_id"] == "poison" for e in events):
            raise RuntimeError("one bad event in the batch")
        handled.update(e.payload["idea_id"] for e in events)

    handler = bus.batched(many)
    [first] = consumers.start(service, {"idea.withdrawn": [handler]}, settings=settings)
    consumers.stop(first)
    db = store.database(settings, "writer")
    write_with_events(db, "doc", [*[withdrawn(i) for i in range(3)], withdrawn("poison"),
                                  *[withdrawn(i) for i in range(3, 6)]])
    relay_for(settings, db).relay_once()
    wait_for(lambda: queue_depth(settings, first.topology.queue) == 7, message="the events waiting")

    [consumer] = consumers.start(service, {"idea.withdrawn": [handler]}, settings=settings)
    wait_for(lambda: queue_depth(settings, consumer.topology.dead) == 1, timeout=15, message="the parked event")
    assert set(handled) == {str(i) for i in range(6)}, "the good events of the failed batch were handled"
    assert max(sizes) > 1, "they came as a batch first"
    [parked] = queue_messages(settings, consumer.topology.dead)
    assert json.loads(parked.body)["payload"]["idea_id"] == "poison"
    assert parked.headers["x-twincity-attempts"] == 2, "the bad event had its own try and retry"
    wait_for(lambda: queue_depth(settings, consumer.topology.queue) == 0, message="the rest acked")


def test_handled_messages_are_acked_together_and_none_is_left_unacked(transport: str, consumers: Consumers,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """Waiting messages are acked with one multiple ack on RabbitMQ, around those retried or parked on their own.

    The last waiting message fails (acked alone, before the others): the multiple ack must name the last of the
    handled ones, not a tag acked already, or the broker would close the channel.
    """
    settings = make_settings(transport, retry_delays_ms=())
    consumers.settings = settings
    acks: list[bool] = []
    original = kombu.Message.ack

    def counted(self: kombu.Message, multiple: bool = False) -> None:
        acks.append(multiple)
        original(self, multiple=multiple)

    monkeypatch.setattr(kombu.Message, "ack", counted)
    handled: list[str] = []

    def handler(event: Event) -> None:
        if event.payload["idea_id"].startswith("poison"):
            raise RuntimeError("this one breaks")
        handled.append(event.payload["idea_id"])

    service = unique_service()
    [first] = consumers.start(service, {"idea.withdrawn": [handler]}, settings=settings)
    consumers.stop(first)
    db = store.database(settings, "writer")
    sent = [*[withdrawn(i) for i in range(10)], withdrawn("poison-1"), *[withdrawn(i) for i in range(10, 20)],
            withdrawn("poison-2")]
    write_with_events(db, "doc", sent)
    relay_for(settings, db).relay_once()
    wait_for(lambda: queue_depth(settings, first.topology.queue) == len(sent), message="the events waiting")

    [consumer] = consumers.start(service, {"idea.withdrawn": [handler]}, settings=settings)
    wait_for(lambda: len(handled) == 20 and queue_depth(settings, consumer.topology.dead) == 2,
             message="every event handled or parked")
    consumers.stop(consumer)  # closing the channel gives back whatever was not acked
    assert queue_depth(settings, consumer.topology.queue) == 0, "every message was acked"
    assert consumer.connections_made == 1, "no channel error from acking a tag twice"
    assert sorted(handled, key=int) == [str(i) for i in range(20)]
    if not settings.embedded:
        assert True in acks and len(acks) < len(sent), f"handled messages acked together: {acks}"
    else:
        assert len(acks) == len(sent), "memory:// acks one message a call"


def test_duplicate_delivery_has_one_effect(settings: Settings, consumers: Consumers):
    effects = Effects(settings)
    consumers.start(unique_service(), {"idea.withdrawn": [effects]})
    event = withdrawn(1)
    db = store.database(settings, "writer")
    write_with_events(db, "a", [event])
    write_with_events(db, "b", [event])  # the same event id published twice (e.g. a relay re-run)
    relay_for(settings, db).relay_once()
    wait_for(lambda: effects.deliveries[event["id"]] == 2, message="both deliveries")
    assert effects.count() == 1


def test_connection_lost_after_effect_before_ack_redelivers_and_effect_exists_once(
    rabbit_settings: Settings, rabbit_consumers: Consumers, monkeypatch: pytest.MonkeyPatch
):
    settings, consumers = rabbit_settings, rabbit_consumers
    effects = Effects(settings)
    redelivered: list[bool] = []
    holder: dict[str, Any] = {}

    def handler(event: Event) -> None:
        effects(event)
        if effects.deliveries[event.id] == 1:
            # The effect is stored; now the connection dies before the consumer can ack.
            holder["consumer"].connection.connection.sock.shutdown(socket.SHUT_RDWR)

    original = bus.Consumer._on_message

    def watching(self: bus.Consumer, message: kombu.Message) -> None:
        redelivered.append(bool(message.delivery_info.get("redelivered")))
        original(self, message)

    monkeypatch.setattr(bus.Consumer, "_on_message", watching)
    [consumer] = consumers.start(unique_service(), {"idea.withdrawn": [handler]}, settings=settings)
    holder["consumer"] = consumer

    event = withdrawn(7)
    db = store.database(settings, "writer")
    write_with_events(db, "doc", [event])
    relay_for(settings, db).relay_once()

    wait_for(lambda: effects.deliveries[event["id"]] == 2, timeout=20, message="the redelivery")
    assert redelivered == [False, True], "the broker redelivered the unacked message"
    assert effects.count() == 1, "the effect exists once"
    wait_for(consumer.ready.is_set, message="the consumer to reconnect")


def test_a_consumer_keeps_its_connection_for_many_heartbeat_intervals(rabbit_consumers: Consumers):
    """Heartbeats every second, events now and then for five seconds: one connection, each event handled once.
    (The consumer's publishing connection is read only when it publishes; checking its heartbeats made the
    consumer reconnect every two intervals, and deliveries of the closing connection were handled again.)"""
    settings = rabbit_consumers.settings.replace(heartbeat=1)
    handled: Counter[str] = Counter()
    [consumer] = rabbit_consumers.start(unique_service(), {"idea.withdrawn": [lambda e: handled.update([e.id])]},
                                        settings=settings)
    db = store.database(settings, "writer")
    relay = relay_for(settings, db)
    events = [withdrawn(i) for i in range(10)]
    for i, event in enumerate(events):
        write_with_events(db, f"doc-{i}", [event])
        relay.relay_once()
        time.sleep(0.5)
    wait_for(lambda: len(handled) == 10, message="every event")
    assert consumer.connections_made == 1, "no reconnects"
    assert set(handled.values()) == {1}, "each event handled once"


def test_events_left_by_a_crash_before_publishing_are_published_on_restart(
    settings: Settings, consumers: Consumers
):
    effects = Effects(settings)
    consumers.start(unique_service(), {"idea.withdrawn": [effects]})
    db = store.database(settings, "writer")
    events = [withdrawn(i) for i in range(3)]

    # The process wrote its state and events, then died before its relay published (simulated: a
    # publisher that fails takes the place of the crash, so no event was removed).
    class Crashing(bus.Publisher):
        def publish(self, envelopes: Any) -> None:
            raise PublishError("process killed")

        def close(self) -> None:
            pass

    write_with_events(db, "doc", events)
    with pytest.raises(PublishError):
        outbox.Relay("writer", db, ["things"], Crashing).relay_once()
    assert len(db.things.find_one({"_id": "doc"})["_outbox"]) == 3, "nothing lost by the failed publish"

    restarted = relay_for(settings, db, poll_interval=0.05).start()  # its first pass takes everything
    try:
        wait_for(lambda: effects.count() == 3, message="the pending events after restart")
    finally:
        restarted.stop()
    assert db.things.find_one({"_id": "doc"})["_outbox"] == []
    assert sorted(effects.deliveries.values()) == [1, 1, 1]


def test_poison_messages_are_parked_with_their_reason(settings: Settings, consumers: Consumers):
    handled: list[Event] = []
    [consumer] = consumers.start(unique_service(), {"idea.submitted": [handled.append]})
    good = new_event("idea.submitted", IDEA, producer="test")
    wrong_schema = {**new_event("idea.submitted", IDEA, producer="test"), "payload": {"title": 5}}
    unknown_type = {**new_event("idea.submitted", IDEA, producer="test"), "type": "idea.exploded"}
    future = {**new_event("idea.submitted", IDEA, producer="test"), "version": 99}
    bodies = [b"{not json", b"\xff\xfe not utf-8", json.dumps(wrong_schema).encode(),
              json.dumps(unknown_type).encode(), json.dumps(future).encode(), b"[1, 2, 3]",
              json.dumps(good).encode()]
    with bus.connection(settings, confirm=True) as conn:
        producer = kombu.Producer(conn.channel())
        for body in bodies:
            producer.publish(body, exchange=settings.exchange, routing_key="idea.submitted",
                             content_type="application/json", content_encoding="utf-8")

    wait_for(lambda: handled, message="the good event behind the poison")
    wait_for(lambda: queue_depth(settings, consumer.topology.dead) == 6, message="six parked messages")
    parked = queue_messages(settings, consumer.topology.dead)
    assert [m.headers["x-twincity-park-reason"] for m in parked] == [
        "undecodable", "undecodable", "invalid payload", "unknown event type", "unsupported version",
        "not an event envelope",
    ]
    as_bytes = [m.body if isinstance(m.body, bytes) else m.body.encode("utf-8") for m in parked]
    assert as_bytes == bodies[:6], "parked bodies are intact, so they can be replayed"
    assert handled[0].id == good["id"]


def test_publisher_fails_fast_when_the_broker_is_unreachable():
    settings = make_settings("amqp://guest:guest@127.0.0.1:1//", confirm_timeout=1.0)
    publisher = bus.make_publisher(settings)
    started = time.monotonic()
    with pytest.raises(PublishError):
        publisher.publish([withdrawn(1)])
    assert time.monotonic() - started < 10


@pytest.mark.broker_restart
def test_broker_restart_in_the_middle_of_a_stream_every_event_handled_once(private_rabbitmq: PrivateRabbitMQ):
    settings = make_settings(private_rabbitmq.url)
    consumers = Consumers(settings)
    effects = Effects(settings)
    two = consumers.start(unique_service(), {"idea.withdrawn": [effects]}, count=2)
    db = store.database(settings, "writer")
    relay = relay_for(settings, db, poll_interval=0.05).start()
    total = 600
    restarted_at = -1
    try:
        for i in range(total):
            write_with_events(db, f"doc-{i}", [withdrawn(i)])
            relay.kick()
            if i == total // 3:
                wait_for(lambda: effects.count() > 50, message="the stream to be under way")
                restarted_at = effects.count()
                private_rabbitmq.restart_app()
            time.sleep(0.001)
        wait_for(lambda: effects.count() == total, timeout=90, interval=0.1, message=f"all {total} effects")
    finally:
        relay.stop()
        private_rabbitmq.await_startup()
        consumers.close()
        store.forget(settings.mongo_url)
    assert 0 < restarted_at < total, "the restart happened in the middle of the stream"
    assert all(c.connections_made >= 2 for c in two), "both consumers lost their connection and came back"
    assert relay.backlog() == 0
    assert effects.count() == total, "every event handled"
    assert all(n >= 1 for n in effects.deliveries.values()) and len(effects.deliveries) == total
    # Deliveries may exceed one (unconfirmed publishes are sent again); effects never do.
    assert effects.collection.count_documents({}) == len({e for e in effects.deliveries})


def test_a_stopping_consumer_finishes_and_acks_the_message_in_hand(rabbit_settings: Settings,
                                                                   rabbit_consumers: Consumers):
    """SIGTERM sets the stop flag while a handler runs: the message is finished and acked, not redelivered."""
    settings, consumers = rabbit_settings, rabbit_consumers
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow(event: Event) -> None:
        started.set()
        release.wait(10)
        done.append(event.id)

    [consumer] = consumers.start(unique_service(), {"idea.withdrawn": [slow]}, settings=settings)
    db = store.database(settings, "writer")
    write_with_events(db, "doc", [withdrawn(1)])
    relay_for(settings, db).relay_once()
    assert started.wait(10), "the handler began"
    consumers.stop_async(consumer)  # the stop comes while the message is in hand
    time.sleep(0.3)
    release.set()
    consumers.join(consumer)
    assert len(done) == 1
    assert queue_depth(settings, consumer.topology.queue) == 0, "acked: nothing left to redeliver"


def test_optional_types_are_bound_only_while_wanted(settings, consumers: Consumers):
    """bind_wanted: what is wanted is delivered, what is not is not; a wish stored while another process is
    unbinding (seen only by its second read) ends bound."""
    got: list[str] = []
    a, b, c = "city.registered", "participant.erased", "idea.withdrawn"
    payloads = {a: {"city": "x", "name": "X", "country": "DE", "language": "de"},
                b: {"participant_id": "p1", "city": "x"}, c: {"idea_id": "i1", "city": "x", "version": 2}}
    [consumer] = consumers.start(unique_service(), {t: [lambda e: got.append(e.type)] for t in payloads},
                                 optional=frozenset({b, c}), wanted=set)
    assert consumer.topology.event_types == (a,) and set(consumer.topology.optional_types) == {b, c}
    publisher = bus.make_publisher(settings)
    try:
        def publish_all() -> None:
            publisher.publish([new_event(t, payload, producer="test") for t, payload in payloads.items()])

        def rebind(*wishes: set[str]) -> set[str]:
            """bind_wanted, its reads of what is wanted answered by `wishes` in turn (the last one again)."""
            reads = list(wishes)

            def read() -> set[str]:
                return reads.pop(0) if len(reads) > 1 else reads[0]

            with bus.connection(settings) as conn:
                return bus.bind_wanted(conn.channel(), consumer.topology, read)

        publish_all()
        wait_for(lambda: got == [a], 15, message="the always-bound type only")
        assert rebind({b}) == {b}
        publish_all()
        wait_for(lambda: sorted(got) == sorted([a, a, b]), 15, message="the wanted type too")
        # Unbinding b and c, while another process stores a wish for c: the second read sees it.
        assert rebind(set(), {c}) == {c}
        got.clear()
        publish_all()
        wait_for(lambda: sorted(got) == sorted([a, c]), 15, message="c bound again, b not")
        time.sleep(0.3)
        assert sorted(got) == sorted([a, c])
    finally:
        publisher.close()


def test_a_consumer_consumes_when_what_is_wanted_can_not_be_read(settings, consumers: Consumers):
    """The store behind `wanted` is down: the optional bindings stay as they are, the rest is consumed."""
    got: list[str] = []

    def store_down() -> set[str]:
        raise ConnectionRefusedError("store down")

    [consumer] = consumers.start(unique_service(), {"city.registered": [lambda e: got.append(e.type)],
                                                    "idea.withdrawn": [lambda e: got.append(e.type)]},
                                 optional=frozenset({"idea.withdrawn"}), wanted=store_down)
    publisher = bus.make_publisher(settings)
    try:
        publisher.publish([new_event("city.registered", {"city": "x", "name": "X", "country": "DE",
                                                         "language": "de"}, producer="test")])
        wait_for(lambda: got == ["city.registered"], 15, message="the always-bound event")
        assert consumer.connections_made == 1, "no reconnect loop"
    finally:
        publisher.close()


def test_a_change_of_wishes_waits_for_a_sync_in_progress_and_is_bound_when_it_returns(settings):
    """The gap the lock closes: a sync that read the old wishes and is about to unbind holds the lock, so a
    subscription stored meanwhile (changing_bindings) is stored and bound only after it, never unbound after."""
    import notify.bootstrap

    runtime = notify.bootstrap.bootstrap(settings.replace(notify_secret="x")).runtime
    wishes: set[str] = set()
    runtime._wanted_events = lambda: set(wishes)
    topology = bus.topology_for(settings, "notify", runtime.handlers, notify.bootstrap.SPEC.optional_events)
    order: list[str] = []
    try:
        with runtime._bindings_lock():  # a sync in progress elsewhere
            def subscribe() -> None:
                with runtime.changing_bindings():
                    order.append("stored")
                    wishes.add("idea.submitted")
                order.append("answered")

            thread = threading.Thread(target=subscribe)
            thread.start()
            time.sleep(0.2)
            assert order == [], "the change waits for the sync to finish"
            order.append("sync done")
        thread.join(15)
        assert order == ["sync done", "stored", "answered"]
        publisher = bus.make_publisher(settings)
        try:
            publisher.publish([new_event("idea.withdrawn", {"idea_id": "i1", "city": "x", "version": 2},
                                         producer="test"),
                               new_event("idea.submitted", {"idea_id": "i2", "city": "x", "partnerships": ["p"],
                                                            "language": "de", "author_id": None, "status": "open",
                                                            "version": 1, "title": "T", "description": "D",
                                                            "theme": "ecology-health", "tags": [], "seeks": [],
                                                            "offers": []}, producer="test")])
        finally:
            publisher.close()
        wait_for(lambda: queue_depth(settings, topology.queue) == 1, 15, message="idea.submitted only, bound")
        [message] = queue_messages(settings, topology.queue)
        assert json.loads(message.body)["type"] == "idea.submitted"
    finally:
        bus.delete_topology(settings, [topology], exchange=True)
        store.forget(settings.mongo_url)
