"""Where webhooks may go: only public internet addresses, checked once per delivery and connected to as checked."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from notify import sender, webhook_http
from notify.domain import UnsafeTarget, check_addresses

REFUSED = {
    "127.0.0.1": "loopback", "::1": "loopback", "10.1.2.3": "private", "192.168.0.10": "private",
    "172.16.0.1": "private", "169.254.169.254": "link-local", "fe80::1": "link-local", "fd00::1": "private",
    "100.64.0.1": "private or special-purpose",  # shared address space (RFC 6598): some clouds' metadata
    "198.18.0.1": "private or special-purpose",  # benchmarking (RFC 2544)
    "192.0.0.8": "private or special-purpose", "0.0.0.0": "reserved", "240.0.0.1": "reserved",
    "224.0.0.251": "multicast", "ff02::1": "multicast",
    "2002:7f00:1::": "stands for 127.0.0.1",  # 6to4 of loopback
    "2002:a9fe:a9fe::1": "stands for 169.254.169.254",  # 6to4 of the metadata address
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "stands for 127.0.0.1",  # Teredo, client 127.0.0.1
    "64:ff9b::7f00:1": "stands for 127.0.0.1",  # NAT64 of loopback
    "64:ff9b::808:808": "NAT64",  # NAT64 at all: a translator is no place to send to
    "::ffff:10.0.0.1": "stands for 10.0.0.1",  # IPv4-mapped
    "::127.0.0.1": "stands for 127.0.0.1",  # the old IPv4-compatible form
    "fec0::1": "private or special-purpose",  # site-local (deprecated)
    "3fff::1": "private or special-purpose",  # documentation (RFC 9637)
}
ACCEPTED = ["8.8.8.8", "93.184.215.14", "2a00:1450:4001:80b::200e", "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7"]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_a_webhook_never_goes_where_the_public_internet_does_not_reach(address: str):
    with pytest.raises(UnsafeTarget) as refused:
        check_addresses([address], [])
    assert REFUSED[address] in str(refused.value) and "TWINCITY_WEBHOOK_ALLOW" in str(refused.value)


@pytest.mark.parametrize("address", ACCEPTED)
def test_public_addresses_and_tunnels_to_public_ones_are_fine(address: str):
    check_addresses([address], [])


def test_one_bad_address_among_good_ones_is_enough_to_refuse():
    with pytest.raises(UnsafeTarget):
        check_addresses(["8.8.8.8", "127.0.0.1"], [])


def test_an_operator_allows_a_network_also_in_its_ipv6_forms():
    check_addresses(["10.1.2.3", "::ffff:10.1.2.3", "2002:a01:203::1"], ["10.0.0.0/8"])
    with pytest.raises(UnsafeTarget):
        check_addresses(["10.1.2.3"], ["10.9.0.0/16"])


# --- resolved once, connected to as checked ---------------------------------------------------------------

class Recorder(BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append({"host": self.headers["Host"], "path": self.path, "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def https_receiver() -> Iterator[tuple[int, str, list[dict[str, Any]]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for hooks.example.org only, from a CA of the test's own."""
    ca = trustme.CA()
    cert = ca.issue_cert("hooks.example.org")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    seen: list[str] = []
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    calls: list[dict[str, Any]] = []
    handler = type("Handler", (Recorder,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with ca.cert_pem.tempfile() as ca_file:
        yield server.server_port, ca_file, calls, seen  # type: ignore[misc]
    server.shutdown()
    server.server_close()


def test_https_goes_to_the_checked_address_with_the_host_name_and_its_certificate(https_receiver: Any):
    port, ca_file, calls, sni = https_receiver
    status = webhook_http.post(f"https://hooks.example.org:{port}/in?x=1", ["127.0.0.1"], b'{"a":1}',
                               {"Content-Type": "application/json"}, ca_certs=ca_file)
    assert status == 204
    assert calls == [{"host": f"hooks.example.org:{port}", "path": "/in?x=1", "body": b'{"a":1}'}]
    assert sni == ["hooks.example.org"], "the TLS server name is the host's, not the address's"
    # The certificate is checked against the host name: another name on the same address fails.
    with pytest.raises(ssl.SSLError):
        webhook_http.post(f"https://other.example.org:{port}/in", ["127.0.0.1"], b"{}", {}, ca_certs=ca_file)


def test_an_address_that_does_not_take_the_connection_is_followed_by_the_next():
    calls: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Recorder,), {"calls": calls}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # 127.0.0.2 has nothing listening on the port: refused at once, then 127.0.0.1 answers.
        status = webhook_http.post(f"http://hooks.example.org:{server.server_port}/x", ["127.0.0.2", "127.0.0.1"],
                                   b"{}", {})
    finally:
        server.shutdown()
        server.server_close()
    assert status == 204 and len(calls) == 1


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline():
    """One header line a second keeps every read within its timeout; the deadline holds the whole call."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(30):
                time.sleep(0.25)
                with contextlib.suppress(OSError):
                    conn.sendall(b"X-Slow-%d: yes\r\n" % i)

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(webhook_http.DeadlineExceeded):
        webhook_http.post(f"http://hooks.example.org:{listener.getsockname()[1]}/x", ["127.0.0.1"], b"{}", {},
                          webhook_http.Limits(connect=1, read=1, total=1.5))
    assert time.monotonic() - started < 3
    listener.close()


def test_a_delivery_resolves_the_host_once_and_connects_to_that_address(monkeypatch: pytest.MonkeyPatch):
    """DNS rebinding: were the name resolved again after the check, a second answer could point inside."""
    calls: list[dict[str, Any]] = []
    handler = type("Handler", (Recorder,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lookups: list[str] = []

    def rebinding(url: str) -> list[str]:
        lookups.append(url)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.0.0.1"]  # a second answer would go elsewhere

    monkeypatch.setattr(sender, "resolve", rebinding)

    class Repo:
        deliveries = object()
        done: list[str] = []

        def subscription(self, sid: str) -> dict[str, Any]:
            return {"_id": sid, "url": f"http://hooks.example.org:{server.server_port}/twincity", "secret": "s" * 16,
                    "status": "active"}

        def sent(self, *args: Any) -> None:
            self.done.append("sent")

        def set_subscription(self, *args: Any, **kwargs: Any) -> None:
            pass

    from services.config import Settings

    out = sender.Sender(Repo(), Settings(webhook_allow=("127.0.0.0/8",)), "secret")  # type: ignore[arg-type]
    try:
        out.deliver_webhook({"_id": "dlv-1", "subscription_id": "whk-1", "event": {"type": "idea.submitted"}})
    finally:
        server.shutdown()
        server.server_close()
    assert Repo.done == ["sent"] and len(lookups) == 1
    assert calls[0]["host"] == f"hooks.example.org:{server.server_port}" and calls[0]["path"] == "/twincity"
