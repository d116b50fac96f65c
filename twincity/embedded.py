"""The embedded mode: the gateway, every service and every worker in one process (memory:// + mongomock)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from flask import Flask

import gateway.app
import ideas.app
import matching.app
import notify.app
from services.config import Settings
from services.runtime import Runtime, ServiceSpec

SERVICE_SPECS: tuple[ServiceSpec, ...] = (ideas.app.SPEC, matching.app.SPEC, notify.app.SPEC)


@dataclass
class EmbeddedPlatform:
    """Everything in this process; `start()` runs the workers, `gateway` is the public WSGI app."""

    settings: Settings
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    apps: dict[str, Flask] = field(default_factory=dict)
    gateway: Flask | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> EmbeddedPlatform:
        if not settings.embedded:
            raise ValueError("the embedded platform runs on memory:// only; use the service commands for AMQP")
        platform = cls(settings)
        for spec in SERVICE_SPECS:
            runtime = Runtime(spec, settings)
            platform.runtimes[spec.name] = runtime
            platform.apps[spec.name] = runtime.create_app(relay=False)  # the worker side runs the relay
        platform.gateway = gateway.app.create_app(settings)
        return platform

    def start(self, ready_timeout: float = 10.0) -> EmbeddedPlatform:
        for runtime in self.runtimes.values():
            self._threads.extend(runtime.start_worker(self._stop))
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and not self.ready():
            time.sleep(0.01)
        return self

    def ready(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for runtime in self.runtimes.values():
            runtime.relay.stop()
