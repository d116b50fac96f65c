"""The deployment files (docker-compose.yml and the Dockerfiles) against the code they run.

No Docker engine runs here, so this checks what can be checked without one: compose parses, every
command it and the Dockerfiles name exists, every variable it sets is one the platform reads, and a
web and a worker process start and stop on SIGTERM as compose runs them (outside a container).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from services import bus
from services.config import VARIABLES, ConfigError, Settings
from tests.conftest import answers_ok, free_port, wait_for
from twincity import cli
from twincity.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Variables compose already sets whose reader has not landed yet, each with the issue that will read
# it. test_announced_variables_are_not_read_yet fails once the reader lands, so the list stays honest.
ANNOUNCED: dict[str, str] = {}

# The CLI reads a few process variables itself (PORT, WEB_WORKERS, ...) besides services.config.
_ENV_GET = re.compile(r"os\.environ\.get\(\s*[\"']([A-Z0-9_]+)[\"']")
CLI_VARIABLES = set(_ENV_GET.findall(Path(cli.__file__).read_text()))
READ = {var.name for var in VARIABLES} | CLI_VARIABLES


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository (not mongo, rabbitmq, mailpit)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def resolve(argv: list[str]) -> click.Command:
    """The click command that `twincity ...` runs; fails when there is none or its options are wrong."""
    shown = " ".join(argv)
    assert argv[:1] == ["twincity"], f"`{shown}` does not run twincity"
    command: click.Command = main
    args = argv[1:]
    path = ["twincity"]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in command.commands, f"`{shown}`: `{' '.join(path)}` has no command {name!r}"
        command = command.commands[name]
        path.append(name)
    assert not isinstance(command, click.Group), f"`{shown}` names a group, not a command to run"
    command.make_context(" ".join(path), args)  # parses and validates the options without running
    return command


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} gives the default here; ${VAR:?message} a stand-in for the operator's value."""
    def one(m: re.Match[str]) -> str:
        if m.group("op") == ":-":
            return m.group("arg")
        return f"operator-sets-{m.group('name').lower()}"

    return _INTERPOLATION.sub(one, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def is_worker(service: dict[str, Any]) -> bool:
    return words(service.get("command", []))[-1:] == ["worker"]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


# The compose file --------------------------------------------------------------------------------


def test_compose_runs_every_process_of_every_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mongo", "rabbitmq", "mailpit"} <= set(services)
    for name in cli.SERVICES:
        for process in main.commands[name].commands:  # type: ignore[attr-defined]
            expected = f"twincity {name} {process}"
            running = [s for s in services.values() if words(s.get("command", [])) == expected.split()]
            assert running, f"no compose service runs `{expected}`"


def test_every_compose_command_exists(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        assert "command" in service, f"{name}: set the command explicitly (the image's CMD is only its web)"
        resolve(words(service["command"]))


def test_one_dockerfile_builds_every_service_and_runs_an_existing_command(compose: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs = {Path(d).parts[0] for d in pyproject["tool"]["setuptools"]["package-dir"].values()}
    dockerfile = ROOT / "Dockerfile"
    instructions = dockerfile_instructions(dockerfile)
    assert [p.name for p in ROOT.glob("*/Dockerfile")] == [], "one Dockerfile, with a build argument per service"
    cmds = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmds and exec_form(cmds[-1])[:2] == ["sh", "-c"], f"{dockerfile}: CMD runs the image's service"
    default = exec_form(cmds[-1])[2].replace('"$TWINCITY_SERVICE"', "{service}")
    assert ("ENV", next(a for k, a in instructions if k == "ENV")) and "TWINCITY_SERVICE=${SERVICE}" in \
        next(a for k, a in instructions if k == "ENV"), "the build argument names the service the image runs"
    for name, service in ours(compose).items():
        build = service["build"]
        assert build["context"] == ".", f"{name}: build from the repository root (one pyproject installs all)"
        assert "dockerfile" not in build and build["args"]["SERVICE"] in cli.SERVICES, name
        resolve(shlex.split(default.format(service=build["args"]["SERVICE"]))[1:])  # what `exec` runs
    assert ("EXPOSE", "8000") in instructions, f"{dockerfile}: EXPOSE 8000 for the web process"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{dockerfile}: run as a non-root USER"
    copied = {Path(source).parts[0] for keyword, args in instructions if keyword == "COPY"
              for source in exec_form(args)[:-1]}
    for needed in sorted(package_dirs | {"pyproject.toml", "README.md"}):
        assert needed in copied, f"{dockerfile}: COPY {needed} (pip install . needs it)"


def test_dockerignore_keeps_the_build_context_small_but_complete() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git"} <= ignored
    needed = {"services", "gateway", "twincity", "pyproject.toml", "README.md"}
    for line in ignored:
        assert line.split("/")[0] not in needed, f".dockerignore drops {line}, which the image needs"


def test_workers_scale(compose: dict[str, Any]) -> None:
    workers = {name: svc for name, svc in ours(compose).items() if is_worker(svc)}
    assert workers
    for name, service in workers.items():
        assert "container_name" not in service, f"{name}: a container_name stops `--scale {name}=N`"
        assert "ports" not in service, f"{name}: a published port stops `--scale {name}=N`"
        assert service.get("stop_grace_period") == "30s", f"{name}: let it finish the message in hand"


def test_only_the_gateway_is_public(compose: dict[str, Any]) -> None:
    published = {name for name, svc in ours(compose).items() if svc.get("ports")}
    assert published == {"gateway"}
    assert compose["services"]["gateway"]["ports"] == ["8080:8000"]


def test_services_wait_for_a_healthy_store_and_broker(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        depends = service.get("depends_on", {})
        for infra in ("mongo", "rabbitmq"):
            assert depends.get(infra, {}).get("condition") == "service_healthy", f"{name}: depends_on {infra}"
            assert "healthcheck" in compose["services"][infra], f"{infra} needs a healthcheck"
        if not is_worker(service):
            probe = " ".join(words(service["healthcheck"]["test"]))
            assert "/readyz" in probe, f"{name}: its healthcheck should ask /readyz"


def test_every_variable_compose_sets_is_read(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        for var in environment(service):
            assert var in READ or var in ANNOUNCED, (
                f"{name} sets {var}, which nothing reads: add it to services.config.VARIABLES with its "
                "reader, or to ANNOUNCED in this test with the issue that will read it"
            )


def test_compose_configuration_is_valid(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        try:
            Settings.from_env(environment(service))
        except ConfigError as exc:
            pytest.fail(f"{name}: {exc}")


def test_announced_variables_are_not_read_yet(compose: dict[str, Any]) -> None:
    configured = {var.name for var in VARIABLES}
    set_in_compose = {var for svc in ours(compose).values() for var in environment(svc)}
    for var, reader in ANNOUNCED.items():
        assert var not in configured, f"{var} is read now ({reader}): move {var} out of ANNOUNCED"
        assert var in set_in_compose, f"docker-compose.yml no longer sets {var}: remove it from ANNOUNCED"


def raw_environment(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def test_compose_demands_the_secrets_an_operator_must_choose(compose: dict[str, Any]) -> None:
    key = raw_environment(compose["services"]["gateway"])["TWINCITY_ADMIN_KEY"]
    assert key.startswith("${TWINCITY_ADMIN_KEY:?"), "compose must refuse to start without TWINCITY_ADMIN_KEY"
    for name in ("notify-web", "notify-worker"):
        secret = raw_environment(compose["services"][name])["NOTIFY_SECRET"]
        assert secret.startswith("${NOTIFY_SECRET:?"), f"{name} must share an operator-chosen NOTIFY_SECRET"


# The processes, outside Docker ---------------------------------------------------------------------


def twincity_script() -> Path:
    return Path(sys.executable).parent / "twincity"


def compose_env(compose: dict[str, Any], service: str, amqp_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment compose gives `service`, adapted to this machine."""
    env = {k: v for k, v in os.environ.items() if k not in READ and k not in ANNOUNCED}
    env.update(environment(compose["services"][service]))
    env.update(AMQP_URL=amqp_url, MONGO_URL="mongomock://", TWINCITY_MEMORY_STORE="1")  # no MongoDB here
    # Queues and exchange of their own, so the shared broker keeps nothing of this test.
    env.update(TWINCITY_EXCHANGE=f"test.deploy.{tmp_path.name}".lower()[:60],
               TWINCITY_NAMESPACE=f"test-deploy-{tmp_path.name}".lower()[:60])
    # gunicorn's control socket defaults to ~/.gunicorn/gunicorn.ctl: keep ours off a developer's one.
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    return env




def stop(process: subprocess.Popen[bytes], log: Path) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"did not stop within 15 s of SIGTERM:\n{log.read_text()}")


@pytest.mark.rabbitmq
def test_a_web_process_serves_readiness_and_stops_on_sigterm(
    compose: dict[str, Any], rabbitmq: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "web.log"
    argv = [str(twincity_script()), "ideas", "web",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env={**compose_env(compose, "ideas-web", rabbitmq, tmp_path),
                                              "TMPDIR": str(scratch)},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz", process, log), 20, interval=0.2,
                 message="/readyz to answer 200")
        assert [p.name.startswith("twincity-ideas-metrics-") for p in scratch.iterdir()] == [True]
        for _ in range(10):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        count = next(line for line in metrics.splitlines()
                     if line.startswith("twincity_http_request_seconds_count") and 'endpoint="/healthz"' in line)
        assert count.endswith(" 10.0"), f"two gunicorn workers, one count: {count}"
        assert stop(process, log) == 0, log.read_text()
        assert list(scratch.iterdir()) == [], "the workers' metrics folder goes with the process"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.rabbitmq
def test_a_worker_process_serves_its_metrics_and_stops_on_sigterm(
    compose: dict[str, Any], rabbitmq: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    port = free_port()  # compose's WORKER_METRICS_PORT is a container port; here the host shares one space
    with log.open("wb") as out:
        process = subprocess.Popen([str(twincity_script()), "ideas", "worker"],
                                   env={**compose_env(compose, "ideas-worker", rabbitmq, tmp_path),
                                        "WORKER_METRICS_PORT": str(port)},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def started() -> bool:
            assert process.poll() is None, f"exited early with {process.returncode}:\n{log.read_text()}"
            return "worker ideas started" in log.read_text()

        wait_for(started, 20, interval=0.2, message="the worker's start line")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "# TYPE twincity_events_handled_total counter" in metrics, metrics[:500]
        assert "# TYPE twincity_outbox_backlog gauge" in metrics
        assert stop(process, log) == 0, log.read_text()
        lines = [json.loads(line) for line in log.read_text().splitlines()]  # LOG_FORMAT=json from compose
        assert any(line["msg"].startswith("worker ideas stopped") for line in lines), lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        env = compose_env(compose, "ideas-worker", rabbitmq, tmp_path)
        settings = Settings.from_env(env)
        bus.delete_topology(settings, [bus.Consumer(settings, "ideas", {"x": []}).topology], exchange=True)
