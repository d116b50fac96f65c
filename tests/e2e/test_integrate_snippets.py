"""The webhook receivers of docs/integrate.md, run as the guide prints them.

Each receiver (Python with its standard library, Node.js with `http` and `crypto`, plain PHP under `php -S`) is
taken from the guide by its `<!-- snippet: ... -->` marker, written to a file and started as a real process on a
loopback port; the platform runs in this process and sends to it over HTTP. Proven for each language:

- a real delivery of the platform (a ping, and the `idea.submitted` of an idea submitted through the API) is
  verified by the receiver, answered 204 and recorded `delivered` in GET /webhooks/{id}/deliveries;
- the receiver says which event it verified, with the event id and the delivery id the platform recorded;
- a wrong signature, a signature of another body, no signature, a delivery signed ten minutes ago (replayed), one
  signed for another delivery id and the body-only V1 signature get 401 and are not taken for an event, while the
  same body signed with the webhook's secret gets 204 (so the 401s were the signature's).

A missing `node` or `php` skips its case, saying how to get it (scripts/test installs php-cli when it runs as root).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_for
from tests.e2e.conftest import Api, running_platform

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integrate.md"
SECRET = "hook-secret-karlsruhe-2026"


@dataclass(frozen=True)
class Language:
    marker: str  # <!-- snippet: marker --> in the guide, right before the code block
    filename: str
    program: str  # the interpreter: looked up on PATH (the Python case runs this virtualenv's)
    arguments: Callable[[Path, int], list[str]]  # after the program: (the receiver's file, its port)
    missing: str  # the skip reason when `program` is not there


LANGUAGES = {
    "python": Language("webhook-python", "receiver.py", sys.executable, lambda path, _port: [str(path)],
                       f"no Python at {sys.executable}"),
    "node": Language("webhook-node", "receiver.js", "node", lambda path, _port: [str(path)],
                     "node is not installed: the guide's Node.js receiver is not run (install Node.js, e.g. "
                     "Debian's nodejs)"),
    "php": Language("webhook-php", "receiver.php", "php", lambda path, port: ["-S", f"127.0.0.1:{port}", str(path)],
                    "php is not installed; scripts/test installs php-cli with apt when it runs as root "
                    "(scripts/ensure-php)"),
}


def snippet(marker: str) -> str:
    """The code block right after `<!-- snippet: marker -->` in the guide, exactly as printed."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(rf"^<!-- snippet: {re.escape(marker)} -->\n```[a-z]*\n(.*?)^```$", text, re.M | re.S)
    assert len(blocks) == 1, f"{GUIDE.name} needs one code block right after <!-- snippet: {marker} -->"
    return blocks[0]


DELIVERY = "dlv_not_from_the_platform"


def sign(secret: str, body: bytes, delivery: str = DELIVERY, stamp: int | None = None) -> tuple[str, int]:
    """X-Twincity-Signature-V2 as the platform makes it, and the timestamp it covers (now, unless given)."""
    stamp = int(time.time()) if stamp is None else stamp
    signed = f"{delivery}.{stamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest(), stamp


@dataclass
class Running:
    """A receiver process of the guide: where it listens, and what it has said so far."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/twincity"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def post(self, body: bytes, signed: tuple[str, int] | None, **extra: str) -> int:
        """A request sent straight to the receiver, as someone else than the platform could; its status."""
        headers = {"Content-Type": "application/json", "X-Twincity-Event": "idea.withdrawn",
                   "X-Twincity-Delivery": DELIVERY, **extra}
        if signed is not None:
            headers["X-Twincity-Signature-V2"], stamp = signed
            headers["X-Twincity-Timestamp"] = str(stamp)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("POST", "/hooks/twincity", body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()


def listening(port: int, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, f"the receiver exited with {process.returncode}:\n{log.read_text()}"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def started(language: str, folder: Path) -> Iterator[Running]:
    """The guide's receiver in `language`, running on a free loopback port until the block ends."""
    spec = LANGUAGES[language]
    program = shutil.which(spec.program)
    if program is None:
        pytest.skip(spec.missing)
    source = folder / spec.filename
    source.write_text(snippet(spec.marker), encoding="utf-8")
    running = Running(free_port(), folder / "receiver.log")
    env = {**os.environ, "TWINCITY_WEBHOOK_SECRET": SECRET, "PORT": str(running.port), "HOST": "127.0.0.1"}
    with running.log.open("wb") as log:
        process = subprocess.Popen([program, *spec.arguments(source, running.port)], cwd=folder, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(running.port, process, running.log), 15, 0.05,
                 message=f"the {language} receiver to listen on port {running.port}")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[Api, dict[str, str]]]:
    """The whole platform in this process, allowed to deliver webhooks to loopback; the lab's keys."""
    with running_platform("memory://", webhook_allow=("127.0.0.0/8",), notify_retry_base=0.2) as api:
        yield api, api.lab()


def delivered(api: Api, key: str, hook_id: str, event_types: set[str], timeout: float = 15.0) -> dict[str, Any]:
    """The webhook's deliveries by event type, once one of each type is `delivered`."""
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        seen[:] = api.ok("GET", f"/webhooks/{hook_id}/deliveries", key)["items"]
        return {d["event_type"] for d in seen if d["status"] == "delivered"} >= event_types

    try:
        wait_for(done, timeout, 0.05, message=f"deliveries of {sorted(event_types)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the deliveries are {json.dumps(seen, indent=1)}") from None
    return {d["event_type"]: d for d in seen if d["status"] == "delivered"}


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_the_guides_receiver_verifies_real_deliveries_and_refuses_forged_ones(
        language: str, platform: tuple[Api, dict[str, str]], tmp_path: Path):
    api, keys = platform
    key = keys["karlsruhe"]
    with started(language, tmp_path) as receiver:
        hook = api.ok("POST", "/webhooks", key, {"url": receiver.url, "events": ["idea.submitted"], "secret": SECRET})
        try:
            ping = api.call("POST", f"/webhooks/{hook['id']}/ping", key)
            assert ping.status_code == 202
            idea = api.ok("POST", "/ideas", key, {"title": f"Radtour Karlsruhe–Krasnodar ({language})",
                                                  "description": "Jugendliche aus beiden Städten fahren gemeinsam "
                                                                 "Rad.", "theme": "leisure-youth-social",
                                                  "tags": ["bike", "youth"]})

            # (a) The platform's record: each delivery went out once and the receiver answered 204.
            by_type = delivered(api, key, hook["id"], {"webhook.ping", "idea.submitted"})
            for delivery in by_type.values():
                assert delivery["attempts"] == 1, delivery
                assert [(a["ok"], a["status_code"]) for a in delivery["log"]] == [(True, 204)], delivery
            assert by_type["webhook.ping"]["event_id"] == ping.json_body["event_id"]

            # (b) The receiver's own word: it verified those very deliveries (the line comes after verifying).
            lines = [f"verified {t} {d['event_id']} delivery={d['id']}" for t, d in by_type.items()]
            wait_for(lambda: all(line in receiver.output() for line in lines), 10, 0.05,
                     message=f"the {language} receiver to print {lines}")
            wait_for(lambda: api.observer.of("idea.submitted", idea_id=idea["id"]), 10,
                     message="the observer to see the idea.submitted")
            assert [e.id for e in api.observer.of("idea.submitted", idea_id=idea["id"])] == [
                by_type["idea.submitted"]["event_id"]], "the delivery carried the event the idea made"

            # (c) Requests the platform did not sign are refused and never taken for an event.
            forged = json.dumps({"id": "forged-event-0001", "type": "idea.withdrawn", "version": 1,
                                 "payload": {"idea_id": idea["id"], "city": "karlsruhe", "version": 2}}).encode()
            assert receiver.post(forged, sign("not-the-webhook-secret", forged)) == 401, "a wrong secret"
            assert receiver.post(forged, sign(SECRET, forged + b" ")) == 401, "the signature of another body"
            assert receiver.post(forged, ("sha256=" + "0" * 64, int(time.time()))) == 401, "a made-up signature"
            assert receiver.post(forged, None) == 401, "no signature"
            captured = sign(SECRET, forged, stamp=int(time.time()) - 600)
            assert receiver.post(forged, captured) == 401, "a delivery signed ten minutes ago, replayed"
            assert receiver.post(forged, sign(SECRET, forged, delivery="dlv_other")) == 401, "another delivery's"
            v1 = "sha256=" + hmac.new(SECRET.encode(), forged, hashlib.sha256).hexdigest()
            assert receiver.post(forged, None, **{"X-Twincity-Signature": v1}) == 401, "the body-only signature"
            assert "forged-event-0001" not in receiver.output()
            # The same body signed with the secret passes: the 401s above were the signature's doing.
            assert receiver.post(forged, sign(SECRET, forged)) == 204
            wait_for(lambda: "verified idea.withdrawn forged-event-0001" in receiver.output(), 10, 0.05,
                     message="the correctly signed request to be verified")
        finally:
            api.call("DELETE", f"/webhooks/{hook['id']}", key)
