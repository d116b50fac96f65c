"""Calls from the gateway to the services: pooled HTTP (urllib3) in production, straight into the app when embedded."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3
from werkzeug.test import Client

from services.tenancy import HEADER as CALLER_HEADER
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
    """Keep-alive HTTP(S) to one service through a urllib3 connection pool.

    urllib3 opens a new connection when a pooled one was closed by the service while it idled. The one race that
    check cannot rule out (the service closes an idle socket just as a call goes out on it) is why the services'
    gunicorn keeps idle connections for a minute (`twincity <service> web`), and why an idempotent call that got
    no byte of an answer is sent once more; a POST or PATCH never is: it may have been handled.
    """

    IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
    READ_SIZE = 1 << 20  # a reply is read a MiB at a time: a length the service announces is not allocated at once

    def __init__(self, base_url: str, *, timeout: float = 10.0, pool_size: int = 16) -> None:
        url = urllib3.util.parse_url(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"a service URL is http(s)://host[:port][/prefix], not {base_url!r}")
        self.prefix = (url.path or "").rstrip("/")
        self.pool = urllib3.connectionpool.connection_from_url(
            f"{url.scheme}://{url.netloc}", maxsize=pool_size, block=False, retries=False,
            timeout=urllib3.Timeout(connect=min(2.0, timeout), read=timeout))

    def request(self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]) -> Reply:
        # A space, a control character or a non-ASCII one in the target is sent percent-encoded (UTF-8): the
        # request line stays one line of three parts.
        target = _UNSAFE_IN_TARGET.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")),
                                       f"{self.prefix}{path}")
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\0") or not name:
                raise UnsendableHeader(f"the header {name!r} can not be passed on: it contains a line break")
        try:
            return self._send(method, target, body, headers)
        except urllib3.exceptions.ProtocolError as exc:
            if method not in self.IDEMPOTENT or not _unanswered(exc):
                raise
            return self._send(method, target, body, headers)  # the service closed the socket as the call went out

    def _send(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Reply:
        response = self.pool.urlopen(method, target, body=body, headers=dict(headers), redirect=False,
                                     preload_content=False, assert_same_host=False, retries=False)
        try:
            data = b"".join(response.stream(self.READ_SIZE, decode_content=False))
        finally:
            response.release_conn()
        return Reply(response.status, dict(response.headers), data)

    def close(self) -> None:
        """Close the pooled connections (a call after this opens a new one)."""
        self.pool.close()


def _unanswered(exc: urllib3.exceptions.ProtocolError) -> bool:
    """The connection ended before the first byte of an answer (not in the middle of one)."""
    cause = exc.args[1] if len(exc.args) > 1 else exc.__cause__
    return isinstance(cause, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))


_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]+")


class UnsendableHeader(ValueError):
    """A header value the request line format can not carry (a line break or NUL in it)."""


def transport_for(base_url: str) -> Transport:
    return HttpTransport(base_url)


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
        except UnsendableHeader as exc:
            raise Problem(400, "Bad Request", str(exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._failed(method, exc) from exc

    def _failed(self, method: str, exc: BaseException) -> Problem:
        """503 when the call never reached the service (send it again), 504 when it waited in vain. A change that
        may have reached it says so: retrying it blindly could make it twice."""
        # No connection: the call never reached the service, sending it again cannot make it twice.
        unsent = isinstance(exc, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
        timed_out = not unsent and isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError))
        if timed_out:
            problem = Problem(504, "Gateway Timeout", f"the {self.name} service did not answer in time",
                              service=self.name)
        else:
            problem = Problem(503, "Service Unavailable", f"the {self.name} service does not answer right now",
                              service=self.name)
        if unsent or method in HttpTransport.IDEMPOTENT:
            problem.detail += "; try again shortly"
            problem.headers["Retry-After"] = "1"
        else:
            problem.detail += ("; the change may have been made: read the resource (GET) before you send it again, "
                               "or it may be made twice")
        return problem


class InvitationMailer:
    """usecases.InvitationMail through the notify service, asked by the gateway itself (an admin caller)."""

    def __init__(self, notify: ServiceClient, gateway_caller: Callable[[], Any]) -> None:
        self.notify = notify
        self.gateway_caller = gateway_caller

    def send(self, invitation: Mapping[str, Any], link: str, days: int, template: str = "invitation") -> None:
        body = {"invitation_id": invitation["_id"], "city": invitation["city"], "to": invitation["email"],
                "name": invitation.get("name", ""), "language": invitation["language"], "link": link, "days": days,
                "template": template}
        reply = self.notify.request("POST", "/invitation-mails", body=json.dumps(body).encode(), headers={
            CALLER_HEADER: self.gateway_caller().encode(), "Content-Type": "application/json"})
        if reply.status >= 400:
            raise Problem(503, "Service Unavailable", "the invitation could not be handed to the notify service; "
                                                      "try again shortly")


class ServiceRegistrar:
    """usecases.Registrar through the ideas service: a participant made in the name of their city."""

    def __init__(self, ideas: ServiceClient, directory: Any) -> None:
        self.ideas = ideas
        self.directory = directory

    def with_email(self, email: str) -> list[dict[str, Any]]:
        """The participants with this address, of any city (usecases.People, as the sign-in asks)."""
        caller = self.directory.caller(city=None, scopes=("admin", "read", "write"), key_id="web:gateway",
                                       default_themes=[])
        reply = self.ideas.request("GET", f"/internal/participants?{urlencode({'email': email})}",
                                   body=None, headers={CALLER_HEADER: caller.encode()})
        if reply.status >= 400:  # nothing was done yet (the invitation is made after this): it may be sent again
            refused = Problem(503, "Service Unavailable", "the ideas service could not say who has this address; "
                                                          "nothing was done")
            refused.headers["Retry-After"] = "5"
            raise refused
        return list(json.loads(reply.body).get("items", []))

    def register(self, city: str, data: Mapping[str, Any]) -> dict[str, Any]:
        caller = self.directory.caller(city=city, scopes=("read", "write"), key_id="web:sign-up", default_themes=[])
        reply = self.ideas.request("POST", "/participants", body=json.dumps(dict(data)).encode(), headers={
            CALLER_HEADER: caller.encode(), "Content-Type": "application/json"})
        answer = json.loads(reply.body) if reply.body else {}
        if reply.status >= 400:
            raise Problem(reply.status, answer.get("title", "Refused"), answer.get("detail", ""),
                          **({"errors": answer["errors"]} if answer.get("errors") else {}))
        return answer
