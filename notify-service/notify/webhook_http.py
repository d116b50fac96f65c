"""The HTTP call of one webhook delivery: to addresses checked beforehand, within a deadline, reading the status only.

A receiver decides how long a call takes and how much it answers, so the call is bounded on both: a deadline for the
whole of it (a receiver that drips one header line a second is cut off at `Limits.total`, however slowly it keeps
the connection alive), and nothing of the answer is read beyond its status line and headers (which http.client
caps in length and number). The host name is not looked up again here: the caller resolved it once and checked every
address (DNS could answer differently between a check and a second lookup); the request still names the host (Host
header) and HTTPS checks the certificate against it, with its name sent as SNI.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Limits:
    connect: float = 3.0  # seconds to connect to one address
    read: float = 5.0  # seconds the receiver may stay silent
    total: float = 10.0  # seconds for the whole call, every address tried included


class DeadlineExceeded(TimeoutError):
    """The receiver did not answer within Limits.total."""


def post(url: str, addresses: Sequence[str], body: bytes, headers: Mapping[str, str], limits: Limits = Limits(),
         ca_certs: str | None = None) -> int:
    """POST `body` to `url` at the first of `addresses` that takes the connection; the answer's status code.

    Raises OSError (DeadlineExceeded among them) or http.client.HTTPException when no answer came. `ca_certs`: other
    certificate authorities than the system's (tests)."""
    parts = urlsplit(url)
    host, https = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    deadline = time.monotonic() + limits.total
    refused: OSError = ConnectionError(f"{host} has no address to connect to")
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no answer within {limits.total:g} s")
        try:
            sock = socket.create_connection((address, port), timeout=min(limits.connect, left))
        except OSError as exc:  # this address does not take it (no route, refused): the next one may
            refused = exc
            continue
        # Connected: whatever happens now is the delivery's outcome (the receiver may have the call).
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        name = f"[{host}]" if ":" in host else host
        sent = {**headers, "Host": name if port == (443 if https else 80) else f"{name}:{port}"}
        return _post_on(sock, host, port, https, target, body, sent, deadline, limits, ca_certs)
    raise refused


def _post_on(sock: socket.socket, host: str, port: int, https: bool, target: str, body: bytes,
             headers: Mapping[str, str], deadline: float, limits: Limits, ca_certs: str | None) -> int:
    current = [sock]  # the socket to cut at the deadline (TLS wraps it into another object)
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        with contextlib.suppress(OSError):
            current[0].shutdown(socket.SHUT_RDWR)  # a blocked send or receive returns at once

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        sock.settimeout(limits.read)
        if https:
            context = ssl.create_default_context(cafile=ca_certs)
            current[0] = context.wrap_socket(sock, server_hostname=host)
        connection = http.client.HTTPConnection(host, port, timeout=limits.read)
        connection.sock = current[0]
        connection.request("POST", target, body=body, headers=dict(headers))
        status = connection.getresponse().status
        if cut.is_set():  # cut off in the headers: http.client reads the end of the stream as their end
            raise DeadlineExceeded(f"no answer within {limits.total:g} s")
        return status
    except (OSError, http.client.HTTPException) as exc:
        if cut.is_set():
            raise DeadlineExceeded(f"no answer within {limits.total:g} s") from exc
        raise
    finally:
        watchdog.cancel()
        with contextlib.suppress(OSError):
            current[0].close()
