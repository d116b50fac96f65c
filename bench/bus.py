"""Bus benchmark: the kernel's publish and delivery paths against the raw broker, in one run.

    .venv/bin/python bench/bus.py                  # real RabbitMQ on AMQP_URL (default local guest)
    .venv/bin/python bench/bus.py --events 5000    # more events for the throughput figures

Prints a table and writes bench/results/bus.json. Figures, not pass/fail: rerun to compare.
Baselines measured in the same run:
  raw round trip      pika: publish one persistent message with confirm, get it back (one in flight)
  kombu confirmed     kombu producer, waiting for each confirm (what a naive publisher does)
The kernel's paths:
  pipelined publish   services.bus.AmqpPublisher: a batch published, then its confirms awaited at once
  outbox relay        services.outbox.Relay over a mongomock store: find pending, publish, remove
  outbox -> handler   one event at a time: stored with its state, relayed, consumed, handler ran
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import kombu
import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services import bus, outbox, store  # noqa: E402
from services.config import Settings  # noqa: E402
from services.contract import new_event  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def latency_summary(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99), "mean_ms": statistics.fmean(ms)}


def event(i: int) -> dict:
    return new_event("idea.withdrawn", {"idea_id": f"idea-{i}", "city": "karlsruhe", "version": 1}, producer="bench")


def raw_round_trip(url: str, n: int) -> dict[str, float]:
    # kombu writes the default vhost as a trailing "//"; pika wants it spelled "/%2F".
    params = pika.URLParameters(url[:-1] + "%2F" if url.endswith("//") else url)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    q = f"bench.rtt.{uuid.uuid4().hex[:8]}"
    ch.queue_declare(q, durable=True)
    body = json.dumps(event(0)).encode()
    samples = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            ch.basic_publish("", q, body, pika.BasicProperties(delivery_mode=2, content_type="application/json"))
            while True:
                method, _props, _body = ch.basic_get(q, auto_ack=False)
                if method is not None:
                    ch.basic_ack(method.delivery_tag)
                    break
            samples.append(time.perf_counter() - start)
    finally:
        ch.queue_delete(q)
        conn.close()
    return latency_summary(samples)


def kombu_confirmed(settings: Settings, n: int) -> float:
    publisher = bus.KombuPublisher(settings)
    events = [event(i) for i in range(n)]
    start = time.perf_counter()
    publisher.publish(events)
    elapsed = time.perf_counter() - start
    publisher.close()
    return n / elapsed


def pipelined(settings: Settings, n: int, batch: int) -> float:
    publisher = bus.AmqpPublisher(settings)
    events = [event(i) for i in range(n)]
    publisher.publish(events[:10])  # connect first; the figure is publishing, not connecting
    start = time.perf_counter()
    for i in range(0, n, batch):
        publisher.publish(events[i:i + batch])
    elapsed = time.perf_counter() - start
    publisher.close()
    return n / elapsed


def relay_throughput(settings: Settings, n: int) -> float:
    db = store.database(settings, "bench_relay")
    db.things.insert_many([outbox.with_events({"_id": i}, [event(i)]) for i in range(n)])
    relay = outbox.Relay("bench", db, ["things"], lambda: bus.make_publisher(settings), batch=settings.outbox_batch)
    start = time.perf_counter()
    total = 0
    while published := relay.relay_once():
        total += published
    elapsed = time.perf_counter() - start
    relay.stop()
    assert total == n, f"relayed {total} of {n}"
    return n / elapsed


def outbox_to_handler(settings: Settings, n: int) -> dict[str, float]:
    arrived: dict[str, float] = {}
    got = threading.Event()

    def handler(ev) -> None:
        arrived[ev.id] = time.perf_counter()
        got.set()

    consumer = bus.Consumer(settings, f"bench-{uuid.uuid4().hex[:6]}", {"idea.withdrawn": [handler]})
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    consumer.ready.wait(10)
    db = store.database(settings, "bench_e2e")
    relay = outbox.Relay("bench", db, ["things"], lambda: bus.make_publisher(settings), poll_interval=5).start()
    samples = []
    try:
        for i in range(n):
            ev = event(i)
            got.clear()
            start = time.perf_counter()
            db.things.insert_one(outbox.with_events({"_id": i, "state": "changed"}, [ev]))
            relay.kick()
            if not got.wait(10):
                raise RuntimeError("an event did not arrive within 10 s")
            samples.append(arrived[ev["id"]] - start)
    finally:
        relay.stop()
        stop.set()
        thread.join(5)
        bus.delete_topology(settings, [consumer.topology])
    return latency_summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    parser.add_argument("--events", type=int, default=3000, help="events for each throughput figure")
    parser.add_argument("--samples", type=int, default=500, help="one-in-flight samples for latency figures")
    parser.add_argument("--batch", type=int, default=500, help="events per pipelined batch")
    args = parser.parse_args()

    settings = Settings(amqp_url=args.url, mongo_url=f"mongomock://bench-{uuid.uuid4().hex[:6]}",
                        exchange=f"bench.events.{uuid.uuid4().hex[:6]}", outbox_batch=args.batch)
    results: dict[str, object] = {"url": args.url.split("@")[-1], "events": args.events, "samples": args.samples}
    print(f"bus benchmark against {results['url']} ({args.events} events, {args.samples} latency samples)")

    rtt = raw_round_trip(args.url, args.samples)
    results["raw_round_trip"] = rtt
    print(f"  raw broker round trip (pika, confirm, get)  p50 {rtt['p50_ms']:.2f} ms  p95 {rtt['p95_ms']:.2f}"
          f"  p99 {rtt['p99_ms']:.2f}")
    results["kombu_confirmed_per_s"] = kombu_confirmed(settings, args.events)
    print(f"  kombu publish, wait for each confirm       {results['kombu_confirmed_per_s']:8.0f} events/s")
    results["pipelined_confirmed_per_s"] = pipelined(settings, args.events, args.batch)
    print(f"  AmqpPublisher, pipelined confirms          {results['pipelined_confirmed_per_s']:8.0f} events/s")
    results["relay_per_s"] = relay_throughput(settings, args.events)
    print(f"  outbox relay (mongomock store + publish)   {results['relay_per_s']:8.0f} events/s")
    e2e = outbox_to_handler(settings, args.samples)
    results["outbox_to_handler"] = e2e
    print(f"  outbox write -> relay -> handler           p50 {e2e['p50_ms']:.2f} ms  p95 {e2e['p95_ms']:.2f}"
          f"  p99 {e2e['p99_ms']:.2f}  ({e2e['p50_ms'] / rtt['p50_ms']:.1f}x the raw round trip at p50)")

    with kombu.Connection(args.url) as conn:
        conn.channel().exchange_delete(exchange=settings.exchange)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bus.json").write_text(json.dumps(results, indent=2))
    print(f"  written to {RESULTS / 'bus.json'}")


if __name__ == "__main__":
    main()
