"""Shared fixtures: settings isolated per test, a real RabbitMQ (or memory://), consumers that clean up."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import kombu
import pytest

from services import bus, store
from services.bus import Consumer, Handler
from services.config import Settings
from tests.private_rabbitmq import PrivateRabbitMQ, Unavailable

AMQP_TEST_URL = os.environ.get("AMQP_TEST_URL") or os.environ.get("AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672//"
if AMQP_TEST_URL.startswith("memory://"):
    AMQP_TEST_URL = "amqp://guest:guest@127.0.0.1:5672//"


T = TypeVar("T")

def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.01,
             message: str = "condition") -> T:
    """Poll until `condition()` is truthy and give its value (the e2e style: wait for an outcome, never sleep
    blindly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The real broker's URL; fails with a clear message when it does not answer."""
    try:
        with kombu.Connection(AMQP_TEST_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        pytest.fail(f"RabbitMQ does not answer on {AMQP_TEST_URL} ({exc!r}); run the tests with scripts/test, "
                    "which starts or installs it")
    return AMQP_TEST_URL


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of the tests' own (tests/private_rabbitmq.py), for tests that stop and start a broker:
    the shared node on AMQP_URL is never restarted. Started once per session, on first use."""
    try:
        node = PrivateRabbitMQ().start()
    except Unavailable as exc:
        pytest.skip(f"a broker restart needs a private RabbitMQ node: {exc}")
    yield node
    node.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["amqp", "memory"])
def transport(request: pytest.FixtureRequest) -> str:
    """Runs a test against the real RabbitMQ and again as its in-memory twin."""
    if request.param == "amqp":
        return request.getfixturevalue("rabbitmq")
    return "memory://"


def make_settings(amqp_url: str, **overrides: object) -> Settings:
    base = Settings(
        amqp_url=amqp_url,
        mongo_url=f"mongomock://{_unique('test')}",
        exchange=_unique("test.events"),
        namespace=_unique("test"),
        retry_delays_ms=(50, 100),
        confirm_timeout=5.0,
        heartbeat=10,
        outbox_poll_interval=0.05,
    )
    return base.replace(**overrides)


@pytest.fixture
def settings(transport: str) -> Iterator[Settings]:
    s = make_settings(transport)
    yield s
    store.forget(s.mongo_url)


class Consumers:
    """Starts consumers in threads and removes everything they declared afterwards."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: list[tuple[Consumer, threading.Event, threading.Thread]] = []

    def start(self, service: str, handlers: Mapping[str, Sequence[Handler]], count: int = 1,
              settings: Settings | None = None, **options: Any) -> list[Consumer]:
        """`options`: more of Consumer's fields (optional, wanted, ...)."""
        consumers = []
        for i in range(count):
            consumer = Consumer(settings or self.settings, service, handlers, name=f"{service}-{i}", **options)
            stop = threading.Event()
            thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True, name=consumer.name)
            thread.start()
            wait_for(consumer.ready.is_set, 15, message=f"consumer {consumer.name} ready")
            self.started.append((consumer, stop, thread))
            consumers.append(consumer)
        return consumers

    def stop(self, consumer: Consumer) -> None:
        self.stop_async(consumer)
        self.join(consumer)

    def stop_async(self, consumer: Consumer) -> None:
        for c, stop, _ in self.started:
            if c is consumer:
                stop.set()

    def join(self, consumer: Consumer) -> None:
        for c, _, thread in self.started:
            if c is consumer:
                thread.join(10)

    def close(self) -> None:
        for _, stop, _ in self.started:
            stop.set()
        for _, _, thread in self.started:
            thread.join(10)
        topologies = {c.topology.service: c.topology for c, _, _ in self.started}
        if topologies:
            bus.delete_topology(self.settings, topologies.values(), exchange=True)


@pytest.fixture
def consumers(settings: Settings) -> Iterator[Consumers]:
    pool = Consumers(settings)
    yield pool
    pool.close()


@pytest.fixture
def rabbit_settings(rabbitmq: str) -> Iterator[Settings]:
    """Settings on the real RabbitMQ only (for failure tests that have no in-memory twin)."""
    s = make_settings(rabbitmq)
    yield s
    store.forget(s.mongo_url)


@pytest.fixture
def rabbit_consumers(rabbit_settings: Settings) -> Iterator[Consumers]:
    pool = Consumers(rabbit_settings)
    yield pool
    pool.close()


def unique_service() -> str:
    return _unique("svc")


def queue_depth(settings: Settings, queue: str) -> int:
    with bus.connection(settings) as conn:
        return conn.channel().queue_declare(queue=queue, passive=True).message_count


def queue_messages(settings: Settings, queue: str, limit: int = 1000) -> list[kombu.Message]:
    """Take (and ack) what is waiting in a queue; for looking into parking queues."""
    taken = []
    with bus.connection(settings) as conn:
        bound = kombu.Queue(queue, no_declare=True)(conn.channel())
        while len(taken) < limit:
            message = bound.get(no_ack=False)
            if message is None:
                break
            message.ack()
            taken.append(message)
    return taken

def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_ok(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether the process (still alive, else its log is the failure) answers 200 at `url`."""
    assert process.poll() is None, f"exited early with {process.returncode}:\n{log.read_text()}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
