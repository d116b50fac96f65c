"""Calls from the gateway to the services: pooled HTTP in production, straight into the app when embedded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from werkzeug.test import Client

from services.web import Problem


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport:
    def request(self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]) -> Reply:
        raise NotImplementedError


class HttpTransport(Transport):
    """One keep-alive connection pool per service (urllib3's pool itself: a PoolManager would parse the URL
    and look the pool up again on every call); no retries of non-idempotent calls."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, pool_size: int = 16) -> None:
        self.base_url = base_url.rstrip("/")
        url = urllib3.util.parse_url(self.base_url)
        self.prefix = (url.path or "").rstrip("/")
        self.pool = urllib3.connectionpool.connection_from_url(
            self.base_url, maxsize=pool_size, block=False, retries=False,
            timeout=urllib3.Timeout(connect=2.0, read=timeout))

    def request(self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]) -> Reply:
        response = self.pool.urlopen(method, self.prefix + path, body=body, headers=dict(headers),
                                     redirect=False, preload_content=True, assert_same_host=False)
        return Reply(response.status, dict(response.headers), response.data)


class WsgiTransport(Transport):
    """Calls a Flask app of this process directly (the embedded mode): same code path, no socket."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]) -> Reply:
        client = Client(self.app, use_cookies=False)
        path, _, query = path.partition("?")
        response = client.open(path, method=method, data=body, headers=dict(headers), query_string=query)
        try:
            return Reply(response.status_code, dict(response.headers), response.get_data())
        finally:
            response.close()


class ServiceClient:
    def __init__(self, name: str, transport: Transport) -> None:
        self.name = name
        self.transport = transport

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        try:
            return self.transport.request(method, path, body=body, headers=headers or {})
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Problem(503, "Service Unavailable",
                          f"the {self.name} service does not answer right now; try again shortly",
                          service=self.name) from exc
