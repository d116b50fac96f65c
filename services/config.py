"""Configuration from the environment, with defaults that make the embedded mode work out of the box."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit, urlunsplit


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


_USERINFO = re.compile(r"([^:/@\s]+):[^@/\s]*@")


def redacted_url(url: str) -> str:
    """The URL with its password (if any) shown as ***: for messages, logs and `twincity config`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
    if password is None:  # none found (or not even a URL): whatever sits between a colon and an @ is taken for one
        return _USERINFO.sub(r"\1:***@", url)
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def shown(name: str, value: str) -> str:
    """A variable's value as `twincity config` prints it: keys and secrets only as set, URLs without passwords."""
    if any(word in name for word in ("KEY", "SECRET", "PASSWORD", "TOKEN")):
        return "(set)" if value else ""
    return redacted_url(value) if "@" in value else value


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        scheme = urlsplit(value).scheme
    except ValueError as exc:
        raise ConfigError(f"{name}={redacted_url(value)!r} is not a valid URL ({exc})") from None
    if scheme not in schemes or "://" not in value:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name}={redacted_url(value)!r} is not a valid URL: it must start with one of {allowed}")
    return value


def _int(name: str, value: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name}={value!r} must be at most {maximum}")
    return number


def _float(name: str, value: str, minimum: float = 0.0) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be at least {minimum}")
    return number


def _delays(name: str, value: str) -> tuple[int, ...]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{name}={value!r} must list at least one delay in milliseconds, e.g. 1000,5000")
    delays = tuple(_int(name, p, minimum=1) for p in parts)
    if list(delays) != sorted(delays):
        raise ConfigError(f"{name}={value!r}: retry delays must grow (each at least the one before)")
    return delays


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value.lower()


def _rate(name: str, value: str) -> str:
    found = re.match(r"^\s*(\d+)\s*(/|\s+per\s+)\s*(\d+\s+)?(second|minute|hour|day)s?\s*$", value)
    if not found:
        raise ConfigError(f"{name}={value!r} must read like 300/minute or 10 per second")
    if int(found.group(1)) < 1 or (found.group(3) and int(found.group(3)) < 1):
        raise ConfigError(f"{name}={value!r} would refuse every request: allow at least 1 per period")
    return value.strip()


def _cidrs(name: str, value: str) -> tuple[str, ...]:
    import ipaddress

    found = []
    for part in (p.strip() for p in value.split(",") if p.strip()):
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a network like 127.0.0.0/8 or 10.1.2.3/32") from None
    return tuple(found)


_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _name(name: str, value: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(f"{name}={value!r} must be lower-case letters, digits, '.', '_' or '-'")
    return value


@dataclass(frozen=True)
class Var:
    """One configuration variable: its name, default and meaning (docs/configuration.md's tables follow these)."""

    name: str
    default: str
    help: str


# Every variable the platform reads. docs/configuration.md's tables mirror this list
# (tests/unit/test_config.py keeps them in step).
VARIABLES: tuple[Var, ...] = (
    Var("AMQP_URL", "memory://", "Broker URL: amqp://user:pass@host:5672/vhost, or memory:// (in-process)."),
    Var("MONGO_URL", "mongomock://", "Store URL: mongodb://host:27017, or mongomock:// (in-memory, keeps nothing)."),
    Var("TWINCITY_DB_PREFIX", "twincity", "Prefix of each service's own database name (<prefix>_<service>)."),
    Var("TWINCITY_EXCHANGE", "twincity.events", "Name of the durable topic exchange all events go through."),
    Var("TWINCITY_NAMESPACE", "", "Prefix of every queue name, for several deployments on one broker vhost."),
    Var("TWINCITY_MEMORY_STORE", "0", "1 lets `twincity <service> web|worker`, `admin` and `ops` run on an in-memory "
        "store or broker (mongomock://, memory://), which a restart forgets: for tests and benchmarks only. "
        "`twincity dev` needs none."),
    Var("TWINCITY_ADMIN_KEY", "", "First admin API key; when empty, `twincity dev` makes one and prints it."),
    Var("BUS_PREFETCH", "32",
        "Messages a consumer may hold unacknowledged (per consumer, not global); the most it handles at once."),
    Var("BUS_RETRY_DELAYS_MS", "1000,10000,60000",
        "Growing delays before each retry of a failed message; after the last the message is parked."),
    Var("BUS_CONFIRM_TIMEOUT", "10", "Seconds to wait for the broker to confirm a publish before failing."),
    Var("BUS_HEARTBEAT", "30", "AMQP heartbeat in seconds (0 turns heartbeats off)."),
    Var("OUTBOX_POLL_INTERVAL", "2", "Seconds between sweeps for pending outbox events left by other processes."),
    Var("OUTBOX_BATCH", "500", "Most pending events the relay publishes in one confirmed batch."),
    Var("IDEAS_URL", "", "Gateway: base URL of the ideas web service; empty calls it inside this process."),
    Var("MATCHING_URL", "", "Gateway: base URL of the matching web service; empty: inside this process."),
    Var("NOTIFY_URL", "", "Gateway: base URL of the notify web service; empty: inside this process."),
    Var("TWINCITY_RATE_LIMIT", "300/minute",
        "Calls one key (or one address without a key) may make to each /api endpoint (all calls passed on to a "
        "service count as one endpoint); answers carry X-RateLimit-Limit/-Remaining/-Reset, a 429 Retry-After."),
    Var("TWINCITY_SIGNIN_RATE_LIMIT", "10/minute", "Sign-in form posts (e-mail link, coordinator key) per address."),
    Var("TWINCITY_MAX_BODY", "262144", "Largest request body the gateway accepts, in bytes (413 beyond)."),
    Var("MATCHING_EXPIRY_SWEEP", "60", "Seconds between the matching worker's sweeps for expired proposals."),
    Var("MATCHING_SYNC_OVERLAP", "1", "Seconds of read-model changes a matching worker reads again on each sync, "
        "for writes of other workers that land late; raise it if a store write can take longer."),
    Var("SMTP_URL", "", "Notify: smtp://[user:pass@]host:port (smtps:// for TLS); empty sends no e-mail."),
    Var("SMTP_FROM", "Twin City Lab <noreply@twincity.invalid>", "Notify: the sender of e-mails."),
    Var("TWINCITY_PUBLIC_URL", "http://127.0.0.1:8080", "Where people reach the gateway (links in e-mails); "
        "`twincity dev` uses its own address unless this is set."),
    Var("TWINCITY_WEBHOOK_ALLOW", "", "Comma-separated CIDRs webhooks may target although private or loopback."),
    Var("NOTIFY_SECRET", "", "Notify: key of the unsubscribe links (set it in production; empty: one per start)."),
    Var("TWINCITY_SECRET", "",
        "Gateway: key of web sessions and sign-in links; empty: a random one kept in the gateway's store."),
    Var("TWINCITY_SIGNIN_MINUTES", "30", "Gateway: minutes a sign-in link sent by e-mail stays valid (used once)."),
    Var("TWINCITY_TRANSLATE_URL", "", "Ideas: base URL of a LibreTranslate-compatible service (POST /translate) that "
        "translates idea texts on demand (?translate=ru, the pages' translate link); empty: off."),
    Var("TWINCITY_TRANSLATE_KEY", "", "Ideas: the api_key that translation service asks for, if any."),
    Var("NOTIFY_RETRY_BASE", "30", "Notify: seconds before the first retry of a failed delivery (then doubling)."),
    Var("NOTIFY_MAX_ATTEMPTS", "12", "Notify: tries of one e-mail or webhook delivery before it is given up."),
    Var("NOTIFY_SEND_INTERVAL", "1", "Notify: seconds between the worker's passes over pending deliveries."),
    Var("PORT", "8000", "Port of `twincity <service> web` when --bind is not given."),
    Var("WEB_WORKERS", "2", "gunicorn worker processes of a web command."),
    Var("WEB_THREADS", "4", "Threads per gunicorn worker."),
    Var("WORKER_CONCURRENCY", "1", "Consumer threads of a worker command, each with its own broker connection."),
    Var("WORKER_METRICS_PORT", "0", "Port where a worker command serves /metrics for Prometheus (0: none); keep it "
        "off the public network (it has no token)."),
    Var("TWINCITY_METRICS_TOKEN", "", "When set, /metrics of every web process answers only to "
        "`Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: ...}`); empty: open to all."),
    Var("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Var("LOG_FORMAT", "json", "json (one JSON object a line) or text."),
)


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one process."""

    amqp_url: str = "memory://"
    mongo_url: str = "mongomock://"
    db_prefix: str = "twincity"
    exchange: str = "twincity.events"
    namespace: str = ""
    admin_key: str = ""
    memory_store: bool = False
    prefetch: int = 32
    retry_delays_ms: tuple[int, ...] = (1000, 10000, 60000)
    confirm_timeout: float = 10.0
    heartbeat: int = 30
    outbox_poll_interval: float = 2.0
    outbox_batch: int = 500
    service_urls: tuple[tuple[str, str], ...] = ()
    max_body_bytes: int = 262_144
    rate_limit: str = "300/minute"
    signin_rate_limit: str = "10/minute"
    expiry_sweep: float = 60.0
    sync_overlap: float = 1.0
    smtp_url: str = ""
    smtp_from: str = "Twin City Lab <noreply@twincity.invalid>"
    public_url: str = "http://127.0.0.1:8080"
    webhook_allow: tuple[str, ...] = ()
    notify_secret: str = ""
    web_secret: str = ""
    signin_minutes: float = 30.0
    translate_url: str = ""
    translate_key: str = ""
    notify_retry_base: float = 30.0
    notify_max_attempts: int = 12
    notify_send_interval: float = 1.0
    port: int = 8000
    web_workers: int = 2
    web_threads: int = 4
    worker_concurrency: int = 1
    worker_metrics_port: int = 0
    metrics_token: str = ""
    log_level: str = "info"
    log_format: str = "json"

    @property
    def embedded(self) -> bool:
        return self.amqp_url.startswith("memory://")

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}_{service}"

    def service_url(self, service: str) -> str:
        """The base URL the gateway calls a service at; empty means in this process (embedded)."""
        return dict(self.service_urls).get(service, "")

    def replace(self, **changes: object) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            default = next(v.default for v in VARIABLES if v.name == name)
            value = env.get(name, "")
            return value.strip() if value.strip() else default

        return cls(
            amqp_url=_url("AMQP_URL", get("AMQP_URL"), ("amqp", "amqps", "pyamqp", "memory")),
            mongo_url=_url("MONGO_URL", get("MONGO_URL"), ("mongodb", "mongodb+srv", "mongomock")),
            db_prefix=_name("TWINCITY_DB_PREFIX", get("TWINCITY_DB_PREFIX")),
            exchange=_name("TWINCITY_EXCHANGE", get("TWINCITY_EXCHANGE")),
            namespace=_name("TWINCITY_NAMESPACE", get("TWINCITY_NAMESPACE")) if get("TWINCITY_NAMESPACE") else "",
            admin_key=get("TWINCITY_ADMIN_KEY"),
            memory_store=_choice("TWINCITY_MEMORY_STORE", get("TWINCITY_MEMORY_STORE"), ("0", "1")) == "1",
            prefetch=_int("BUS_PREFETCH", get("BUS_PREFETCH"), minimum=1),
            retry_delays_ms=_delays("BUS_RETRY_DELAYS_MS", get("BUS_RETRY_DELAYS_MS")),
            confirm_timeout=_float("BUS_CONFIRM_TIMEOUT", get("BUS_CONFIRM_TIMEOUT"), minimum=0.1),
            heartbeat=_int("BUS_HEARTBEAT", get("BUS_HEARTBEAT")),
            outbox_poll_interval=_float("OUTBOX_POLL_INTERVAL", get("OUTBOX_POLL_INTERVAL"), minimum=0.01),
            outbox_batch=_int("OUTBOX_BATCH", get("OUTBOX_BATCH"), minimum=1),
            service_urls=tuple(
                (service, _url(f"{service.upper()}_URL", get(f"{service.upper()}_URL"), ("http", "https")))
                for service in ("ideas", "matching", "notify")
                if get(f"{service.upper()}_URL")
            ),
            rate_limit=_rate("TWINCITY_RATE_LIMIT", get("TWINCITY_RATE_LIMIT")),
            signin_rate_limit=_rate("TWINCITY_SIGNIN_RATE_LIMIT", get("TWINCITY_SIGNIN_RATE_LIMIT")),
            max_body_bytes=_int("TWINCITY_MAX_BODY", get("TWINCITY_MAX_BODY"), minimum=1024),
            expiry_sweep=_float("MATCHING_EXPIRY_SWEEP", get("MATCHING_EXPIRY_SWEEP"), minimum=0.05),
            sync_overlap=_float("MATCHING_SYNC_OVERLAP", get("MATCHING_SYNC_OVERLAP"), minimum=0.0),
            smtp_url=_url("SMTP_URL", get("SMTP_URL"), ("smtp", "smtps")) if get("SMTP_URL") else "",
            smtp_from=get("SMTP_FROM"),
            public_url=_url("TWINCITY_PUBLIC_URL", get("TWINCITY_PUBLIC_URL"), ("http", "https")).rstrip("/"),
            webhook_allow=_cidrs("TWINCITY_WEBHOOK_ALLOW", get("TWINCITY_WEBHOOK_ALLOW")),
            notify_secret=get("NOTIFY_SECRET"),
            web_secret=get("TWINCITY_SECRET"),
            signin_minutes=_float("TWINCITY_SIGNIN_MINUTES", get("TWINCITY_SIGNIN_MINUTES"), minimum=1),
            translate_url=(_url("TWINCITY_TRANSLATE_URL", get("TWINCITY_TRANSLATE_URL"), ("http", "https")).rstrip("/")
                           if get("TWINCITY_TRANSLATE_URL") else ""),
            translate_key=get("TWINCITY_TRANSLATE_KEY"),
            notify_retry_base=_float("NOTIFY_RETRY_BASE", get("NOTIFY_RETRY_BASE"), minimum=0.01),
            notify_max_attempts=_int("NOTIFY_MAX_ATTEMPTS", get("NOTIFY_MAX_ATTEMPTS"), minimum=1),
            notify_send_interval=_float("NOTIFY_SEND_INTERVAL", get("NOTIFY_SEND_INTERVAL"), minimum=0.01),
            port=_int("PORT", get("PORT"), minimum=1, maximum=65535),
            web_workers=_int("WEB_WORKERS", get("WEB_WORKERS"), minimum=1),
            web_threads=_int("WEB_THREADS", get("WEB_THREADS"), minimum=1),
            worker_concurrency=_int("WORKER_CONCURRENCY", get("WORKER_CONCURRENCY"), minimum=1),
            worker_metrics_port=_int("WORKER_METRICS_PORT", get("WORKER_METRICS_PORT"), maximum=65535),
            metrics_token=get("TWINCITY_METRICS_TOKEN"),
            log_level=_choice("LOG_LEVEL", get("LOG_LEVEL"), ("debug", "info", "warning", "error")),
            log_format=_choice("LOG_FORMAT", get("LOG_FORMAT"), ("json", "text")),
        )
