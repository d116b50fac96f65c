"""`twincity ops`: operator commands on the broker (topology, queue depths, parked messages) and the outboxes.

Each command is a thin CLI over a function of this module that tests (and scripts) can call with a `Settings`;
the work itself is the kernel's (services/operations.py), given this deployment's services.

The queue names come from each service's SPEC (bootstrap.py), read with the configuration of this process:
TWINCITY_NAMESPACE, TWINCITY_EXCHANGE and BUS_RETRY_DELAYS_MS must be those of the workers.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from services import bus, operations
from services.bus import Topology
from services.config import ConfigError, Settings
from services.operations import BINDINGS_NOTE, OpsError, Outcome, ParkedMessage, pika_url

# The services with a queue (a worker), and every service with an outbox (the gateway has no queue).
WORKERS = {"ideas": "ideas.bootstrap", "matching": "matching.bootstrap", "notify": "notify.bootstrap"}
OUTBOXES = {**WORKERS, "gateway": "gateway.bootstrap"}


# --- topology ----------------------------------------------------------------------------------------------------

def _spec(service: str) -> Any:
    return importlib.import_module(OUTBOXES[service]).SPEC


def event_types(service: str) -> tuple[str, ...]:
    """The event types a service's worker binds its queue to: the keys of its static handler table, as its SPEC
    names them (nothing is wired or connected to read them)."""
    return tuple(_spec(service).event_types)


def topology(settings: Settings, service: str) -> Topology:
    """As the worker binds: its optional types (notify's webhook-only ones) only while wanted, by the service."""
    return bus.topology_for(settings, service, event_types(service), _spec(service).optional_events)


def topologies(settings: Settings) -> list[Topology]:
    return [topology(settings, service) for service in WORKERS]


def _queue_topology(settings: Settings, service: str) -> Topology:
    """Only the queue names (the parked commands need no handler table)."""
    if service not in WORKERS:
        raise OpsError(f"unknown service {service!r}; one of {', '.join(WORKERS)}")
    return Topology(service=service, exchange=settings.exchange, event_types=(),
                    retry_delays_ms=settings.retry_delays_ms, namespace=settings.namespace)


# --- what the commands do, for the services of this deployment (services.operations does it) -----------------------

def check_topology(settings: Settings) -> list[operations.Check]:
    return operations.check_topology(settings, topologies(settings))


def declare_topology(settings: Settings) -> list[str]:
    return operations.declare_topology(settings, topologies(settings))


def queue_depths(settings: Settings) -> list[operations.QueueDepth]:
    return operations.queue_depths(settings, topologies(settings))


def list_parked(settings: Settings, service: str, limit: int | None = 50) -> tuple[list[ParkedMessage], int]:
    return operations.list_parked(settings, _queue_topology(settings, service), limit)


def find_parked(settings: Settings, service: str, message_id: str) -> list[ParkedMessage]:
    return operations.find_parked(settings, _queue_topology(settings, service), message_id)


def replay_parked(settings: Settings, service: str, message_ids: Sequence[str] | None = None) -> Outcome:
    return operations.replay_parked(settings, _queue_topology(settings, service), message_ids)


def purge_parked(settings: Settings, service: str, message_ids: Sequence[str] | None = None) -> Outcome:
    return operations.purge_parked(settings, _queue_topology(settings, service), message_ids)


def outbox_backlog(settings: Settings) -> list[operations.Backlog]:
    return operations.outbox_backlog(settings, [_spec(service) for service in OUTBOXES])


# --- the commands ------------------------------------------------------------------------------------------------

def _settings(*, broker_needed: bool = True) -> Settings:
    try:
        settings = Settings.from_env()
        if broker_needed:
            pika_url(settings.amqp_url)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    return settings


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except OpsError as exc:
        raise click.ClickException(str(exc)) from None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
service_argument = click.argument("service", type=click.Choice(list(WORKERS)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ops() -> None:
    """Operator commands: the broker topology, queue depths, parked messages and outbox backlogs.

    They read AMQP_URL, MONGO_URL, TWINCITY_NAMESPACE, TWINCITY_EXCHANGE and BUS_RETRY_DELAYS_MS from the
    environment: set them as for the workers.
    """


@ops.command("topology")
@click.option("--declare", is_flag=True, help="Declare the exchange, every queue and binding first (idempotent).")
@json_option
def topology_command(declare: bool, as_json: bool) -> None:
    """Check that the exchange and every service's queues exist (exit 1 when one is missing).

    Queues are checked with passive declares: the events queue, one retry queue per BUS_RETRY_DELAYS_MS
    delay, and the parking queue. Bindings cannot be listed without the management API; --declare
    re-declares them.
    """
    settings = _settings()
    with _errors():
        problems = declare_topology(settings) if declare else []
        checks = check_topology(settings)
    missing = [c for c in checks if c.status == "missing"]
    ok = not missing and not problems
    if as_json:
        _json({"ok": ok, "declared": declare, "problems": problems, "checks": [asdict(c) for c in checks],
               "note": BINDINGS_NOTE})
    else:
        click.echo(_table(["SERVICE", "KIND", "NAME", "STATUS"],
                          [(c.service, c.kind, c.name, c.status) for c in checks]))
        click.echo(f"\nnote: {BINDINGS_NOTE}.")
        for problem in problems:
            click.echo(f"could not declare {problem}", err=True)
        if missing:
            click.echo(f"{len(missing)} missing; `twincity ops topology --declare` creates them.", err=True)
        elif ok:
            click.echo("declared; everything is in place." if declare else "everything is in place.")
    if not ok:
        raise SystemExit(1)


@ops.command("queues")
@json_option
def queues_command(as_json: bool) -> None:
    """Messages ready and consumers of every service's queues (events, retry, dead); exit 1 when one is missing."""
    settings = _settings()
    with _errors():
        rows = queue_depths(settings)
    if as_json:
        _json([asdict(r) for r in rows])
    else:
        click.echo(_table(
            ["SERVICE", "KIND", "QUEUE", "READY", "CONSUMERS"],
            [(r.service, r.kind, r.queue, r.ready if r.exists else "missing", r.consumers if r.exists else "-")
             for r in rows],
        ))
    missing = [r for r in rows if not r.exists]
    if missing:
        if not as_json:
            click.echo(f"{len(missing)} missing; `twincity ops topology` says more, `--declare` creates them.",
                       err=True)
        raise SystemExit(1)


@ops.group("parked")
def parked() -> None:
    """Messages in a service's parking queue (<service>.dead): list, show, replay, purge.

    A message is named by its message id (the event id); one without a message id or event id by a hash
    of its body ("body-…"). Reading holds the messages unacked for a moment and then puts them back in
    their place.
    """


@parked.command("list")
@service_argument
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Most messages to show.")
@json_option
def parked_list(service: str, limit: int, as_json: bool) -> None:
    """List parked messages without removing them."""
    settings = _settings()
    with _errors():
        messages, total = list_parked(settings, service, limit)
    if as_json:
        _json({"service": service, "total": total, "messages": [m.summary() for m in messages]})
        return
    if not messages:
        click.echo(f"no parked messages for {service}")
        return
    click.echo(_table(
        ["MESSAGE ID", "EVENT TYPE", "REASON", "ATTEMPTS", "PARKED AT", "ERROR"],
        [(m.message_id, m.event_type, m.reason, "" if m.attempts is None else m.attempts, m.parked_at,
          _short(m.error)) for m in messages],
    ))
    click.echo(f"\n{len(messages)} of {total} parked message(s) shown; none removed.")


@parked.command("show")
@service_argument
@click.argument("message_id")
@json_option
def parked_show(service: str, message_id: str, as_json: bool) -> None:
    """Show one parked message: its properties, headers and body (pretty JSON when it is JSON)."""
    settings = _settings()
    with _errors():
        found = find_parked(settings, service, message_id)
    if not found:
        raise click.ClickException(f"no parked message {message_id} for {service}")
    if as_json:
        _json([m.details() for m in found] if len(found) > 1 else found[0].details())
        return
    for i, message in enumerate(found, start=1):
        if len(found) > 1:
            click.echo(f"--- copy {i} of {len(found)}")
        click.echo(f"message id:  {message.message_id}\nevent type:  {message.event_type}")
        click.echo("properties:")
        for key, value in message.properties.items():
            click.echo(f"  {key}: {value}")
        click.echo("headers:")
        for key, value in message.headers.items():
            click.echo(f"  {key}: {json.dumps(value, ensure_ascii=False, default=_jsonable)}")
        encoding, body = message.body_view()
        click.echo(f"body ({encoding}):")
        click.echo(json.dumps(body, indent=2, ensure_ascii=False) if encoding == "json" else body)


def _selection(message_ids: tuple[str, ...], select_all: bool) -> list[str] | None:
    if select_all and message_ids:
        raise click.UsageError("give message ids or --all, not both")
    if not select_all and not message_ids:
        raise click.UsageError("name the message ids (see `twincity ops parked list`), or give --all")
    return None if select_all else list(message_ids)


def _report(verb: str, service: str, outcome: Outcome, as_json: bool) -> None:
    if as_json:
        _json({"service": service, verb: len(outcome.done), "message_ids": outcome.done,
               "not_found": outcome.not_found, "remaining": outcome.remaining})
    else:
        click.echo(f"{verb} {len(outcome.done)} parked message(s) of {service}; {outcome.remaining} left parked.")
        for message_id in outcome.not_found:
            click.echo(f"not found: {message_id}", err=True)
    if outcome.not_found:
        raise SystemExit(1)


@parked.command("replay")
@service_argument
@click.argument("message_ids", nargs=-1)
@click.option("--all", "select_all", is_flag=True, help="Replay every message parked when the command starts.")
@json_option
def parked_replay(service: str, message_ids: tuple[str, ...], select_all: bool, as_json: bool) -> None:
    """Move parked messages back to the service's queue, to be handled again.

    Each is published (with publisher confirms) to <service>.events without its parking headers and its
    retry count, and removed from the parking queue only after the broker confirmed it. Exit 1 when a
    named message is not parked.
    """
    selection = _selection(message_ids, select_all)
    settings = _settings()
    with _errors():
        outcome = replay_parked(settings, service, selection)
    _report("replayed", service, outcome, as_json)


@parked.command("purge")
@service_argument
@click.argument("message_ids", nargs=-1)
@click.option("--all", "select_all", is_flag=True, help="Remove every message parked when the command starts.")
@click.option("--yes", is_flag=True, help="Really remove them (there is no undo).")
@json_option
def parked_purge(service: str, message_ids: tuple[str, ...], select_all: bool, yes: bool, as_json: bool) -> None:
    """Remove parked messages for good (refuses without --yes)."""
    selection = _selection(message_ids, select_all)
    if not yes:
        raise click.ClickException(
            "purge removes parked messages for good; add --yes to do it "
            f"(`twincity ops parked list {service}` shows them first)"
        )
    settings = _settings()
    with _errors():
        outcome = purge_parked(settings, service, selection)
    _report("purged", service, outcome, as_json)


@ops.command("backlog")
@json_option
def backlog_command(as_json: bool) -> None:
    """Outbox backlog: events stored but not yet published, per service and collection.

    Reads each service's database (<TWINCITY_DB_PREFIX>_<service>) on MONGO_URL, the gateway's included.
    A backlog that stays or grows means that service's relay is not publishing (is its worker or web
    process running, and does the broker answer?).
    """
    settings = _settings(broker_needed=False)
    if settings.mongo_url.startswith("mongomock://") and not settings.memory_store:
        raise click.ClickException(
            "MONGO_URL is mongomock:// (in memory): this process would read an empty store of its own. "
            "Point MONGO_URL to the services' MongoDB."
        )
    with _errors():
        rows = outbox_backlog(settings)
    if as_json:
        totals: dict[str, int] = {}
        for row in rows:
            totals[row.service] = totals.get(row.service, 0) + row.events
        _json({"total": sum(totals.values()), "services": totals, "collections": [asdict(r) for r in rows]})
        return
    click.echo(_table(
        ["SERVICE", "DATABASE", "COLLECTION", "DOCUMENTS", "EVENTS", "OLDEST PENDING"],
        [(r.service, r.database, r.collection, r.documents, r.events, r.oldest or "-") for r in rows],
    ))
    click.echo(f"\n{sum(r.events for r in rows)} event(s) pending in all outboxes.")
