"""`twincity dev` as a person runs it: a real process, answering on a real port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

TWINCITY = str(Path(sys.executable).parent / "twincity")



def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AMQP_URL", "MONGO_URL", "TWINCITY_ADMIN_KEY")}
    env.update(extra)
    return env


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Dev:
    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen([TWINCITY, "dev", "--port", str(self.port), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_healthy(self, timeout: float = 15.0) -> float:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"twincity dev exited early:\n{self.proc.stdout.read()}")
            try:
                if get(f"{self.url}/healthz")[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"/healthz did not answer 200 within {timeout}s")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(f"twincity dev did not stop on SIGTERM:\n{out}") from None
        return out


@pytest.fixture
def dev() -> Iterator[list[Dev]]:
    started: list[Dev] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.communicate()


def test_dev_answers_healthz_within_15_seconds_and_says_what_it_is(dev):
    d = Dev("--empty", env=clean_env(TWINCITY_ADMIN_KEY="tcl_test-admin-key-123456"))
    dev.append(d)
    elapsed = d.wait_healthy(15)
    assert get(f"{d.url}/readyz")[0] == 200
    out = d.stop()
    assert d.proc.returncode == 0
    assert d.url in out and "tcl_test-admin-key-123456" in out and "from TWINCITY_ADMIN_KEY" in out
    assert "keeps nothing" in out and "not loaded (--empty)" in out and "stopped" in out
    print(f"twincity dev answered /healthz after {elapsed:.2f}s")


def test_dev_loads_the_demo_lab_and_makes_an_admin_key(dev):
    d = Dev(env=clean_env())
    dev.append(d)
    elapsed = d.wait_healthy(15)
    banner = _read_banner(d)
    city_key = next(line.split()[2] for line in banner if line.strip().startswith("City key:") and "karlsruhe" in line)
    request = urllib.request.Request(f"{d.url}/api/v1/ideas?limit=100", headers={"Authorization": f"Bearer {city_key}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        ideas = json.loads(r.read())["items"]
    assert len(ideas) == 12 and sorted({i["language"] for i in ideas}) == ["de", "ru"]
    assert {i["city"] for i in ideas} == {"karlsruhe", "krasnodar"}
    assert get(f"{d.url}/docs")[0] == 200
    # Links in notifications lead to this process's own port (not the default 8080).
    authors = {i["author_id"] for i in ideas if i.get("author_id") and i["city"] == "karlsruhe"}
    deadline, links = time.monotonic() + 20, []
    while not links and time.monotonic() < deadline:
        for author in authors:
            inbox = urllib.request.Request(f"{d.url}/api/v1/participants/{author}/notifications",
                                           headers={"Authorization": f"Bearer {city_key}"})
            try:
                with urllib.request.urlopen(inbox, timeout=5) as r:
                    links += [n["link"] for n in json.loads(r.read())["items"] if n.get("link")]
            except urllib.error.HTTPError:
                pass  # notify has not heard of this person yet
        time.sleep(0.2)
    assert links and all(link.startswith(d.url + "/") for link in links), links
    text = "".join(banner)
    for email in ("lena.hoffmann", "jonas.weber", "miriam.okafor", "anna.smirnova", "dmitry.kuznetsov"):
        assert f"{email}@example.org" in text, f"the banner names every demo sign-in: {email}"
    assert f"{d.url}/coordinator/signin" in text
    assert "made for this run" in text and "Demo lab:   karlsruhe-krasnodar: 12 ideas, 5 participants" in text
    admin_key = next(line.split()[2] for line in banner if line.strip().startswith("Admin key:"))
    assert admin_key.startswith("tcl_") and len(admin_key) >= 40
    assert "stopped" in d.stop()
    print(f"twincity dev with the demo lab answered /healthz after {elapsed:.2f}s")


def _read_banner(d: Dev) -> list[str]:
    """The banner lines, read from the running process's output up to its last line."""
    lines: list[str] = []
    while True:
        line = d.proc.stdout.readline()
        if not line:
            raise AssertionError("twincity dev ended before printing its banner:\n" + "".join(lines))
        lines.append(line)
        if "Stop with Ctrl-C" in line:
            return lines


def test_dev_refuses_a_real_broker_url_with_a_clear_message():
    r = subprocess.run([TWINCITY, "dev"], env=clean_env(AMQP_URL="amqp://guest:guest@127.0.0.1:5672//"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "in-memory broker" in r.stderr and "AMQP_URL" in r.stderr


def test_dev_names_a_malformed_variable():
    r = subprocess.run([TWINCITY, "dev"], env=clean_env(MONGO_URL="localhost:27017"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "MONGO_URL" in r.stderr and "Traceback" not in r.stderr


def test_dev_says_when_the_port_is_taken(dev):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([TWINCITY, "dev", "--port", str(port)], env=clean_env(),
                           capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
