"""The `twincity` command: the embedded platform, each service's processes, and configuration help."""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any

import click

from services import logs
from services.config import VARIABLES, ConfigError, Settings, redacted_url, shown

# service name -> module with create_app() (and run_worker() for services with a queue)
SERVICES = {
    "gateway": "gateway.bootstrap",
    "ideas": "ideas.bootstrap",
    "matching": "matching.bootstrap",
    "notify": "notify.bootstrap",
}


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


class _LazyGroup(click.Group):
    """A group whose heavier subcommands are imported only when they are called.

    `twincity ops` pulls in pika and the services' metrics; importing prometheus_client before
    `twincity <service> web` has set PROMETHEUS_MULTIPROC_DIR would make every gunicorn worker count alone.
    """

    lazy = {"ops": ("twincity.ops", "ops", "Operator tools: broker topology, queue depths, parked messages, outboxes.")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attribute, _help = self.lazy[cmd_name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(formatter.width)) for name, cmd in self.commands.items()]
        rows += [(name, short) for name, (_m, _a, short) in self.lazy.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twincity")
def main() -> None:
    """Twin City Lab: match project ideas across partner cities, in their own languages."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--demo/--empty", "demo", default=True, show_default=True,
              help="Load the demo lab (two cities, five people, twelve ideas), or start empty.")
def dev(host: str, port: int, demo: bool) -> None:
    """Run the whole platform in this one process (in-memory broker and store; keeps nothing)."""
    from werkzeug.serving import make_server

    from twincity.embedded import EmbeddedPlatform

    os.environ.setdefault("LOG_FORMAT", "text")
    settings = _settings()
    if not settings.embedded:
        raise click.ClickException(
            f"`twincity dev` runs on the in-memory broker; AMQP_URL is {redacted_url(settings.amqp_url)!r}. "
            "Unset AMQP_URL, or run the services with `twincity <service> web|worker`."
        )
    _check_port(host, port)
    admin_key = settings.admin_key or ("tcl_" + secrets.token_urlsafe(32))
    settings = settings.replace(admin_key=admin_key)
    if not os.environ.get("TWINCITY_PUBLIC_URL"):  # links in e-mails and the inbox lead to this very process
        settings = settings.replace(public_url=_own_address(host, port))
    logs.setup("dev", settings.log_level, settings.log_format)
    platform = EmbeddedPlatform.build(settings).start()
    server = make_server(host, port, platform.gateway, threaded=True)
    url = f"http://{host}:{server.server_port}"
    lab = None
    if demo:
        from twincity.demo import seed

        lab = seed(platform.gateway, admin_key)
    click.echo(_banner(url, admin_key, platform, lab))
    sys.stdout.flush()

    def _interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        platform.stop()
        click.echo("stopped; nothing was kept")


def _banner(url: str, admin_key: str, platform: Any, lab: Any) -> str:
    """What `twincity dev` says when it is up: where it answers, the admin key, the demo lab's keys."""
    origin = "from TWINCITY_ADMIN_KEY" if os.environ.get("TWINCITY_ADMIN_KEY") else "made for this run"
    return (
        "\n".join([
            "",
            "  Twin City Lab is running (embedded mode)",
            f"  URL:        {url}",
            f"  Health:     {url}/healthz",
            f"  Admin key:  {admin_key}   ({origin})",
            f"  Services:   gateway, {', '.join(platform.runtimes)} (web and workers in this process)",
            *(["  Demo lab:   not loaded (--empty)"] if lab is None else _demo_lines(url, lab)),
            f"  Web pages:  {url}/   (sign-in links are shown there and logged: no mail server needed)",
            f"  API docs:   {url}/docs",
            "  It keeps nothing: broker and store live in this process's memory and vanish when it stops.",
            "  Stop with Ctrl-C.",
            "",
        ])
    )


def _demo_lines(url: str, lab: Any) -> list[str]:
    """The demo lab's keys and every way into it: each participant's address, each city's coordinator key."""
    return [
        f"  Demo lab:   {lab.partnership}: {len(lab.ideas)} ideas, "
        f"{sum(map(len, lab.participants.values()))} participants",
        *[f"  City key:   {key}   ({city}: read, write)" for city, key in lab.city_keys.items()],
        f"  Sign in as a participant at {url}/signin with one of these addresses:",
        *[f"     {email:<32} {name} ({city})" for city, name, email in lab.sign_ins()],
        f"  Sign in as a coordinator at {url}/coordinator/signin with a city key above.",
    ]


def _own_address(host: str, port: int) -> str:
    """Where a person on this machine reaches `twincity dev` (a wildcard address is reached on loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


def _check_port(host: str, port: int) -> None:
    """Fail before starting anything when the address is taken (werkzeug would exit with its own words)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") \
            from None


def _factory(service: str) -> Any:
    return importlib.import_module(SERVICES[service])


class _Gunicorn:
    """gunicorn's application, built lazily so the app (and its connections) is created after fork."""

    @staticmethod
    def run(service: str, options: dict[str, Any], *, consumers: int = 0) -> None:
        """Serve the app; with `consumers`, the (single) gunicorn worker also runs the service's worker."""
        from gunicorn.app.base import BaseApplication

        stop = threading.Event()
        running: dict[str, Any] = {}

        def worker_exit(_server: Any, _worker: Any) -> None:
            # After the web worker stopped taking requests: finish the message in hand, then the relay.
            runtime = running.get("runtime")
            if runtime is None:
                return
            stop.set()
            deadline = time.monotonic() + 20
            for thread in running["threads"]:
                thread.join(timeout=max(0.1, deadline - time.monotonic()))
            runtime.relay.stop(timeout=max(0.1, deadline - time.monotonic()))

        class Application(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for key, value in {**options, **({"worker_exit": worker_exit} if consumers else {})}.items():
                    if value is not None:
                        self.cfg.set(key, value)

            def load(self) -> Any:
                app = _factory(service).create_app()
                if consumers:
                    runtime = app.extensions["twincity.runtime"]
                    running.update(runtime=runtime, threads=runtime.start_worker(stop, consumers))
                return app

        Application().run()


def _forget_worker_metrics(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def _service_group(service: str) -> click.Group:
    group = click.Group(name=service, help=f"The {service} service's processes.")
    group.add_command(_web_command(service))
    if service != "gateway":
        group.add_command(_worker_command(service))
    return group


def _web_command(service: str) -> click.Command:
    @click.command(name="web", help=f"Serve the {service} web app with gunicorn.")
    @click.option("--bind", default=None, help="host:port (default 0.0.0.0:$PORT).")
    @click.option("--workers", type=click.IntRange(1, 64), default=None,
                  help="gunicorn worker processes (default $WEB_WORKERS).")
    @click.option("--threads", type=click.IntRange(1, 256), default=None,
                  help="Threads per worker (default $WEB_THREADS).")
    @click.option("--with-worker", is_flag=True, hidden=service == "gateway",
                  help="Also run the service's worker (consumers, outbox relay) in the one web process.")
    @click.option("--concurrency", type=click.IntRange(1, 64), default=None, hidden=service == "gateway",
                  help="With --with-worker: consumer threads (default $WORKER_CONCURRENCY).")
    @click.option("--memory-store", is_flag=True, help=MEMORY_STORE_HELP)
    def web(bind: str | None, workers: int | None, threads: int | None, with_worker: bool,
            concurrency: int | None, memory_store: bool) -> None:
        settings = _settings()
        consumers = 0
        if with_worker:
            # Web and worker share one process, so one store client and one index: for a small deployment,
            # and the only way to run a service apart from the others on MONGO_URL=mongomock:// (in memory).
            if service == "gateway":
                raise click.UsageError("the gateway has no worker")
            if (workers or 1) > 1:
                raise click.UsageError("--with-worker runs one web process; scale with more replicas")
            workers, consumers = 1, concurrency or settings.worker_concurrency
        _refuse_memory(settings, service, "web", memory_store)
        logs.setup(service, settings.log_level, settings.log_format)
        processes = workers or settings.web_workers
        _warn_memory_store(settings, service, "web", processes)
        _serve(service, settings, _web_options(service, settings, bind, processes, threads), consumers)

    return web


def _serve(service: str, settings: Settings, options: dict[str, Any], consumers: int) -> None:
    made, owner = None, os.getpid()
    if options["workers"] > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before any metric exists: each worker writes its counts there, /metrics adds them up.
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"twincity-{service}-metrics-")
    try:
        _Gunicorn.run(service, options, consumers=consumers)
    finally:
        # The counts of this run only: gone with it (a container's /tmp may be a small memory disk). Only the
        # arbiter removes them: a gunicorn worker leaving through here is a fork of it, while others still count.
        if made and os.getpid() == owner:
            shutil.rmtree(made, ignore_errors=True)


def _web_options(service: str, settings: Settings, bind: str | None, processes: int,
                 threads: int | None) -> dict[str, Any]:
    return {
        "bind": bind or f"0.0.0.0:{settings.port}",
        "workers": processes,
        "threads": threads or settings.web_threads,
        # A service's only client is the gateway's connection pool: its idle sockets are kept a minute, so that
        # the service seldom closes one just as the gateway sends a call on it (a POST is never sent twice).
        **({} if service == "gateway" else {"keepalive": 75}),
        "graceful_timeout": 25,  # within compose's 30 s stop_grace_period
        "accesslog": None,
        "logger_class": "twincity.weblog.Logger",
        # Several web commands on one host must not fight over one control socket in $HOME.
        "control_socket_disable": True,
        # gunicorn's own lines go through our handler, so LOG_FORMAT=json gives only JSON lines.
        "logconfig_dict": {
            "version": 1, "disable_existing_loggers": False, "root": {},
            "loggers": {
                "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
                # No line per request (twincity.weblog.Logger); latency and status are in /metrics.
                "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            },
        },
        "child_exit": _forget_worker_metrics,
    }


def _worker_command(service: str) -> click.Command:
    @click.command(name="worker", help=f"Consume the {service} queue and relay its outbox until SIGTERM.")
    @click.option("--concurrency", type=click.IntRange(1, 64), default=None,
                  help="Consumer threads, each with its own connection (default $WORKER_CONCURRENCY).")
    @click.option("--memory-store", is_flag=True, help=MEMORY_STORE_HELP)
    def worker(concurrency: int | None, memory_store: bool) -> None:
        settings = _settings()
        _refuse_memory(settings, service, "worker", memory_store)
        logs.setup(service, settings.log_level, settings.log_format)
        _warn_memory_store(settings, service, "worker", 1)
        if settings.worker_metrics_port:
            # The worker counts events handled, failed, retried and parked; Prometheus scrapes them here.
            from prometheus_client import start_http_server

            start_http_server(settings.worker_metrics_port)
        _factory(service).run_worker(concurrency or settings.worker_concurrency, settings=settings)

    return worker


MEMORY_STORE_HELP = ("Run on MONGO_URL=mongomock:// or AMQP_URL=memory:// (this process's memory, forgotten at every "
                     "restart): for tests and benchmarks (also TWINCITY_MEMORY_STORE=1).")


def _refuse_memory(settings: Settings, service: str, kind: str, allowed: bool) -> None:
    """A production command on a store or broker in its own memory would come back empty after any restart (gunicorn
    replacing a stalled worker, an operator restarting a container) and still say `ready`: refused unless asked for."""
    memory = [f"{name}={redacted_url(url)}" for name, url, scheme in (
        ("MONGO_URL", settings.mongo_url, "mongomock://"), ("AMQP_URL", settings.amqp_url, "memory://"))
        if url.startswith(scheme)]
    if not memory or allowed or settings.memory_store:
        return
    fixes = []
    if settings.mongo_url.startswith("mongomock://"):
        fixes.append("point MONGO_URL to MongoDB (MONGO_URL=mongodb://host:27017)")
    if settings.amqp_url.startswith("memory://"):
        fixes.append("point AMQP_URL to RabbitMQ (AMQP_URL=amqp://user:pass@host:5672/)")
    lost = ("every city, key and idea" if settings.mongo_url.startswith("mongomock://")
            else "every event not yet handled, and no other process hears of any")
    raise click.ClickException(
        f"`twincity {service} {kind}` will not run on {' and '.join(memory)}: that lives in this process's memory, "
        f"so a restart loses {lost} and still answers 'ready'. To keep them, {' and '.join(fixes)}; or run the "
        "whole platform in one process with `twincity dev`. For a test or a benchmark: --memory-store (or "
        "TWINCITY_MEMORY_STORE=1).")


def _warn_memory_store(settings: Settings, service: str, kind: str, processes: int) -> None:
    """Log it when the store is this process's memory: every other process of the service sees other data."""
    if not settings.mongo_url.startswith("mongomock://"):
        return
    if kind == "worker":
        alone = ": a worker alone keeps what it handles where no web process reads it (use web --with-worker)"
    elif processes > 1:
        alone = f": its {processes} gunicorn workers would each keep their own data (use --workers 1)"
    else:
        alone = ""
    logging.getLogger("twincity").warning(
        "twincity %s %s: MONGO_URL is mongomock:// (in this process's memory; nothing is kept)%s. Point MONGO_URL "
        "to MongoDB for anything but a trial; `twincity dev` runs everything in one process.", service, kind, alone)


for _name in SERVICES:
    main.add_command(_service_group(_name))


@main.command("config")
def show_config() -> None:
    """List every configuration variable, its value here and what it means; exit 1 when one is malformed."""
    try:
        Settings.from_env()
        problem = None
    except ConfigError as exc:
        problem = str(exc)
    width = max(len(var.name) for var in VARIABLES)
    for var in VARIABLES:
        value = shown(var.name, os.environ.get(var.name) or "")
        click.echo(f"{var.name:{width}} {value or '(default) ' + var.default!s:40} {var.help}")
    click.echo(f"\nconfiguration is {'valid' if problem is None else 'INVALID: ' + problem}")
    if problem is not None:
        raise SystemExit(1)


# --- operator commands on the gateway's store (no Mongo shell needed) --------------------------------

@main.group()
def admin() -> None:
    """Cities, partnerships and API keys, written straight to the gateway's store (MONGO_URL).

    Run these where the gateway's MONGO_URL points to the real store. The running gateway publishes the
    events they cause (its relay picks them up).
    """


def _directory() -> tuple[Any, Any]:
    from gateway import keys, repository
    from services import store

    settings = _settings()
    if settings.mongo_url.startswith("mongomock://") and not settings.memory_store:
        raise click.ClickException(
            "MONGO_URL is mongomock:// (in memory): nothing would be kept. Point MONGO_URL to the gateway's "
            "MongoDB, or use the API of a running `twincity dev` (its banner shows an admin key)."
        )
    db = store.database(settings, "gateway")
    store.ensure_indexes(db, {**keys.INDEXES, **repository.INDEXES})
    return repository.Directory(db), keys.KeyStore(db)


def _audit(action: str, target: str) -> None:
    """Operator commands go into the same audit log as admin API calls."""
    from gateway.audit import AuditLog
    from services import store

    AuditLog(store.database(_settings(), "gateway")).record(actor="cli", action=action, target=target)


def _refused(exc: Exception, options: dict[str, str] | None = None) -> click.ClickException:
    """A refusal of the gateway's rules (gateway.domain) or of a field (marshmallow), as the CLI says it: a field
    named by its option where it has one (`options`: field -> --option)."""
    named = options or {}
    from marshmallow import ValidationError

    from services.store import NotFound

    if isinstance(exc, NotFound):
        return click.ClickException(f"no {exc}")
    if isinstance(exc, ValidationError):
        return click.ClickException("; ".join(f"{named.get(field, field)}: {' '.join(map(str, messages))}"
                                              for field, messages in exc.normalized_messages().items()))
    field = getattr(exc, "field", None)
    return click.ClickException(f"{named.get(field, field)}: {exc}" if field else str(exc))


def _gateway_rules() -> tuple[type[Exception], ...]:
    from marshmallow import ValidationError

    from gateway import domain
    from services.store import NotFound

    return ValidationError, domain.Exists, domain.Unknown, domain.Invalid, domain.RuleViolation, NotFound


@admin.command("create-key")
@click.option("--admin", "is_admin", is_flag=True, help="An admin key (all cities; manages cities and keys).")
@click.option("--city", default=None, help="The city the key acts for.")
@click.option("--scopes", default="read,write", show_default=True, help="Comma-separated: read, write, admin.")
@click.option("--label", default="", help="A note saying who or what uses the key.")
@click.option("--expires", default=None, type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
              help="When the key stops working (UTC), e.g. 2027-03-31; default: until revoked.")
def create_key(is_admin: bool, city: str | None, scopes: str, label: str, expires: Any) -> None:
    """Make an API key and print its secret (shown this once)."""
    from datetime import UTC

    from gateway import usecases
    from gateway.schemas import ApiKeyIn

    if not is_admin and not city:
        raise click.UsageError("give --city for a city key, or --admin")
    if is_admin and (city or scopes != "read,write"):
        raise click.UsageError("an admin key belongs to no city and has every scope: give --admin alone, or "
                               "--city with --scopes")
    wanted = ["admin", "read", "write"] if is_admin else [s.strip() for s in scopes.split(",") if s.strip()]
    directory, key_store = _directory()
    try:
        label = ApiKeyIn(only=("label",)).load({"label": label})["label"]
        made = usecases.add_key(directory, key_store, {
            "scopes": wanted, "city": None if is_admin else city, "label": label,
            "expires_at": expires.replace(tzinfo=UTC) if expires else None})
    except _gateway_rules() as exc:
        if getattr(exc, "field", None) == "city":
            raise click.ClickException(f"{exc}; create it first with `twincity admin create-city`") from None
        raise _refused(exc, options={"expires_at": "--expires", "scopes": "--scopes", "label": "--label"}) from None
    _audit("admin create-key", made["id"])
    click.echo(f"id:      {made['id']}\nkey:     {made['key']}\ncity:    {made['city'] or '(all: admin)'}\n"
               f"scopes:  {', '.join(made['scopes'])}\n"
               f"expires: {made['expires_at'].isoformat() if made['expires_at'] else 'never'}"
               "\nKeep the key now: it is stored only as a hash.")


@admin.command("create-city")
@click.argument("key")
@click.option("--name", required=True, help="The city's name, e.g. Karlsruhe.")
@click.option("--country", required=True, help="ISO 3166 code, e.g. DE.")
@click.option("--language", required=True, help="Default language (ISO 639-1), e.g. de.")
@click.option("--name-in", "names", multiple=True, metavar="LANG=NAME",
              help="Its name in another language, e.g. --name-in ru=Карлсруэ (repeatable).")
@click.option("--timezone", default=None, metavar="ZONE",
              help="IANA time zone, e.g. Europe/Moscow (default: the country's, else UTC).")
def create_city(key: str, name: str, country: str, language: str, names: tuple[str, ...],
                timezone: str | None) -> None:
    """Add a city to the deployment."""
    from gateway import usecases
    from gateway.schemas import CityIn

    directory, _ = _directory()
    other_names = {}
    for item in names:
        lang, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise click.BadParameter(f"{item!r}: write LANG=NAME, e.g. ru=Карлсруэ", param_hint="--name-in")
        other_names[lang.strip()] = value.strip()
    try:
        data = CityIn().load({"key": key, "name": name, "country": country, "language": language,
                              "names": other_names, **({"timezone": timezone} if timezone else {})})
        city = usecases.add_city(directory, data)
    except _gateway_rules() as exc:
        raise _refused(exc) from None
    _audit("admin create-city", city["_id"])
    click.echo(f"city {city['_id']} ({city['name']}, {city['country']}, {city['language']}) added")


@admin.command("create-partnership")
@click.argument("city_a")
@click.argument("city_b")
@click.option("--name", required=True, help="e.g. 'Twin City Lab Karlsruhe–Krasnodar'.")
@click.option("--id", "partnership_id", default=None, help="Default: <city-a>-<city-b>.")
def create_partnership(city_a: str, city_b: str, name: str, partnership_id: str | None) -> None:
    """Twin two cities."""
    from gateway import usecases
    from gateway.schemas import PartnershipIn

    directory, _ = _directory()
    try:
        data = PartnershipIn().load({"cities": [city_a, city_b], "name": name,
                                     **({"id": partnership_id} if partnership_id else {})})
        doc = usecases.add_partnership(directory, data)
    except _gateway_rules() as exc:
        raise _refused(exc) from None
    _audit("admin create-partnership", doc["_id"])
    click.echo(f"partnership {doc['_id']} ({' – '.join(doc['cities'])}) formed")


@admin.command("list")
def list_directory() -> None:
    """Show cities, partnerships and keys (never the keys' secrets)."""
    directory, key_store = _directory()
    cities, partnerships, keys = directory.list_cities(), directory.list_partnerships(), key_store.list_keys()
    if not (cities or partnerships or keys):
        click.echo("no cities, partnerships or keys yet: start with `twincity admin create-city`")
    for city in cities:
        click.echo(f"city         {city['_id']:20} {city['name']} ({city['country']}, {city['language']})")
    for p in partnerships:
        click.echo(f"partnership  {p['_id']:20} {p['name']}")
    for k in keys:
        state = "revoked" if k["revoked"] else "expired" if k["expired"] else ",".join(k["scopes"])
        until = f" until {k['expires_at']:%Y-%m-%d %H:%M}" if k["expires_at"] and not k["revoked"] else ""
        click.echo(f"key          {k['id']:20} {k['city'] or '(admin)'} {state}{until} {k['label']}")


@admin.command("revoke-key")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke an API key by its id (it gets 401 from now on)."""
    from gateway import usecases

    _, key_store = _directory()
    configured = _settings().admin_key
    try:
        usecases.revoke_key(key_store, key_id, caller_id=None,
                            configured_id=key_store.id_of(configured) if configured else None)
    except _gateway_rules() as exc:
        raise _refused(exc) from None
    _audit("admin revoke-key", key_id)
    click.echo(f"key {key_id} revoked")


if __name__ == "__main__":
    main()
