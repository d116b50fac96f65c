"""Calls from the gateway to the services: pooled HTTP in production, straight into the app when embedded."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
import urllib.parse
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
    """Keep-alive HTTP/1.1 to one service over a few pooled sockets, written for the services' gunicorn.

    The gateway passes every API call on, so this is on the path of each one. urllib3 took 220 µs of CPU a
    call here, most of it in http.client's header parsing (the e-mail parser); this takes ~40 µs: it writes
    the request in one send and reads the status line, the headers and a Content-Length or chunked body
    itself. A pooled socket is dropped when the service has closed it, or when it has been idle long enough that
    the service may be closing it (gunicorn closes idle ones after 2 s). The one call sent twice: an idempotent
    one that got no byte of answer on a reused socket (the service closed or reset it as the call went out)
    goes out once more, on a new socket; a POST or PATCH never. https URLs go through urllib3 (UrllibTransport).
    """

    IDLE = 1.0  # seconds a pooled socket may idle before it is dropped instead of reused (gunicorn: 2 s)
    LIMIT = 65536  # longest status line, header line or chunk-size line accepted
    IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

    def __init__(self, base_url: str, *, timeout: float = 10.0, pool_size: int = 16) -> None:
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"HttpTransport takes http://host[:port][/prefix], not {base_url!r}")
        self.address = (url.hostname, url.port or 80)
        self.prefix = url.path.rstrip("/")
        self.host = (url.netloc.rsplit("@", 1)[-1]).encode("ascii")
        self.timeout, self.pool_size = timeout, pool_size
        self._idle: list[tuple[float, socket.socket, Any]] = []  # (since, socket, its reader), latest last
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]) -> Reply:
        head = self._head(method, path, body, headers)
        retried = False
        while True:
            reused, (sock, reader) = self._connection(fresh=retried)
            try:
                try:
                    sock.sendall(head + body if body else head)
                except OSError as exc:  # the service had closed it: the call did not reach it
                    raise _NotSentNoAnswer(f"the connection was closed before the call was sent ({exc!r})") from exc
                status, reply_headers, keep = self._read_head(reader)
                while 100 <= status < 200 and status != 101:  # interim replies (100 Continue): the real one follows
                    status, reply_headers, keep = self._read_head(reader)
                if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                    data = b""
                    # a length or chunks announced where no body may be: not trusted to be in step afterwards
                    keep = keep and status != 101 and not ({"content-length", "transfer-encoding"} & set(reply_headers))
                elif "chunked" in reply_headers.get("transfer-encoding", "").lower():
                    data = self._read_chunked(reader)
                elif "content-length" in reply_headers:
                    data = self._read_exactly(reader, _length(reply_headers["content-length"]))
                else:  # the body ends when the service closes
                    data, keep = reader.read(), False
            except _NoAnswer:
                self._close(sock, reader)
                if reused and not retried and method in self.IDEMPOTENT:
                    retried = True  # the service closed the pooled socket as the call went out: once more, afresh
                    continue
                raise
            except BaseException:
                self._close(sock, reader)
                raise
            if keep:
                self._release(sock, reader)
            else:
                self._close(sock, reader)
            return Reply(status, reply_headers.originals, data)

    # -- the wire ------------------------------------------------------------------------------------------

    def _head(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        # A space, a control character or a non-ASCII one in the target is sent percent-encoded (UTF-8), as
        # urllib3 does: the request line stays one line of three parts.
        target = _UNSAFE_IN_TARGET.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")),
                                       f"{self.prefix}{path}")
        lines = [f"{method} {target} HTTP/1.1".encode("ascii"), b"Host: " + self.host]
        for name, value in headers.items():
            if name.lower() in ("host", "content-length", "connection", "transfer-encoding"):
                continue
            if any(c in name or c in value for c in "\r\n\0") or not name:
                raise UnsendableHeader(f"the header {name!r} can not be passed on: it contains a line break")
            lines.append(f"{name}: {value}".encode("latin-1"))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(body or b""))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _read_line(self, reader: Any) -> bytes:
        line = reader.readline(self.LIMIT + 1)
        if len(line) > self.LIMIT:
            raise _BadReply("a line of the reply is too long")
        return line

    def _read_head(self, reader: Any) -> tuple[int, _Headers, bool]:
        try:
            line = self._read_line(reader)
        except ConnectionResetError as exc:
            raise _NoAnswer("the service reset the connection without answering") from exc
        if not line:
            raise _NoAnswer("the service closed the connection without answering")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _BadReply(f"not an HTTP/1.x status line: {line[:80]!r}")
        headers = _Headers()
        lines = 0
        while True:
            line = self._read_line(reader)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise _BadReply("the reply ended inside its headers")
            lines += 1
            if lines > 200:
                raise _BadReply("too many header lines in the reply")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise _BadReply(f"not a header line: {line[:80]!r}")
            headers.add(name.strip(), value.strip())
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (parts[0] != b"HTTP/1.0" or "keep-alive" in connection)
        return int(parts[1]), headers, keep

    def _read_exactly(self, reader: Any, length: int) -> bytes:
        """`length` bytes, read a MiB at a time: a length the service announces is not allocated before it comes."""
        parts, remaining = [], length
        while remaining:
            part = reader.read(min(remaining, 1 << 20))
            if not part:
                raise _BadReply(f"the reply ended after {length - remaining} of {length} bytes")
            parts.append(part)
            remaining -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_chunked(self, reader: Any) -> bytes:
        chunks = []
        while True:
            line = self._read_line(reader)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadReply(f"not a chunk size: {line[:80]!r}") from None
            if size == 0:
                break
            chunks.append(self._read_exactly(reader, size))
            if self._read_line(reader) not in (b"\r\n", b"\n"):
                raise _BadReply("a chunk does not end where its size says")
        while self._read_line(reader) not in (b"\r\n", b"\n", b""):  # trailers: none used, skipped
            pass
        return b"".join(chunks)

    # -- the pool ------------------------------------------------------------------------------------------

    def _connection(self, *, fresh: bool = False) -> tuple[bool, tuple[socket.socket, Any]]:
        """(reused, (socket, reader)): the latest pooled socket still open, else (or when `fresh`) a new one."""
        now = time.monotonic()
        while not fresh:
            with self._lock:
                if not self._idle:
                    break
                since, sock, reader = self._idle.pop()
            if now - since < self.IDLE and not _readable(sock):  # readable while idle: closed (or garbage)
                return True, (sock, reader)
            self._close(sock, reader)
        try:
            sock = socket.create_connection(self.address, timeout=min(2.0, self.timeout))
        except OSError as exc:
            raise NotSent(f"no connection to {self.address[0]}:{self.address[1]} ({exc!r})") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        return False, (sock, sock.makefile("rb"))

    def _release(self, sock: socket.socket, reader: Any) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append((time.monotonic(), sock, reader))
                return
        self._close(sock, reader)

    def close(self) -> None:
        """Close the pooled sockets (a call after this opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for _since, sock, reader in idle:
            self._close(sock, reader)

    @staticmethod
    def _close(sock: socket.socket, reader: Any) -> None:
        with contextlib.suppress(OSError):
            reader.close()
        with contextlib.suppress(OSError):
            sock.close()


class _NoAnswer(ConnectionError):
    """The connection closed before the first byte of the reply."""


class NotSent(ConnectionError):
    """The call never reached the service (no connection): sending it again cannot make it twice."""


class _NotSentNoAnswer(_NoAnswer, NotSent):
    """A pooled socket the service had closed: the call did not go out on it."""


class _BadReply(ConnectionError):
    """The service's reply is not HTTP as this client reads it (the call counts as failed, the socket is closed)."""


class _Headers(dict):
    """The reply's headers by lower-case name (repeated ones joined with ", "); `originals` as the service spelt
    them, which is what Reply carries."""

    def __init__(self) -> None:
        super().__init__()
        self.originals: dict[str, str] = {}
        self._spelt: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        if key in self:
            value = f"{self[key]}, {value}"
            name = self._spelt[key]
        self[key] = value
        self._spelt[key] = name
        self.originals[name] = value


_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]+")


class UnsendableHeader(ValueError):
    """A header value the request line format can not carry (a line break or NUL in it)."""


def _length(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise _BadReply(f"not a Content-Length: {value[:40]!r}")
    return int(value)


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class UrllibTransport(Transport):
    """One keep-alive urllib3 pool per service (for https service URLs); no retries of non-idempotent calls."""

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


def transport_for(base_url: str) -> Transport:
    return UrllibTransport(base_url) if base_url.lower().startswith("https:") else HttpTransport(base_url)


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
        unsent = isinstance(exc, (NotSent, urllib3.exceptions.NewConnectionError,
                                  urllib3.exceptions.ConnectTimeoutError))
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
