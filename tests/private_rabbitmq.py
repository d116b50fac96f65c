"""A RabbitMQ node of the tests' own, for tests that stop and start a broker: the machine's shared one is never touched.

It has its own node name, port, distribution port, data and log folder, config file and (empty) plugin list, all
under a temporary folder, listens on loopback only, and is stopped and removed at the end of the test session. The
system's rabbitmq.conf may pin the 5672 listener and rabbitmq-env.conf the node name, so the node is pointed at
files of its own (RABBITMQ_CONFIG_FILE, RABBITMQ_CONF_ENV_FILE). Debian's `rabbitmq-server` runs the node as the
`rabbitmq` user when called by root; elsewhere the tests that need such a node are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import kombu


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Unavailable(Exception):
    """No private node can be started here; the message says why (the tests that need one are skipped)."""


class PrivateRabbitMQ:
    def __init__(self) -> None:
        if not (shutil.which("rabbitmq-server") and shutil.which("rabbitmqctl")):
            raise Unavailable("rabbitmq-server is not installed (scripts/test installs it when it runs as root)")
        if os.geteuid() != 0:
            raise Unavailable("starting a private RabbitMQ node needs root (it runs as the rabbitmq user)")
        self.node = f"twincity-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.folder = Path(tempfile.mkdtemp(prefix="twincity-rabbitmq-"))
        self.folder.chmod(0o755)
        (self.folder / "mnesia").mkdir()
        (self.folder / "log").mkdir()
        (self.folder / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")
        shutil.chown(self.folder, "rabbitmq", "rabbitmq")
        for path in self.folder.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.folder / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["rabbitmqctl", "-n", self.node, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def answers(self) -> bool:
        try:
            with kombu.Connection(self.url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1, timeout=3)
            return True
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def start(self, timeout: float = 90) -> PrivateRabbitMQ:
        started = subprocess.run(["rabbitmq-server", "-detached"], env=self.env, capture_output=True, text=True,
                                 timeout=60, check=False)
        if started.returncode != 0:
            raise Unavailable(f"rabbitmq-server -detached failed: {started.stderr.strip()[:300]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise Unavailable(f"the private RabbitMQ node did not answer on port {self.port} within {timeout:.0f} s")

    def restart_app(self) -> None:
        """Stop and start the broker inside the node: every connection drops, durable queues stay."""
        for step in ("stop_app", "start_app"):
            done = self.ctl(step)
            assert done.returncode == 0, f"rabbitmqctl {step}: {done.stderr or done.stdout}"

    def await_startup(self) -> None:
        self.ctl("await_startup", "--timeout", "60")

    def stop(self) -> None:
        self.ctl("stop", timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
