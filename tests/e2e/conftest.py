"""The whole platform in this process (gateway, services, workers), on memory:// or the real RabbitMQ."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from services import bus, store
from services.bus import Consumer
from services.config import Settings
from services.contract import Event, known_types
from tests.conftest import free_port, make_settings, wait_for
from twincity.embedded import EmbeddedPlatform

ADMIN = "tcl_e2e-admin-key-0123456789"


class Observer:
    """A consumer bound to every event type: the test's view of what the platform published."""

    def __init__(self, settings: Settings) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.consumer = Consumer(settings, "observer", {t: [self._record] for t in known_types()})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.consumer.run, args=(self.stop,), daemon=True)
        self.thread.start()
        wait_for(self.consumer.ready.is_set, 15, message="the observer to consume")

    def _record(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, event_type: str, **payload: Any) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.type == event_type
                    and all(e.payload.get(k) == v for k, v in payload.items())]

    def types(self) -> Counter[str]:
        with self.lock:
            return Counter(e.type for e in self.events)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


class Api:
    """The public API as a client sees it (werkzeug client on the gateway's WSGI app)."""

    def __init__(self, platform: EmbeddedPlatform, observer: Observer) -> None:
        self.platform = platform
        self.observer = observer
        self.client = Client(platform.gateway, use_cookies=False)

    def call(self, method: str, path: str, key: str | None = ADMIN, body: Any = None, *,
             raw: bytes | None = None, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> Any:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        response = self.client.open(f"/api/v1{path}", method=method, data=data, headers=all_headers,
                                    content_type=content_type if data is not None else None)
        response.json_body = json.loads(response.get_data()) if response.get_data() else None
        return response

    def ok(self, method: str, path: str, key: str | None = ADMIN, body: Any = None) -> Any:
        response = self.call(method, path, key, body)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.json_body}"
        return response.json_body

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until every outbox is empty and the observer has taken everything from its queue."""
        wait_for(self.platform.settled, timeout, message="the outboxes to drain")
        # The observer is bound to every event type: it has each published event at least once.
        wait_for(lambda: len(self.observer.events) >= self.platform.published(), timeout,
                 message="the observer to receive every published event")
        seen = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count = len(self.observer.events)
            if count == seen:
                return
            seen = count
            time.sleep(0.15 if not self.platform.settings.embedded else 0.05)

    # The lab most tests start from.
    def lab(self) -> dict[str, str]:
        for key, name, country, language in (("karlsruhe", "Karlsruhe", "DE", "de"),
                                             ("krasnodar", "Краснодар", "RU", "ru"),
                                             ("nancy", "Nancy", "FR", "fr"),
                                             ("dijon", "Dijon", "FR", "fr")):
            self.ok("POST", "/cities", body={"key": key, "name": name, "country": country, "language": language})
        self.ok("POST", "/partnerships", body={"cities": ["karlsruhe", "krasnodar"], "name": "Karlsruhe–Krasnodar",
                                               "themes": [{"key": "twin-sports", "labels": {"de": "Sport",
                                                                                            "ru": "Спорт"}}]})
        self.ok("POST", "/partnerships", body={"cities": ["karlsruhe", "nancy"], "name": "Karlsruhe–Nancy"})
        self.ok("POST", "/partnerships", body={"cities": ["dijon", "nancy"], "name": "Dijon–Nancy"})
        keys = {}
        for city in ("karlsruhe", "krasnodar", "nancy", "dijon"):
            keys[city] = self.ok("POST", "/api-keys", body={"city": city, "scopes": ["read", "write"]})["key"]
        keys["karlsruhe-read"] = self.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"]})["key"]
        return keys


@contextmanager
def running_platform(url: str, **overrides: Any) -> Iterator[Api]:
    # Tests poll the API every 10 ms while they wait: the rate limit stays out of the way unless a test sets it.
    overrides.setdefault("rate_limit", "1000000/minute")
    overrides.setdefault("signin_rate_limit", "1000000/minute")
    settings = make_settings(url, admin_key=ADMIN, retry_delays_ms=(100, 200, 400, 800), expiry_sweep=0.2,
                             notify_send_interval=0.05, **overrides)
    platform = EmbeddedPlatform.build(settings).start()
    observer = Observer(settings)
    try:
        yield Api(platform, observer)
    finally:
        observer.close()
        platform.stop()
        topologies = [Consumer(settings, name, {}).topology for name in (*platform.runtimes, "observer")]
        bus.delete_topology(settings, topologies, exchange=True)
        store.forget(settings.mongo_url)


def transport_url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else request.getfixturevalue("rabbitmq")


@pytest.fixture(params=["memory", "amqp"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    with running_platform(transport_url(request)) as running:
        yield running


# --- real peers of the notify service: an SMTP server process, webhook receivers ------------------------

class SmtpServer:
    """A real SMTP server process (aiosmtpd) that files every mail into a Maildir."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
                                      "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(answers, 15, 0.05, message="the SMTP server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def mails(self) -> list[email.message.EmailMessage]:
        if not self.maildir.exists():
            return []
        box = mailbox.Maildir(self.maildir, factory=lambda f: email.message_from_binary_file(
            f, policy=email.policy.default), create=False)
        return sorted(box, key=lambda m: m["Date"] or "")

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.mails() if m["To"] == address]


class Receiver:
    """A webhook receiver on loopback; answers `status` (after `delay` seconds) and keeps what it got."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay)
                receiver.calls.append({"headers": dict(self.headers), "body": body, "path": self.path})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/twincity"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path / "maildir")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(params=["memory", "amqp"])
def napi(request: pytest.FixtureRequest, smtp: SmtpServer) -> Iterator[Api]:
    with running_platform(transport_url(request), smtp_url=smtp.url, webhook_allow=("127.0.0.0/8",),
                          notify_retry_base=0.2, public_url="http://lab.example") as running:
        yield running
