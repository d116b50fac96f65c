"""The embedded mode: the gateway, every service and every worker in one process (memory:// + mongomock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

import gateway.bootstrap
import ideas.bootstrap
import matching.bootstrap
import notify.bootstrap
from services.config import Settings
from services.runtime import Runtime

# Each service's bootstrap: its wiring, in this process.
BOOTSTRAPS: dict[str, Callable[[Settings], Any]] = {
    "ideas": ideas.bootstrap.bootstrap, "matching": matching.bootstrap.bootstrap, "notify": notify.bootstrap.bootstrap,
}


@dataclass
class EmbeddedPlatform:
    """Everything in this process; `start()` runs the workers, `gateway` is the public WSGI app."""


    settings: Settings
    services: dict[str, Any] = field(default_factory=dict)  # each service's bootstrap: IdeasService, ...
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    apps: dict[str, Flask] = field(default_factory=dict)
    gateway: Flask | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> EmbeddedPlatform:
        # `twincity dev` runs this on memory://; tests also run it against a real RabbitMQ.
        platform = cls(settings)
        for name, bootstrap in BOOTSTRAPS.items():
            service = bootstrap(settings)
            platform.services[name] = service
            platform.runtimes[name] = service.runtime
            platform.apps[name] = service.runtime.create_app(relay=False)  # the worker side runs the relay
        platform.gateway = gateway.bootstrap.create_app(settings, service_apps=platform.apps)
        return platform

    def start(self, ready_timeout: float = 15.0) -> EmbeddedPlatform:
        for runtime in self.runtimes.values():
            self._threads.extend(runtime.start_worker(self._stop))
        deadline = time.monotonic() + ready_timeout
        while not self.ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the workers did not start consuming within {ready_timeout}s")
            time.sleep(0.01)
        return self

    def ready(self) -> bool:
        """Every consumer has declared and bound its queue, so no event published from now is lost."""
        return all(t.is_alive() for t in self._threads) and all(rt.consuming() for rt in self.runtimes.values())

    def runtime(self, name: str) -> Runtime:
        return self.runtimes[name]

    def service(self, name: str) -> Any:
        """A service's wiring (ideas.bootstrap.IdeasService, notify.bootstrap.NotifyService...)."""
        return self.services[name]

    def settled(self) -> bool:
        """No event waits in any outbox (what the tests wait for before counting)."""
        return all(rt.relay.backlog() == 0 for rt in self.runtimes.values()) and self.gateway_relay_idle()

    def published(self) -> int:
        """Events the relays of this process have published (each confirmed by the broker)."""
        assert self.gateway is not None
        relays = [rt.relay for rt in self.runtimes.values()] + [self.gateway.extensions["twincity.runtime"].relay]
        return sum(relay.published_total for relay in relays)

    def gateway_relay_idle(self) -> bool:
        assert self.gateway is not None
        return self.gateway.extensions["twincity.runtime"].relay.backlog() == 0

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for runtime in self.runtimes.values():
            runtime.relay.stop()
        if self.gateway is not None:
            self.gateway.extensions["twincity.runtime"].relay.stop()
