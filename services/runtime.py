"""The wiring of one service in one process: its settings, database, outbox relay, web app and consumers.

A service describes itself once in a `ServiceSpec` and wires its parts in its `bootstrap.py` (a `Wiring`: bound
handlers, routes, periodic work); `Runtime` turns that into the processes of docs/architecture.md: `create_app()` for
`<service> web`, `run_worker()` for `<service> worker`, and both at once inside `twincity dev`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, jsonify

from services import bus, lease, logs, outbox, store
from services.bus import Consumer, Handler
from services.config import Settings
from services.openapi import ApiDocs, view_names
from services.store import Index

log = logging.getLogger(__name__)

BINDINGS_SYNC = 30.0  # seconds between a worker's checks of its optional bindings (Runtime.sync_bindings)


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is, known at import (its bootstrap.py declares one): enough for `twincity ops` to name its
    queues and bindings without wiring anything."""

    name: str
    indexes: Mapping[str, Sequence[Index]] = field(default_factory=dict)
    outbox_collections: Sequence[str] = ()
    event_types: Sequence[str] = ()  # what it consumes: the keys of its handlers.EVENT_HANDLERS
    docs: ApiDocs | None = None  # its routes' OpenAPI operations; the gateway merges them
    # Handled event types the broker delivers only while the wiring's `wanted_events` names them (notify's
    # webhook-only types, while a subscription asks for them); see Runtime.sync_bindings.
    optional_events: Sequence[str] = ()


@dataclass
class Wiring:
    """What a service's bootstrap gives its runtime: the bound handlers, its web routes, the work it repeats, and
    the object its routes find their dependencies in (app.extensions[extension_name])."""

    handlers: Mapping[str, Sequence[Handler]] = field(default_factory=dict)
    blueprints: Sequence[Blueprint] = ()
    # Work the worker repeats: (seconds between runs, what to run). E.g. expiring old proposals.
    periodic: Sequence[tuple[float, Callable[[], object]]] = ()
    wanted_events: Callable[[], Iterable[str]] = lambda: ()
    extension_name: str = ""
    extension: Any = None


class Runtime:
    """One service's live parts in this process. Create it after a fork, never before."""

    def __init__(self, spec: ServiceSpec, settings: Settings | None = None) -> None:
        self.spec = spec
        self.settings = settings or Settings.from_env()
        self.name = spec.name
        self.db = store.database(self.settings, spec.name)
        wanted: dict[str, list[Index]] = {c: list(ix) for c, ix in spec.indexes.items()}
        for collection in spec.outbox_collections:
            wanted.setdefault(collection, []).append(outbox.INDEX)
        store.ensure_indexes(self.db, wanted)
        self.relay = outbox.Relay(
            spec.name,
            self.db,
            spec.outbox_collections,
            lambda: bus.make_publisher(self.settings),
            batch=self.settings.outbox_batch,
            poll_interval=self.settings.outbox_poll_interval,
            # Events of other processes (an `admin` command, a crashed web worker) are swept up once
            # they are this old; fresher ones are left to the process that wrote them.
            grace=max(1.0, 2 * self.settings.outbox_poll_interval),
        )
        self.wiring = Wiring()
        self.running: list[Consumer] = []

    def wire(self, wiring: Wiring) -> Runtime:
        """Take what the service's bootstrap made (bound handlers, routes, periodic work)."""
        self.wiring = wiring
        return self

    @property
    def handlers(self) -> Mapping[str, Sequence[Handler]]:
        return self.wiring.handlers

    # Readiness -----------------------------------------------------------------------------------

    def check_store(self) -> None:
        store.ping(self.db)

    def check_broker(self) -> None:
        if self.settings.embedded:
            return
        with bus.connection(self.settings) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    def readiness(self) -> dict[str, Callable[[], None]]:
        return {"store": self.check_store, "broker": self.check_broker}

    # Processes -----------------------------------------------------------------------------------

    def create_app(self, *, relay: bool = True) -> Flask:
        """The service's internal web app. Starts the relay so that writes are published at once."""
        from services.web import create_base_app

        # Without the broker a web process still serves: its changes wait in the outbox until the relay can
        # publish them. A broker outage must not take every web pod out of its Service.
        app = create_base_app(self.name, self.readiness(), degrading={"broker"},
                              metrics_token=self.settings.metrics_token)
        for blueprint in self.wiring.blueprints:
            app.register_blueprint(blueprint)
        if self.wiring.extension_name:
            app.extensions[self.wiring.extension_name] = self.wiring.extension
        if self.spec.docs is not None:
            docs = self.spec.docs
            app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(docs.spec(names=view_names(app.url_map))))
        app.extensions["twincity.runtime"] = self
        if relay and self.spec.outbox_collections:
            self.relay.start()
        return app

    def consumers(self, count: int = 1) -> list[Consumer]:
        return [
            Consumer(self.settings, self.name, self.handlers, name=f"{self.name}-consumer-{i}",
                     optional=frozenset(self.spec.optional_events), wanted=self._wanted_events,
                     bindings_lock=self._bindings_lock)
            for i in range(1, count + 1)
        ]

    def _wanted_events(self) -> Iterable[str]:
        return self.wiring.wanted_events()

    def _bindings_lock(self) -> contextlib.AbstractContextManager[None]:
        return lease.held(self.db, f"{self.name}-bindings")

    def sync_bindings(self) -> set[str]:
        """Bind the optional event types wanted now to the service's queue, unbind the others (bus.bind_wanted).

        Consumers do it on every connect and the worker every BINDINGS_SYNC seconds (in case a process stopped
        between a change and its binding). Raises when the broker or the store can not be reached.
        """
        with self._bindings_lock():
            return self._sync_bindings_locked()

    @contextlib.contextmanager
    def changing_bindings(self) -> Iterator[None]:
        """Around a change of what is wanted (a webhook stored or removed): the change and the new bindings in
        one hold of the service's bindings lock, which every sync takes too. So no process reads the wishes
        before the change and unbinds after it: a new subscription is bound, without a gap, before its 201.
        Raises (after the change) when the bindings can not be brought in line."""
        with self._bindings_lock():
            yield
            self._sync_bindings_locked()

    def _sync_bindings_locked(self) -> set[str]:
        topology = bus.topology_for(self.settings, self.name, self.handlers, self.spec.optional_events)
        if not topology.optional_types:
            return set()
        with bus.connection(self.settings) as conn:
            channel = conn.channel()
            bus.declare(channel, topology, broker_retries=not self.settings.embedded)
            return bus.bind_wanted(channel, topology, self._wanted_events)

    def start_worker(self, stop: threading.Event, concurrency: int = 1) -> list[threading.Thread]:
        """Start the relay and `concurrency` consumer threads (each with its own connection)."""
        if self.spec.outbox_collections:
            self.relay.start()
        threads = []
        if self.handlers:
            for consumer in self.consumers(concurrency):
                thread = threading.Thread(target=consumer.run, args=(stop,), name=consumer.name, daemon=True)
                thread.start()
                threads.append(thread)
                self.running.append(consumer)
        periodic = list(self.wiring.periodic)
        if self.spec.optional_events:
            periodic.append((BINDINGS_SYNC, self.sync_bindings))
        for interval, task in periodic:
            thread = threading.Thread(target=self._repeat, args=(stop, interval, task), daemon=True,
                                      name=f"{self.name}-periodic")
            thread.start()
            threads.append(thread)
        return threads

    def _repeat(self, stop: threading.Event, interval: float, task: Callable[[], object]) -> None:
        while not stop.wait(interval):
            try:
                task()
            except Exception:  # logged; the next round tries again
                log.exception("periodic task of %s failed", self.name)

    def consuming(self) -> bool:
        """Every consumer is connected, its queue declared and bound."""
        return all(c.ready.is_set() for c in self.running)

    def run_worker(self, concurrency: int = 1) -> None:
        """Block consuming until SIGTERM/SIGINT; the message in hand is finished before stopping."""
        logs.setup(self.name, self.settings.log_level, self.settings.log_format)
        stop = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            log.info("received signal %s: finishing the message in hand, then stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        threads = self.start_worker(stop, concurrency)
        log.info("worker %s started: %d consumer(s), handling %s", self.name, len(threads),
                 ", ".join(sorted(self.handlers)) or "no events")
        while not stop.is_set():
            stop.wait(1.0)
        # One deadline for everything, inside compose's 30 s stop_grace_period.
        deadline = time.monotonic() + 20
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.relay.stop(timeout=max(0.1, deadline - time.monotonic()))
        log.info("worker %s stopped", self.name)
