"""The event bus: topology, confirmed publishing, and a consumer with retries, parking and reconnects.

Library choice, kept in this one place:
- kombu for consuming (one API for amqp:// and memory://) and for the rare publishes of the consumer
  (retries, parking), with `confirm_publish` and a timeout;
- the raw py-amqp channel under kombu for the outbox relay on amqp://: a batch is published with
  pipelined confirms (all published, then all confirms awaited once), several times faster than
  waiting for each confirm;
- on memory:// a plain kombu producer (in-process, nothing to confirm).

Topology of one service S on exchange X (topic, durable); with TWINCITY_NAMESPACE=N every queue
name starts with "N.":
  S.events        durable queue bound to X with each event type S handles
  S.retry.<ms>ms  one durable queue per retry delay: TTL=<ms>, dead-letters back into S.events
  S.dead          the parking queue; a message lands here after its last try, or when it is not
                  an event (undecodable, wrong schema, unknown type or version), with the reason
                  in its headers. Nothing is dropped.
On memory:// the retry delay is an in-process timer (the memory transport has no dead-lettering).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
import kombu
from kombu import Producer

from services import context, lease, metrics
from services.config import Settings
from services.contract import ContractError, Event, parse_event
from services.store import StoreError

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]


def batched(many: Callable[[Sequence[Event]], None]) -> Handler:
    """A handler that can also take several waiting events at once (in the order they arrived).

    `many(events)` must do for each event what handling it alone does (handling one event is `many([event])`),
    and run each event's own work inside `in_context(event)`, so the events it publishes carry that event's
    correlation. When it raises, the consumer handles the events one at a time, each with its own retries:
    effects already made are made again, which every handler allows. Worth it where one call for several
    events is cheaper than several calls (matching encodes the texts of all waiting ideas in one go).
    """
    def one(event: Event) -> None:
        many([event])

    one.many = many  # type: ignore[attr-defined]
    return one


def in_context(event: Event) -> contextlib.AbstractContextManager[None]:
    """The correlation of one event, for the part of a batch that is that event's."""
    return context.correlated(event.correlation_id, causation=event.causation_id, event=event.id)

ATTEMPT_HEADER = "x-twincity-attempt"
PARK_HEADERS = ("x-twincity-park-reason", "x-twincity-error", "x-twincity-parked-at", "x-twincity-attempts")


class PublishError(RuntimeError):
    """The broker did not confirm a publish (nack, timeout or lost connection). Nothing is removed."""


@dataclass(frozen=True)
class Topology:
    """The queues of one service, and how they are named."""

    service: str
    exchange: str
    event_types: tuple[str, ...]  # always bound to the queue
    retry_delays_ms: tuple[int, ...]
    namespace: str = ""
    optional_types: tuple[str, ...] = ()  # bound only while wanted (see bind_wanted)

    @property
    def _base(self) -> str:
        return f"{self.namespace}.{self.service}" if self.namespace else self.service

    @property
    def queue(self) -> str:
        return f"{self._base}.events"

    @property
    def dead(self) -> str:
        return f"{self._base}.dead"

    def retry_queue(self, attempt: int) -> str:
        """Queue for the retry after the `attempt`-th failure (1-based)."""
        return f"{self._base}.retry.{self.retry_delays_ms[attempt - 1]}ms"

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry_queue(i) for i in range(1, len(self.retry_delays_ms) + 1)]


def connection(settings: Settings, *, confirm: bool = False, heartbeat: bool = True) -> kombu.Connection:
    """A new connection (one per thread: connections and channels are never shared across threads).

    heartbeat=False for a connection that is only written to now and then: py-amqp counts a heartbeat as
    received only when something reads the socket, so checking one nobody reads fails after two intervals.
    """
    if settings.embedded:
        return kombu.Connection(settings.amqp_url, transport_options={"polling_interval": 0.01})
    options: dict[str, Any] = {"confirm_publish": True} if confirm else {}
    return kombu.Connection(
        settings.amqp_url, heartbeat=settings.heartbeat if heartbeat else 0, connect_timeout=5,
        transport_options=options,
    )


def topology_for(settings: Settings, service: str, handled: Iterable[str],
                 optional: Iterable[str] = ()) -> Topology:
    """The queues of a service handling `handled` event types, of which `optional` are bound only when wanted."""
    handled, optional = set(handled), set(optional)
    return Topology(
        service=service,
        exchange=settings.exchange,
        event_types=tuple(sorted(handled - optional)),
        retry_delays_ms=settings.retry_delays_ms,
        namespace=settings.namespace,
        optional_types=tuple(sorted(handled & optional)),
    )


def declare_exchange(channel: Any, exchange: str) -> None:
    channel.exchange_declare(exchange=exchange, type="topic", durable=True, auto_delete=False)


class _WishesUnknown(Exception):
    """What is wanted could not be read (see Consumer._bind_wanted)."""


def bind_wanted(channel: Any, topology: Topology, wanted: Callable[[], Iterable[str]]) -> set[str]:
    """Bind the optional types that `wanted()` names to the service's queue and unbind the others.

    For types a service handles only for someone who asked (notify's webhook-only events while a subscription
    names them): what no one wants is not delivered at all. Several processes may do this at once, one of them
    just after storing a new wish (then binding), another just after reading the old wishes (then unbinding):
    so after unbinding, the wishes are read again and what is wanted now is bound again. A wish stored before
    that second read is seen by it; one stored after it is bound by its own process after this unbinding. Returns
    the optional types bound.
    """
    optional = topology.optional_types
    bound = set(wanted()) & set(optional)
    for event_type in optional:
        if event_type in bound:
            channel.queue_bind(queue=topology.queue, exchange=topology.exchange, routing_key=event_type)
    dropped = [t for t in optional if t not in bound]
    for event_type in dropped:
        channel.queue_unbind(queue=topology.queue, exchange=topology.exchange, routing_key=event_type)
    if dropped:
        again = set(wanted())
        for event_type in dropped:
            if event_type in again:
                channel.queue_bind(queue=topology.queue, exchange=topology.exchange, routing_key=event_type)
                bound.add(event_type)
    return bound


def declare(channel: Any, topology: Topology, *, broker_retries: bool = True) -> None:
    """Declare the exchange and the service's queues (idempotent)."""
    declare_exchange(channel, topology.exchange)
    channel.queue_declare(queue=topology.queue, durable=True, auto_delete=False)
    for event_type in topology.event_types:
        channel.queue_bind(queue=topology.queue, exchange=topology.exchange, routing_key=event_type)
    channel.queue_declare(queue=topology.dead, durable=True, auto_delete=False)
    if broker_retries:
        for attempt, delay in enumerate(topology.retry_delays_ms, start=1):
            channel.queue_declare(
                queue=topology.retry_queue(attempt),
                durable=True,
                auto_delete=False,
                arguments={
                    "x-message-ttl": delay,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.queue,
                },
            )


def encode(envelope: Mapping[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _properties(envelope: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "message_id": envelope["id"],
        "correlation_id": envelope.get("correlation_id"),
        "type": envelope["type"],
    }


# --- publishing -----------------------------------------------------------------------------------

class Publisher:
    """Publishes envelopes to the exchange; `publish` returns only when the broker confirmed them all."""

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def heartbeat(self) -> None:
        """Keep an idle connection alive (call now and then from the owning thread)."""

    def close(self) -> None:
        raise NotImplementedError


class AmqpPublisher(Publisher):
    """Pipelined publisher confirms on a raw py-amqp channel, with a timeout for the whole batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: kombu.Connection | None = None
        self._channel: Any = None
        self._next_tag = 0
        self._acked: set[int] = set()
        self._nacked: set[int] = set()
        self._upto_ack = 0
        self._upto_nack = 0

    def _ensure(self) -> Any:
        if self._channel is not None:
            return self._channel
        conn = connection(self.settings)
        conn.ensure_connection(max_retries=1)
        channel = conn.channel()
        declare_exchange(channel, self.settings.exchange)
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._conn, self._channel = conn, channel
        self._next_tag = 0
        self._acked.clear()
        self._nacked.clear()
        self._upto_ack = self._upto_nack = 0
        return channel

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._upto_ack = max(self._upto_ack, delivery_tag)
        else:
            self._acked.add(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._upto_nack = max(self._upto_nack, delivery_tag)
        else:
            self._nacked.add(delivery_tag)

    def _settled(self, tag: int) -> bool:
        return tag <= self._upto_ack or tag in self._acked or tag <= self._upto_nack or tag in self._nacked

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> None:
        if not envelopes:
            return
        try:
            channel = self._ensure()
            first = self._next_tag + 1
            for envelope in envelopes:
                message = amqp.Message(
                    encode(envelope),
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    **_properties(envelope),
                )
                channel.basic_publish(message, exchange=self.settings.exchange, routing_key=envelope["type"])
                self._next_tag += 1
            last = self._next_tag
            deadline = time.monotonic() + self.settings.confirm_timeout
            raw = self._conn.connection  # type: ignore[union-attr]
            while not all(self._settled(tag) for tag in range(first, last + 1)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishError(f"no confirm within {self.settings.confirm_timeout}s")
                try:
                    raw.drain_events(timeout=remaining)
                except TimeoutError:
                    continue
            nacked = [t for t in range(first, last + 1) if t in self._nacked or t <= self._upto_nack]
            self._acked.difference_update(range(first, last + 1))
            if nacked:
                raise PublishError(f"broker refused {len(nacked)} of {len(envelopes)} events")
        except PublishError:
            self.close()
            raise
        except Exception as exc:  # connection lost mid-batch: the confirms we miss are unknown
            self.close()
            raise PublishError(f"publish failed: {exc!r}") from exc

    def heartbeat(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.heartbeat_check()
        except Exception:
            self.close()

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken; nothing to release
                conn.release()


class KombuPublisher(Publisher):
    """kombu producer: used on memory:// (and usable on amqp with per-message confirms)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: kombu.Connection | None = None
        self._producer: Producer | None = None

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._conn = connection(self.settings, confirm=True)
            channel = self._conn.channel()
            declare_exchange(channel, self.settings.exchange)
            self._producer = Producer(channel)
        return self._producer

    def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> None:
        try:
            producer = self._ensure()
            for envelope in envelopes:
                producer.publish(
                    encode(envelope),
                    exchange=self.settings.exchange,
                    routing_key=envelope["type"],
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    timeout=self.settings.confirm_timeout,
                    **_properties(envelope),
                )
        except Exception as exc:
            self.close()
            raise PublishError(f"publish failed: {exc!r}") from exc

    def close(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()


def make_publisher(settings: Settings) -> Publisher:
    """The one place that picks the publishing library for a URL."""
    return KombuPublisher(settings) if settings.embedded else AmqpPublisher(settings)


# --- consuming ------------------------------------------------------------------------------------

@dataclass
class Consumer:
    """Consumes one service's queue: checks each event against the contract, runs its handlers, acks.

    A handler that raises sends the message through the retry delays, then to the parking queue;
    the messages behind it go on. The ack comes only after every handler returned (their effects are
    stored by then). The consumer reconnects after a lost connection or a broker restart.

    It takes every message that is waiting (up to the prefetch count) before handling them in order; runs of
    events whose handler is `batched` go to that handler together. With an empty queue that is one message at
    a time, as before; under load it is what lets a handler share work between events.
    """

    settings: Settings
    service: str
    handlers: Mapping[str, Sequence[Handler]]
    name: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    # Handled types bound only while `wanted()` names them (bind_wanted, on every connect).
    optional: frozenset[str] = frozenset()
    wanted: Callable[[], Iterable[str]] = lambda: ()
    bindings_lock: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def __post_init__(self) -> None:
        self.topology = topology_for(self.settings, self.service, self.handlers, self.optional)
        self.name = self.name or f"{self.service}-consumer"
        self._producer: Producer | None = None
        self._timers: set[threading.Timer] = set()
        self.connection: kombu.Connection | None = None  # the live one (failure tests cut it)
        self.connections_made = 0
        self._waiting: list[kombu.Message] = []  # delivered, not handled yet
        self._done: list[kombu.Message] = []  # handled, to be acked together once the waiting ones are

    # The loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            conn = connection(self.settings)
            # Retries and parking publish on a connection of their own: waiting for their confirms on
            # the consuming connection would dispatch the next deliveries re-entrantly (py-amqp drains
            # every frame while it waits), handling messages nested and out of order. Nothing reads it
            # between those publishes, so it goes without heartbeats (a dead one fails the publish, and the
            # message is delivered again on the new connection).
            publish_conn = connection(self.settings, confirm=True, heartbeat=False)
            self.connection = conn
            # What the last connection delivered, even while it closed, is delivered again.
            self._waiting, self._done = [], []
            try:
                conn.ensure_connection(max_retries=1)
                publish_conn.ensure_connection(max_retries=1)
                channel = conn.channel()
                declare(channel, self.topology, broker_retries=not self.settings.embedded)
                if self.topology.optional_types:
                    self._bind_wanted(channel)
                self._producer = Producer(publish_conn.channel())
                queue = kombu.Queue(self.topology.queue, no_declare=True)
                with kombu.Consumer(
                    channel,
                    queues=[queue],
                    on_message=self._on_message,
                    no_ack=False,
                    prefetch_count=self.settings.prefetch,
                    tag_prefix=f"{self.name}-",
                ):
                    self.connections_made += 1
                    self.ready.set()
                    backoff = 0.2
                    log.info("consuming %s", self.topology.queue)
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            conn.drain_events(timeout=0.25)  # how soon a stop is noticed
                        with contextlib.suppress(TimeoutError):  # and whatever else has arrived, not waiting
                            while self._waiting and len(self._waiting) < self.settings.prefetch:
                                conn.drain_events(timeout=0)
                        self._handle_waiting()
                        if not self.settings.embedded:
                            conn.heartbeat_check()
            except Exception as exc:  # lost connection, broker restart, channel error: start over
                self.ready.clear()
                if stop.is_set():
                    break
                log.warning("consumer %s lost its connection (%r); reconnecting in %.1fs", self.name, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._producer = None
                self.connection = None
                for used in (conn, publish_conn):
                    with contextlib.suppress(Exception):  # already broken; nothing to release
                        used.release()
        self.ready.clear()
        for timer in list(self._timers):
            timer.cancel()

    def _bind_wanted(self, channel: Any) -> None:
        """bind_wanted on connect, under the service's bindings lock. When the lock or what is wanted can not be
        read (the store is down), the bindings stay as they are (the periodic check tries again) and consuming
        goes on; a broker error reconnects, as any."""
        def read() -> Iterable[str]:
            try:
                return self.wanted()
            except Exception as exc:
                raise _WishesUnknown from exc

        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.bindings_lock())
                bind_wanted(channel, self.topology, read)
            except (_WishesUnknown, lease.LockBusy, StoreError) as exc:
                log.warning("consumer %s could not read which optional event types are wanted (%r); their "
                            "bindings stay as they are until the next check", self.name, exc.__cause__ or exc)

    # One message ---------------------------------------------------------------------------------

    def _handle_waiting(self) -> None:
        waiting = list(self._waiting)
        self._waiting.clear()
        try:
            events = [found for found in map(self._decode, waiting) if found is not None]
            i = 0
            while i < len(events):
                handlers = self.handlers.get(events[i][2].type, ())
                many = getattr(handlers[0], "many", None) if len(handlers) == 1 else None
                j = i + 1
                if many is not None:
                    while j < len(events) and self._same(self.handlers.get(events[j][2].type, ()), handlers[0]):
                        j += 1
                if j - i > 1:
                    self._handle_many(events[i:j], many)  # type: ignore[arg-type]
                else:
                    self._handle(*events[i])
                i = j
        finally:
            self._ack_done()

    def _ack_done(self) -> None:
        """Ack the handled messages: on RabbitMQ with one frame, acking every delivery up to the last of them.

        Each waiting message up to the last handled one is either among them or was acked on its own already
        (retried, parked, unwanted); a failure that stops the batch leaves the later ones unacked (delivered again
        after the reconnect). Nothing is delivered while they are handled (the loop drains only between batches),
        so a multiple ack names exactly these. Its tag is one not acked yet: the broker closes the channel on a
        tag acked twice. kombu's in-memory transport acks one message a call, whatever `multiple` says.
        A handled message is acked once the whole batch is (at most BUS_PREFETCH): a crash in between delivers
        it again, which the handlers' idempotence absorbs as for any redelivery.
        """
        done, self._done = self._done, []
        if not done:
            return
        if self.settings.embedded:
            for message in done:
                message.ack()
            return
        done[-1].ack(multiple=True)  # delivered last of them: the highest tag

    @staticmethod
    def _same(handlers: Sequence[Handler], handler: Handler) -> bool:
        return len(handlers) == 1 and handlers[0] is handler

    def _on_message(self, message: kombu.Message) -> None:
        self._waiting.append(message)  # handled by the loop once nothing more is waiting

    def _decode(self, message: kombu.Message) -> tuple[kombu.Message, bytes, Event] | None:
        """The event in a message; a message that holds none is parked (None)."""
        body = message.body if isinstance(message.body, bytes) else str(message.body).encode("utf-8")
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            self._park(message, body, "undecodable", repr(exc))
            return None
        try:
            return message, body, parse_event(raw)
        except ContractError as exc:
            self._park(message, body, exc.reason, str(exc))
            return None

    def _handle(self, message: kombu.Message, body: bytes, event: Event) -> None:
        handlers = self.handlers.get(event.type, ())
        if not handlers:
            message.ack()  # a stale binding; nothing here wants this type
            return
        with in_context(event):
            started = time.perf_counter()
            try:
                for handler in handlers:
                    handler(event)
            except Exception as exc:
                metrics.EVENTS_FAILED.labels(self.service, event.type).inc()
                self._retry_or_park(message, body, event, exc)
                return
            metrics.HANDLER_SECONDS.labels(self.service, event.type).observe(time.perf_counter() - started)
            metrics.EVENTS_HANDLED.labels(self.service, event.type).inc()
            self._done.append(message)

    def _handle_many(self, batch: Sequence[tuple[kombu.Message, bytes, Event]],
                     many: Callable[[Sequence[Event]], None]) -> None:
        started = time.perf_counter()
        try:
            many([event for _, _, event in batch])
        except Exception as exc:
            log.info("a batch of %d events failed (%r); handling them one at a time", len(batch), exc)
            for item in batch:
                self._handle(*item)
            return
        each = (time.perf_counter() - started) / len(batch)
        for message, _, event in batch:
            metrics.HANDLER_SECONDS.labels(self.service, event.type).observe(each)
            metrics.EVENTS_HANDLED.labels(self.service, event.type).inc()
            self._done.append(message)

    def _attempt(self, message: kombu.Message) -> int:
        headers = message.headers or {}
        try:
            return int(headers.get(ATTEMPT_HEADER, 0))
        except (TypeError, ValueError):
            return 0

    def _retry_or_park(self, message: kombu.Message, body: bytes, event: Event, exc: Exception) -> None:
        attempt = self._attempt(message) + 1
        if attempt > len(self.topology.retry_delays_ms):
            log.error("%s %s failed %d times, parking it: %r", event.type, event.id, attempt, exc)
            self._park(message, body, "handler failed", repr(exc), attempts=attempt)
            return
        log.warning("%s %s failed (try %d), retrying in %d ms: %r", event.type, event.id, attempt,
                    self.topology.retry_delays_ms[attempt - 1], exc)
        headers = {**(message.headers or {}), ATTEMPT_HEADER: attempt, "x-twincity-error": repr(exc)[:500]}
        if self.settings.embedded:
            self._retry_in_process(body, headers, self.topology.retry_delays_ms[attempt - 1] / 1000)
        else:
            self._send(self.topology.retry_queue(attempt), body, headers, message)
        metrics.EVENTS_RETRIED.labels(self.service, event.type).inc()
        message.ack()

    def _park(self, message: kombu.Message, body: bytes, reason: str, error: str, attempts: int = 0) -> None:
        headers = {
            **{k: v for k, v in (message.headers or {}).items() if k != ATTEMPT_HEADER},
            "x-twincity-park-reason": reason,
            "x-twincity-error": error[:2000],
            "x-twincity-parked-at": time.time(),
            "x-twincity-attempts": attempts,
            "x-twincity-routing-key": (message.delivery_info or {}).get("routing_key", ""),
        }
        self._send(self.topology.dead, body, headers, message)
        metrics.EVENTS_PARKED.labels(self.service, reason).inc()
        log.warning("parked a message on %s: %s (%s)", self.topology.dead, reason, error[:200])
        message.ack()

    def _send(self, queue: str, body: bytes, headers: dict[str, Any], message: kombu.Message) -> None:
        """Publish to one queue through the default exchange, confirmed, before the original is acked."""
        assert self._producer is not None
        props = message.properties or {}
        self._producer.publish(
            body,
            exchange="",
            routing_key=queue,
            headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=2,
            message_id=props.get("message_id"),
            correlation_id=props.get("correlation_id"),
            timeout=self.settings.confirm_timeout,
        )

    def _retry_in_process(self, body: bytes, headers: dict[str, Any], delay: float) -> None:
        def republish() -> None:
            self._timers.discard(timer)
            with connection(self.settings) as conn:
                Producer(conn.channel()).publish(
                    body, exchange="", routing_key=self.topology.queue, headers=headers,
                    content_type="application/json", content_encoding="utf-8",
                )

        timer = threading.Timer(delay, republish)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()


def delete_topology(settings: Settings, topologies: Iterable[Topology], *, exchange: bool = False) -> None:
    """Remove a service's queues (tests and `twincity ops`); the exchange only when asked."""
    with connection(settings) as conn:
        channel = conn.channel()
        for topology in topologies:
            for queue in [topology.queue, topology.dead, *topology.retry_queues]:
                try:
                    channel.queue_delete(queue=queue)
                except Exception:
                    channel = conn.channel()
        if exchange:
            channel.exchange_delete(exchange=settings.exchange)
