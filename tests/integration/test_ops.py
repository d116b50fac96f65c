"""`twincity ops` against the real RabbitMQ: topology, queue depths, parked messages, outbox backlogs."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from click.testing import CliRunner, Result

from services import bus, outbox, store
from services.config import Settings
from services.contract import Event, new_event
from tests.conftest import Consumers, make_settings, queue_depth, queue_messages, wait_for
from twincity import ops
from twincity.cli import main


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker with these settings would have (the CLI reads only the environment)."""
    return {
        "AMQP_URL": settings.amqp_url,
        "MONGO_URL": settings.mongo_url,
        "TWINCITY_EXCHANGE": settings.exchange,
        "TWINCITY_NAMESPACE": settings.namespace,
        "BUS_RETRY_DELAYS_MS": ",".join(map(str, settings.retry_delays_ms)),
        "BUS_CONFIRM_TIMEOUT": str(settings.confirm_timeout),
        "TWINCITY_MEMORY_STORE": "",
        **extra,
    }


def run(settings: Settings, *args: str, **extra_env: str) -> Result:
    return CliRunner().invoke(main, ["ops", *args], env=env_for(settings, **extra_env), catch_exceptions=False)


def run_json(settings: Settings, *args: str, **extra_env: str) -> Any:
    result = run(settings, *args, "--json", **extra_env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def withdrawn(n: int | str) -> dict[str, Any]:
    return new_event("idea.withdrawn", {"idea_id": str(n), "city": "karlsruhe", "version": 1}, producer="test")


def park_directly(settings: Settings, service: str, bodies: list[bytes], reason: str = "handler failed",
                  message_ids: list[str | None] | None = None) -> None:
    """Put messages into a parking queue as the consumer does (the parking headers included)."""
    dead = ops.topology(settings, service).dead
    with bus.connection(settings, confirm=True) as conn:
        producer = kombu.Producer(conn.channel())
        for i, body in enumerate(bodies):
            producer.publish(
                body, exchange="", routing_key=dead, content_type="application/json", content_encoding="utf-8",
                delivery_mode=2, message_id=(message_ids or [None] * len(bodies))[i], timeout=5,
                headers={
                    "x-twincity-park-reason": reason, "x-twincity-error": f"RuntimeError('broken {i}')",
                    "x-twincity-parked-at": time.time(), "x-twincity-attempts": 3,
                    "x-twincity-routing-key": "idea.withdrawn", bus.ATTEMPT_HEADER: 2,
                    "x-custom": "kept",
                },
            )


@pytest.fixture
def ops_settings(rabbit_settings: Settings) -> Iterator[Settings]:
    """A namespace and exchange of the test's own; every queue of the three services is removed afterwards."""
    yield rabbit_settings
    bus.delete_topology(rabbit_settings, ops.topologies(rabbit_settings), exchange=True)


# --- without a broker ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kombu_url", "pika_url"), [
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    ("amqp://rabbit", "amqp://rabbit/%2F"),
    ("pyamqp://u:p%40ss@rabbit:5673/twincity", "amqp://u:p%40ss@rabbit:5673/twincity"),
    ("amqps://rabbit//prod", "amqps://rabbit/%2Fprod"),
    ("amqp://rabbit/%2F", "amqp://rabbit/%2F"),
])
def test_kombu_urls_become_pika_urls(kombu_url: str, pika_url: str):
    assert ops.pika_url(kombu_url) == pika_url


def test_the_event_types_ops_reads_are_those_a_wired_worker_binds():
    import importlib

    settings = Settings(mongo_url="mongomock://ops-runtime-check", notify_secret="x")
    try:
        for service, module in ops.WORKERS.items():
            runtime = importlib.import_module(module).bootstrap(settings).runtime
            assert ops.event_types(service) == tuple(sorted(runtime.handlers)), service
    finally:
        store.forget(settings.mongo_url)


def test_configuration_errors_name_the_variable():
    settings = make_settings("amqp://guest:guest@127.0.0.1:5672//")
    result = run(settings, "queues", AMQP_URL="rabbit:5672")
    assert result.exit_code == 1 and "AMQP_URL" in result.output
    result = run(settings, "topology", TWINCITY_NAMESPACE="Not A Name")
    assert result.exit_code == 1 and "TWINCITY_NAMESPACE" in result.output
    result = run(settings, "parked", "list", "ideas", AMQP_URL="memory://")
    assert result.exit_code == 1 and "AMQP_URL" in result.output and "needs a broker" in result.output


def test_an_unreachable_broker_is_a_clear_error():
    settings = make_settings("amqp://guest:secret@127.0.0.1:1//")
    result = run(settings, "queues")
    assert result.exit_code == 1 and "does not answer" in result.output
    assert "secret" not in result.output, "the password is not printed"


# --- topology and queues ------------------------------------------------------------------------------------------

def test_topology_check_fails_on_an_empty_namespace_declare_creates_then_it_passes(ops_settings: Settings):
    settings = ops_settings
    result = run(settings, "topology")
    assert result.exit_code == 1
    assert "missing" in result.stdout and "--declare" in result.output
    assert f"{settings.namespace}.ideas.events" in result.stdout and "not checked" in result.stdout

    checks = {(c["service"], c["kind"], c["name"]): c["status"]
              for c in json.loads(run(settings, "topology", "--json").stdout)["checks"]}
    assert checks[("*", "exchange", settings.exchange)] == "missing"
    for service in ("ideas", "matching", "notify"):
        base = f"{settings.namespace}.{service}"
        for name, kind in [(f"{base}.events", "queue"), (f"{base}.dead", "dead"),
                           (f"{base}.retry.50ms", "retry"), (f"{base}.retry.100ms", "retry")]:
            assert checks[(service, kind, name)] == "missing"

    declared = run(settings, "topology", "--declare")
    assert declared.exit_code == 0, declared.output
    assert "missing" not in declared.stdout and "everything is in place" in declared.stdout

    again = run_json(settings, "topology")
    assert again["ok"] is True and not again["declared"]
    assert {c["status"] for c in again["checks"]} == {"ok", "not checked"}
    assert run(settings, "topology", "--declare").exit_code == 0, "declaring again is harmless"

    # The bindings --declare made route events to the services that handle them.
    with bus.connection(settings, confirm=True) as conn:
        kombu.Producer(conn.channel()).publish(b"{}", exchange=settings.exchange, routing_key="idea.submitted",
                                               timeout=5)
    for topo in ops.topologies(settings):
        assert queue_depth(settings, topo.queue) == (1 if "idea.submitted" in topo.event_types else 0)


def test_queues_shows_ready_messages_and_consumers(ops_settings: Settings, rabbit_consumers: Consumers):
    settings = ops_settings
    assert ops.declare_topology(settings) == []
    rabbit_consumers.start("notify", {"participant.erased": [lambda _event: None]})
    with bus.connection(settings, confirm=True) as conn:
        producer = kombu.Producer(conn.channel())
        for i in range(3):
            producer.publish(json.dumps({"n": i}).encode(), exchange=settings.exchange,
                             routing_key="city.registered", timeout=5)

    wait_for(lambda: queue_depth(settings, ops.topology(settings, "notify").dead) == 3,
             message="notify to park the three non-events it took")
    listed = run_json(settings, "queues")
    assert len(listed) == 3 * 4, "events, two retry queues and dead for each service"
    rows = {r["queue"]: r for r in listed}
    for topo in ops.topologies(settings):
        events = rows[topo.queue]
        assert (events["service"], events["kind"], events["exists"]) == (topo.service, "events", True)
        if topo.service == "notify":
            assert (events["ready"], events["consumers"]) == (0, 1), "its consumer took what arrived"
            assert rows[topo.dead]["ready"] == 3
        else:
            assert events["ready"] == (3 if "city.registered" in topo.event_types else 0)
            assert events["consumers"] == 0
            assert rows[topo.dead]["ready"] == 0
        assert [rows[q]["kind"] for q in topo.retry_queues] == ["retry", "retry"]
    assert rows[f"{settings.namespace}.matching.events"]["ready"] == 3

    table = run(settings, "queues")
    assert table.exit_code == 0
    line = next(li for li in table.stdout.splitlines() if f"{settings.namespace}.matching.events" in li)
    assert line.split()[-2:] == ["3", "0"]


def test_queues_marks_missing_queues_and_exits_1(ops_settings: Settings):
    listed = run(ops_settings, "queues", "--json")
    assert listed.exit_code == 1, "a script hears of it, as from ops topology"
    assert all(not r["exists"] and r["ready"] is None for r in json.loads(listed.stdout))
    table = run(ops_settings, "queues")
    assert table.exit_code == 1 and "missing" in table.stdout and "--declare" in table.stderr


# --- parked messages ----------------------------------------------------------------------------------------------

def test_parked_list_and_show_leave_the_messages_in_place(ops_settings: Settings, rabbit_consumers: Consumers):
    settings = ops_settings
    handled: list[Event] = []
    [consumer] = rabbit_consumers.start("ideas", {"idea.withdrawn": [handled.append]})
    wrong_schema = {**withdrawn(1), "payload": {"idea_id": 5}}
    unknown_type = {**withdrawn(2), "type": "idea.exploded"}
    bodies = [b"{not json", json.dumps(wrong_schema).encode(), json.dumps(unknown_type).encode(),
              json.dumps(withdrawn("good")).encode()]
    with bus.connection(settings, confirm=True) as conn:
        producer = kombu.Producer(conn.channel())
        for body in bodies:
            producer.publish(body, exchange=settings.exchange, routing_key="idea.withdrawn",
                             content_type="application/json", content_encoding="utf-8", timeout=5)
    wait_for(lambda: handled, message="the good event behind the poison")
    wait_for(lambda: queue_depth(settings, consumer.topology.dead) == 3, message="three parked messages")

    listed = run_json(settings, "parked", "list", "ideas")
    assert listed["total"] == 3
    messages = listed["messages"]
    assert [m["reason"] for m in messages] == ["undecodable", "invalid payload", "unknown event type"]
    assert [m["event_type"] for m in messages] == ["undecodable", "idea.withdrawn", "idea.exploded"]
    assert messages[0]["message_id"].startswith("body-"), "no message id: named by its body"
    assert messages[1]["message_id"] == wrong_schema["id"], "no message id property: the envelope's id"
    assert all(m["parked_at"] and m["routing_key"] == "idea.withdrawn" for m in messages)
    assert "idea_id" in messages[1]["error"]
    assert queue_depth(settings, consumer.topology.dead) == 3, "listing removes nothing"

    table = run(settings, "parked", "list", "ideas", "--limit", "2")
    assert table.exit_code == 0
    assert "undecodable" in table.stdout and "invalid payload" in table.stdout
    assert "unknown event type" not in table.stdout and "2 of 3" in table.stdout

    shown = run(settings, "parked", "show", "ideas", unknown_type["id"])
    assert shown.exit_code == 0, shown.output
    assert "x-twincity-park-reason: \"unknown event type\"" in shown.stdout
    assert '"type": "idea.exploded"' in shown.stdout, "the body, as pretty JSON"
    details = run_json(settings, "parked", "show", "ideas", messages[0]["message_id"])
    assert (details["body_encoding"], details["body"]) == ("text", "{not json")

    missing = run(settings, "parked", "show", "ideas", "no-such-id")
    assert missing.exit_code == 1 and "no parked message" in missing.output
    assert queue_depth(settings, consumer.topology.dead) == 3
    # Still in their order: the consumer's parking queue reads as before.
    assert [m.headers["x-twincity-park-reason"] for m in queue_messages(settings, consumer.topology.dead)] == [
        "undecodable", "invalid payload", "unknown event type"]


def test_replay_of_a_fixed_failure_is_handled_exactly_once(ops_settings: Settings, rabbit_consumers: Consumers):
    settings = ops_settings
    broken = threading.Event()
    broken.set()
    calls: Counter[str] = Counter()
    successes: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(event: Event) -> None:
        with lock:
            calls[event.id] += 1
        if broken.is_set() and event.payload["idea_id"] == "poison":
            raise RuntimeError("the downstream store is down")
        with lock:
            successes[event.id] += 1

    [consumer] = rabbit_consumers.start("ideas", {"idea.withdrawn": [handler]})
    poison, other = withdrawn("poison"), withdrawn("other")
    publisher = bus.make_publisher(settings)
    try:
        publisher.publish([poison, other])
    finally:
        publisher.close()
    wait_for(lambda: queue_depth(settings, consumer.topology.dead) == 1, timeout=15, message="the parked event")
    assert calls[poison["id"]] == 3 and successes[poison["id"]] == 0
    [parked] = run_json(settings, "parked", "list", "ideas")["messages"]
    assert (parked["message_id"], parked["reason"], parked["attempts"]) == (poison["id"], "handler failed", 3)

    broken.clear()  # the cause is fixed
    result = run(settings, "parked", "replay", "ideas", poison["id"])
    assert result.exit_code == 0, result.output
    assert "replayed 1" in result.stdout

    wait_for(lambda: successes[poison["id"]] == 1, message="the replayed event to be handled")
    # Anything replayed twice would be behind this one in the same queue (one consumer: in order).
    sentinel = withdrawn("sentinel")
    publisher = bus.make_publisher(settings)
    try:
        publisher.publish([sentinel])
    finally:
        publisher.close()
    wait_for(lambda: successes[sentinel["id"]] == 1, message="the sentinel behind it")
    assert successes[poison["id"]] == 1 and calls[poison["id"]] == 4, "handled exactly once after the replay"
    assert successes[other["id"]] == 1
    assert queue_depth(settings, consumer.topology.dead) == 0, "the parked copy is gone"
    assert queue_depth(settings, consumer.topology.queue) == 0


def test_replay_drops_the_parking_headers_and_reports_unknown_ids(ops_settings: Settings):
    settings = ops_settings
    assert ops.declare_topology(settings) == []
    events = [withdrawn(i) for i in range(3)]
    park_directly(settings, "matching", [json.dumps(e).encode() for e in events],
                  message_ids=[e["id"] for e in events])
    topo = ops.topology(settings, "matching")

    result = run(settings, "parked", "replay", "matching", events[1]["id"], "not-parked")
    assert result.exit_code == 1, "a named message that is not parked"
    assert "replayed 1" in result.stdout and "not found: not-parked" in result.output
    [replayed] = queue_messages(settings, topo.queue)
    assert replayed.properties["message_id"] == events[1]["id"]
    assert json.loads(replayed.body) == events[1], "the body is intact"
    assert replayed.delivery_info["routing_key"] == topo.queue
    headers = replayed.headers
    assert not any(h in headers for h in (*bus.PARK_HEADERS, bus.ATTEMPT_HEADER, "x-twincity-routing-key"))
    assert headers["x-custom"] == "kept" and "x-twincity-replayed-at" in headers
    assert replayed.content_type == "application/json"

    assert run(settings, "parked", "replay", "matching").exit_code == 2, "ids or --all"
    assert run(settings, "parked", "replay", "matching", "x", "--all").exit_code == 2
    outcome = run_json(settings, "parked", "replay", "matching", "--all")
    assert outcome["replayed"] == 2 and outcome["remaining"] == 0
    assert sorted(outcome["message_ids"]) == sorted([events[0]["id"], events[2]["id"]])
    assert queue_depth(settings, topo.dead) == 0 and queue_depth(settings, topo.queue) == 2


def test_purge_refuses_without_yes_then_removes(ops_settings: Settings):
    settings = ops_settings
    assert ops.declare_topology(settings) == []
    park_directly(settings, "notify", [b"one", b"two", b"three"], reason="undecodable")
    dead = ops.topology(settings, "notify").dead

    refused = run(settings, "parked", "purge", "notify", "--all")
    assert refused.exit_code == 1 and "--yes" in refused.output
    assert queue_depth(settings, dead) == 3, "nothing removed without --yes"

    [first, *_] = ops.list_parked(settings, "notify")[0]
    one = run(settings, "parked", "purge", "notify", first.message_id, "--yes")
    assert one.exit_code == 0 and "purged 1" in one.stdout
    assert [m.body for m in ops.list_parked(settings, "notify")[0]] == [b"two", b"three"]

    everything = run_json(settings, "parked", "purge", "notify", "--all", "--yes")
    assert everything["purged"] == 2 and everything["remaining"] == 0
    assert queue_depth(settings, dead) == 0
    assert "no parked messages" in run(settings, "parked", "list", "notify").stdout


def test_parked_commands_name_a_missing_parking_queue(ops_settings: Settings):
    result = run(ops_settings, "parked", "list", "ideas")
    assert result.exit_code == 1 and f"{ops_settings.namespace}.ideas.dead" in result.output


# --- outbox backlog -----------------------------------------------------------------------------------------------

def test_backlog_counts_pending_outbox_events_per_service():
    settings = make_settings("amqp://guest:guest@127.0.0.1:5672//")
    try:
        ideas = store.database(settings, "ideas")
        ideas["ideas"].insert_one(outbox.with_events({"_id": "i1"}, [withdrawn(1), withdrawn(2)]))
        ideas["ideas"].insert_one(outbox.with_events({"_id": "i2"}, []))  # published already
        ideas["participants"].insert_one(outbox.with_events({"_id": "p1"}, [withdrawn(3)]))
        store.database(settings, "gateway")["cities"].insert_one(
            outbox.with_events({"_id": "karlsruhe"}, [withdrawn(4)]))

        refused = run(settings, "backlog")
        assert refused.exit_code == 1 and "mongomock" in refused.output

        data = run_json(settings, "backlog", TWINCITY_MEMORY_STORE="1")
        assert data["total"] == 4
        assert data["services"] == {"ideas": 3, "matching": 0, "notify": 0, "gateway": 1}
        rows = {(r["service"], r["collection"]): r for r in data["collections"]}
        assert (rows[("ideas", "ideas")]["documents"], rows[("ideas", "ideas")]["events"]) == (1, 2)
        assert rows[("gateway", "cities")]["oldest"] and rows[("gateway", "partnerships")]["events"] == 0
        assert rows[("ideas", "ideas")]["database"] == "twincity_ideas"

        table = run(settings, "backlog", TWINCITY_MEMORY_STORE="1")
        assert table.exit_code == 0 and "4 event(s) pending" in table.stdout
    finally:
        store.forget(settings.mongo_url)
