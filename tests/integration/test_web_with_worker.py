"""`twincity <service> web --with-worker`: the web app, the consumers and the relay in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from services import bus
from services.config import Settings
from services.tenancy import HEADER, Caller
from tests.conftest import Consumers, answers_ok, free_port, queue_depth, wait_for

TWINCITY = str(Path(sys.executable).parent / "twincity")


@pytest.mark.rabbitmq
def test_one_process_serves_consumes_and_relays_on_an_in_memory_store(
    rabbit_settings: Settings, rabbit_consumers: Consumers, tmp_path: Path
) -> None:
    submitted = []
    rabbit_consumers.start("observer", {"idea.submitted": [submitted.append]})
    port = free_port()
    log = tmp_path / "ideas.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINCITY_", "PROMETHEUS_"))}
    env.update(AMQP_URL=rabbit_settings.amqp_url, MONGO_URL="mongomock://", TWINCITY_MEMORY_STORE="1",
               TWINCITY_EXCHANGE=rabbit_settings.exchange,
               TWINCITY_NAMESPACE=rabbit_settings.namespace, LOG_FORMAT="json", XDG_RUNTIME_DIR=str(tmp_path),
               # the retry queues it declares are the ones deleted afterwards
               BUS_RETRY_DELAYS_MS=",".join(map(str, rabbit_settings.retry_delays_ms)))
    with log.open("wb") as out:
        process = subprocess.Popen([TWINCITY, "ideas", "web", "--with-worker", "--bind", f"127.0.0.1:{port}"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    ideas = bus.Topology("ideas", rabbit_settings.exchange, (), rabbit_settings.retry_delays_ms,
                         rabbit_settings.namespace)
    try:
        wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz", process, log), 20, interval=0.2,
                 message="/readyz to answer 200")
        who = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe",),
                     default_themes=("ecology-health",))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/ideas", method="POST",
            data=json.dumps({"title": "Radtour", "theme": "ecology-health", "language": "de"}).encode(),
            headers={"Content-Type": "application/json", HEADER: who.encode()})
        with urllib.request.urlopen(request, timeout=5) as response:
            idea = json.loads(response.read())
        # The web request's outbox event is relayed by this process, and its consumer holds the service's queue.
        wait_for(lambda: any(e.payload["idea_id"] == idea["id"] for e in submitted), 15,
                 message="idea.submitted to be relayed")
        def consumers() -> int:
            with bus.connection(rabbit_settings) as conn:
                return conn.channel().queue_declare(queue=ideas.queue, passive=True).consumer_count

        wait_for(lambda: consumers() == 1, 15, interval=0.1, message="the worker to consume its queue")
        assert queue_depth(rabbit_settings, ideas.dead) == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        bus.delete_topology(rabbit_settings, [ideas])


def test_with_worker_runs_one_web_process_and_the_gateway_has_none() -> None:
    from click.testing import CliRunner

    from twincity.cli import main

    runner = CliRunner()
    refused = runner.invoke(main, ["ideas", "web", "--with-worker", "--workers", "2"])
    assert refused.exit_code == 2 and "one web process" in refused.output
    refused = runner.invoke(main, ["gateway", "web", "--with-worker"])
    assert refused.exit_code == 2 and "no worker" in refused.output


def test_a_memory_store_shared_by_no_one_is_said_aloud(monkeypatch) -> None:
    """gateway web with two gunicorn workers on mongomock:// would keep two stores: the operator hears of it."""
    import logging

    from click.testing import CliRunner

    from twincity import cli

    monkeypatch.setattr(cli._Gunicorn, "run", staticmethod(lambda *a, **k: None))
    root = logging.getLogger()  # the command sets up logging for its process: put back what pytest had
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    env = {"MONGO_URL": "mongomock://", "TWINCITY_MEMORY_STORE": "1", "WEB_WORKERS": "2",
           "PROMETHEUS_MULTIPROC_DIR": "/tmp"}
    two = CliRunner().invoke(cli.main, ["gateway", "web"], env=env)
    assert two.exit_code == 0 and "its 2 gunicorn workers would each keep their own data" in two.stderr
    one = CliRunner().invoke(cli.main, ["gateway", "web", "--workers", "1"], env=env)
    assert "mongomock://" in one.stderr and "would each" not in one.stderr
    stored = CliRunner().invoke(cli.main, ["gateway", "web"], env={**env, "MONGO_URL": "mongodb://db:27017",
                                                                    "AMQP_URL": "amqp://broker:5672//"})
    assert stored.exit_code == 0 and stored.stderr == ""


@pytest.mark.parametrize("argv", [["gateway", "web"], ["ideas", "web"], ["matching", "worker"],
                                  ["notify", "web", "--with-worker"]])
def test_production_commands_refuse_a_store_or_broker_that_a_restart_forgets(monkeypatch, argv) -> None:
    """A gateway restarted on mongomock:// forgot every city key and still said `ready`: refused unless asked for."""
    import logging

    from click.testing import CliRunner

    from twincity import cli

    started: list[str] = []
    monkeypatch.setattr(cli._Gunicorn, "run", staticmethod(lambda *a, **k: started.append("web")))
    monkeypatch.setattr(cli, "_factory", lambda service: type("M", (), {
        "run_worker": staticmethod(lambda *a, **k: started.append("worker"))}))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    base = {"TWINCITY_MEMORY_STORE": "", "PROMETHEUS_MULTIPROC_DIR": "/tmp", "WEB_WORKERS": "1"}
    for env, what in (({"MONGO_URL": "mongomock://", "AMQP_URL": "amqp://broker:5672//"}, "MONGO_URL=mongomock://"),
                      ({"MONGO_URL": "mongodb://db:27017", "AMQP_URL": "memory://"}, "AMQP_URL=memory://")):
        refused = CliRunner().invoke(cli.main, argv, env={**base, **env})
        assert refused.exit_code == 1 and what in refused.output, refused.output
        fix = "MONGO_URL=mongodb://host:27017" if what.startswith("MONGO") else "AMQP_URL=amqp://user:pass@host"
        assert fix in refused.output and "twincity dev" in refused.output
        assert "--memory-store" in refused.output and not started
    allowed = CliRunner().invoke(cli.main, [*argv, "--memory-store"], env={**base, "MONGO_URL": "mongomock://"})
    assert allowed.exit_code == 0, allowed.output
    by_env = CliRunner().invoke(cli.main, argv, env={**base, "MONGO_URL": "mongomock://", "TWINCITY_MEMORY_STORE": "1"})
    assert by_env.exit_code == 0, by_env.output
    assert len(started) == 2
