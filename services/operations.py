"""Operators' work on the broker and the outboxes: passive checks of the topology, queue depths, parked messages
(read, replayed, purged) and the events still waiting in outboxes. `twincity ops` is its command line.

Broker work uses pika's BlockingConnection (passive declares give a queue's depth and consumers; basic_get without
ack reads parked messages without removing them); only declaring goes through kombu, so that it declares with
`services.bus.declare`, exactly as the workers do (RabbitMQ refuses a re-declare whose arguments differ, so there
must be one definition). It knows the services only by the topologies and specs it is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions

from services import bus, outbox, store
from services.bus import ATTEMPT_HEADER, PARK_HEADERS, Topology
from services.config import ConfigError, Settings, redacted_url
from services.runtime import ServiceSpec

ROUTING_KEY_HEADER = "x-twincity-routing-key"
REPLAYED_HEADER = "x-twincity-replayed-at"
# Headers a replay drops: the parking record and the retry count (the message starts its tries afresh).
DROPPED_ON_REPLAY = frozenset({*PARK_HEADERS, ATTEMPT_HEADER, ROUTING_KEY_HEADER})


BINDINGS_NOTE = ("bindings (event type -> queue) and queue arguments cannot be listed without the management "
                 "API; `twincity ops topology --declare` re-declares them (idempotent)")


class OpsError(Exception):
    """The broker or the store did not do what was asked; the message says what and where."""


# --- configuration and connections ----------------------------------------------------------------------------

def pika_url(amqp_url: str) -> str:
    """A kombu broker URL as pika reads it.

    kombu writes the default vhost "/" as a trailing "//" (and takes the path after the first "/" as the
    vhost, unquoted); pika wants the vhost percent-encoded ("/%2F"). The scheme pyamqp:// is amqp://.
    """
    parts = urlsplit(amqp_url)
    scheme = {"pyamqp": "amqp"}.get(parts.scheme, parts.scheme)
    if scheme not in ("amqp", "amqps"):
        raise ConfigError(f"AMQP_URL={redacted_url(amqp_url)!r}: `twincity ops` needs a broker (amqp:// or amqps://)")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) or "/"
    return urlunsplit((scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def broker_parameters(settings: Settings) -> pika.URLParameters:
    params = pika.URLParameters(pika_url(settings.amqp_url))
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = max(settings.confirm_timeout, 5)
    params.heartbeat = settings.heartbeat
    params.client_properties = {"connection_name": "twincity-ops"}
    return params


@contextlib.contextmanager
def broker(settings: Settings) -> Iterator[pika.BlockingConnection]:
    """A pika connection to AMQP_URL, closed afterwards (unacked messages go back to their queue)."""
    try:
        conn = pika.BlockingConnection(broker_parameters(settings))
    except pika.exceptions.AMQPError as exc:
        raise OpsError(f"RabbitMQ at {redacted_url(settings.amqp_url)} does not answer: {exc!r}") from None
    try:
        yield conn
    except pika.exceptions.AMQPConnectionError as exc:
        raise OpsError(f"lost the connection to RabbitMQ at {redacted_url(settings.amqp_url)}: {exc!r}") from None
    finally:
        with contextlib.suppress(Exception):  # already closed or broken: nothing left to release
            conn.close()


def _exists(conn: pika.BlockingConnection, declare: Callable[[Any], Any]) -> tuple[bool, Any]:
    """Run one passive declare on a channel of its own (a 404 closes the channel, not the connection)."""
    channel = conn.channel()
    try:
        frame = declare(channel)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return False, None
        raise OpsError(f"broker refused: {exc.reply_code} {exc.reply_text}") from None
    with contextlib.suppress(Exception):
        channel.close()
    return True, frame


@dataclass
class Check:
    service: str
    kind: str  # exchange, queue, retry, dead, bindings
    name: str
    status: str  # ok, missing, not checked
    detail: str = ""


def check_topology(settings: Settings, topologies: Sequence[Topology]) -> list[Check]:
    """Passive declares of the exchange and every service's queues; bindings are listed as not checked."""
    checks: list[Check] = []
    with broker(settings) as conn:
        found, _ = _exists(conn, lambda ch: ch.exchange_declare(exchange=settings.exchange, passive=True))
        checks.append(Check("*", "exchange", settings.exchange, "ok" if found else "missing"))
        for topo in topologies:
            queues = [("queue", topo.queue), *[("retry", q) for q in topo.retry_queues], ("dead", topo.dead)]
            for kind, name in queues:
                found, _ = _exists(conn, lambda ch, name=name: ch.queue_declare(queue=name, passive=True))
                checks.append(Check(topo.service, kind, name, "ok" if found else "missing"))
            optional = f" (+{len(topo.optional_types)} while wanted)" if topo.optional_types else ""
            checks.append(Check(topo.service, "bindings", f"{len(topo.event_types)} event types{optional}",
                                "not checked", ", ".join(topo.event_types) + (
                                    f"; bound while wanted: {', '.join(topo.optional_types)}" if optional else "")))
    return checks


def declare_topology(settings: Settings, topologies: Sequence[Topology]) -> list[str]:
    """Declare the exchange and every service's queues and bindings (idempotent), with `services.bus.declare`.

    Returns one line per service that could not be declared (e.g. a queue exists with other arguments).
    """
    problems: list[str] = []
    wanted = list(topologies)
    try:
        with bus.connection(settings) as conn:
            conn.ensure_connection(max_retries=1)
            for topo in wanted:
                channel = conn.channel()
                try:
                    bus.declare(channel, topo, broker_retries=True)
                except Exception as exc:  # a refused declare closes the channel; go on with the next service
                    problems.append(f"{topo.service}: {exc}")
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
    except Exception as exc:
        raise OpsError(f"RabbitMQ at {redacted_url(settings.amqp_url)}: cannot declare: {exc!r}") from None
    return problems


# --- queue depths ------------------------------------------------------------------------------------------------

@dataclass
class QueueDepth:
    service: str
    kind: str  # events, retry, dead
    queue: str
    exists: bool
    ready: int | None
    consumers: int | None


def queue_depths(settings: Settings, topologies: Sequence[Topology]) -> list[QueueDepth]:
    rows: list[QueueDepth] = []
    with broker(settings) as conn:
        for topo in topologies:
            queues = [("events", topo.queue), *[("retry", q) for q in topo.retry_queues], ("dead", topo.dead)]
            for kind, name in queues:
                found, frame = _exists(conn, lambda ch, name=name: ch.queue_declare(queue=name, passive=True))
                rows.append(QueueDepth(
                    topo.service, kind, name, found,
                    frame.method.message_count if found else None,
                    frame.method.consumer_count if found else None,
                ))
    return rows


# --- parked messages ---------------------------------------------------------------------------------------------

@dataclass
class ParkedMessage:
    """One message of a parking queue, as read (not removed) from the broker."""

    message_id: str
    event_type: str
    reason: str
    error: str
    attempts: int | None
    parked_at: str  # ISO 8601, UTC ("" when the header is missing)
    routing_key: str
    headers: dict[str, Any]
    properties: dict[str, Any]
    body: bytes = field(repr=False)
    delivery_tag: int = field(default=0, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k in (
            "message_id", "event_type", "reason", "error", "attempts", "parked_at", "routing_key")}

    def body_view(self) -> tuple[str, Any]:
        """("json", parsed) when the body is JSON, ("text", str) when UTF-8, else ("base64", str)."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return "base64", base64.b64encode(self.body).decode("ascii")
        try:
            return "json", json.loads(text)
        except ValueError:
            return "text", text

    def details(self) -> dict[str, Any]:
        encoding, body = self.body_view()
        return {**self.summary(), "properties": self.properties, "headers": self.headers,
                "body_encoding": encoding, "body": body}


_PROPERTY_NAMES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                   "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")


def _parse(delivery_tag: int, props: pika.BasicProperties, body: bytes) -> ParkedMessage:
    headers = dict(props.headers or {})
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data, event_type = None, "undecodable"
    else:
        event_type = data["type"] if isinstance(data, dict) and isinstance(data.get("type"), str) else "(no type)"
    message_id = props.message_id or (data.get("id") if isinstance(data, dict) else None)
    if not isinstance(message_id, str) or not message_id:
        # Not an event and published without a message id: named by its body (identical bodies share it).
        message_id = "body-" + hashlib.sha256(body).hexdigest()[:16]
    parked_at = headers.get("x-twincity-parked-at")
    try:
        parked_iso = datetime.fromtimestamp(float(parked_at), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        parked_iso = ""
    attempts = headers.get("x-twincity-attempts")
    return ParkedMessage(
        message_id=message_id,
        event_type=event_type,
        reason=_text(headers.get("x-twincity-park-reason", "")),
        error=_text(headers.get("x-twincity-error", "")),
        attempts=attempts if isinstance(attempts, int) else None,
        parked_at=parked_iso,
        routing_key=_text(headers.get(ROUTING_KEY_HEADER, "")),
        headers=headers,
        properties={name: getattr(props, name) for name in _PROPERTY_NAMES if getattr(props, name) is not None},
        body=body,
        delivery_tag=delivery_tag,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _ParkingScan:
    """Reads a parking queue with basic_get, holding every message unacked; the caller acks what it removes.

    It reads at most the messages there were when it started, so that a message parked again meanwhile (a
    replay whose handler still fails) is not read twice. On exit everything not acked goes back to the
    queue, in its place (basic_nack with requeue, and the channel closes).
    """

    def __init__(self, conn: pika.BlockingConnection, topo: Topology) -> None:
        self.topology = topo
        found, frame = _exists(conn, lambda ch: ch.queue_declare(queue=topo.dead, passive=True))
        if not found:
            raise OpsError(f"there is no parking queue {topo.dead}; is TWINCITY_NAMESPACE right? "
                           "(`twincity ops topology --declare` creates the queues)")
        self.total = frame.method.message_count
        self.channel = conn.channel()

    def messages(self, limit: int | None = None) -> Iterator[ParkedMessage]:
        wanted = self.total if limit is None else min(limit, self.total)
        for _ in range(wanted):
            method, props, body = self.channel.basic_get(queue=self.topology.dead, auto_ack=False)
            if method is None:
                return  # someone else took the rest
            yield _parse(method.delivery_tag, props, body)

    def ack(self, message: ParkedMessage) -> None:
        self.channel.basic_ack(delivery_tag=message.delivery_tag)

    def release(self) -> None:
        with contextlib.suppress(Exception):  # a closed channel has requeued them already
            self.channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            self.channel.close()


@contextlib.contextmanager
def _scan(settings: Settings, topo: Topology) -> Iterator[tuple[pika.BlockingConnection, _ParkingScan]]:
    with broker(settings) as conn:
        scan = _ParkingScan(conn, topo)
        try:
            yield conn, scan
        finally:
            scan.release()


def list_parked(settings: Settings, topo: Topology, limit: int | None = 50) -> tuple[list[ParkedMessage], int]:
    """The first `limit` parked messages of a service (all when None) and how many there are; none removed."""
    with _scan(settings, topo) as (_, scan):
        return list(scan.messages(limit)), scan.total


def find_parked(settings: Settings, topo: Topology, message_id: str) -> list[ParkedMessage]:
    """Every parked copy with this message id (usually one); none removed."""
    with _scan(settings, topo) as (_, scan):
        return [m for m in scan.messages() if m.message_id == message_id]


@dataclass
class Outcome:
    """What a replay or purge did: the message ids it moved or removed, and the asked-for ids it did not find."""

    done: list[str]
    not_found: list[str]
    remaining: int  # parked messages left in the queue (as far as this command knows)


def _select(message: ParkedMessage, ids: set[str] | None) -> bool:
    return ids is None or message.message_id in ids


def replay_properties(message: ParkedMessage) -> pika.BasicProperties:
    """The parked message's properties, its headers without the parking record, persistent."""
    headers = {k: v for k, v in message.headers.items() if k not in DROPPED_ON_REPLAY}
    headers[REPLAYED_HEADER] = datetime.now(UTC).isoformat(timespec="seconds")
    props = {k: v for k, v in message.properties.items() if k != "delivery_mode"}
    return pika.BasicProperties(**props, headers=headers, delivery_mode=2)


def replay_parked(settings: Settings, topo: Topology, message_ids: Sequence[str] | None = None) -> Outcome:
    """Move parked messages (those ids, or all when None) back to the service's queue.

    Each is published to the default exchange with routing key = the service queue, mandatory and with
    publisher confirms, and the parked copy is acked only after the confirm. A crash in between leaves
    both copies (the consumers are idempotent by event id), never none.
    """
    ids = None if message_ids is None else set(message_ids)
    done: list[str] = []
    with _scan(settings, topo) as (conn, scan):
        target = scan.topology.queue
        found, _ = _exists(conn, lambda ch: ch.queue_declare(queue=target, passive=True))
        if not found:
            raise OpsError(f"there is no queue {target} to replay into (`twincity ops topology --declare`)")
        publisher = conn.channel()
        publisher.confirm_delivery()
        try:
            for message in scan.messages():
                if not _select(message, ids):
                    continue
                try:
                    publisher.basic_publish(exchange="", routing_key=target, body=message.body,
                                            properties=replay_properties(message), mandatory=True)
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    raise OpsError(f"the broker did not take message {message.message_id} ({exc!r}); "
                                   f"{len(done)} replayed before it, it and the rest stay parked") from None
                scan.ack(message)
                done.append(message.message_id)
        finally:
            with contextlib.suppress(Exception):
                publisher.close()
        remaining = scan.total - len(done)
    return Outcome(done, sorted((ids or set()) - set(done)), remaining)


def purge_parked(settings: Settings, topo: Topology, message_ids: Sequence[str] | None = None) -> Outcome:
    """Remove parked messages for good (those ids, or all that were there when it started when None)."""
    ids = None if message_ids is None else set(message_ids)
    done: list[str] = []
    with _scan(settings, topo) as (_, scan):
        for message in scan.messages():
            if _select(message, ids):
                scan.ack(message)
                done.append(message.message_id)
        remaining = scan.total - len(done)
    return Outcome(done, sorted((ids or set()) - set(done)), remaining)


# --- outbox backlog ----------------------------------------------------------------------------------------------

@dataclass
class Backlog:
    service: str
    database: str
    collection: str
    documents: int  # documents with pending events
    events: int  # pending events in them
    oldest: str  # occurred_at of the oldest pending event ("" when none)


def outbox_backlog(settings: Settings, specs: Sequence[ServiceSpec]) -> list[Backlog]:
    """Pending (not yet published) events in the outbox collections of these services."""
    rows: list[Backlog] = []
    try:
        for spec in specs:
            service = spec.name
            db = store.database(settings, service)
            for name in spec.outbox_collections:
                documents = events = 0
                oldest = ""
                for doc in db[name].find(outbox.pending_filter(), {outbox.FIELD: 1}):
                    pending = doc.get(outbox.FIELD) or []
                    documents += 1 if pending else 0
                    events += len(pending)
                    times = [str(e.get("occurred_at") or "") for e in pending if isinstance(e, Mapping)]
                    oldest = min([t for t in [oldest, *times] if t], default="")
                rows.append(Backlog(service, settings.database_name(service), name, documents, events, oldest))
    except store.StoreError as exc:
        raise OpsError(f"MongoDB at {redacted_url(settings.mongo_url)} did not answer: {exc}") from None
    return rows


