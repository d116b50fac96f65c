"""The machine's RabbitMQ is shared: neither the tests nor scripts/test ever stop or restart it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
# rabbitmqctl's verbs that stop a node or its broker, and the service managers' ways of doing the same.
STOPS = re.compile(r"rabbitmqctl[\"',\s\]\[]+(stop_app|stop|shutdown|reset|force_reset|close_all_connections)\b"
                   r"|(systemctl|service)\s+\S*\s*rabbitmq\S*\s+(stop|restart)|rabbitmq-server\s+stop")


def test_only_the_private_test_node_is_ever_stopped_or_restarted():
    offenders = []
    for path in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("scripts/*"), ROOT / ".ci" / "run"]:
        if path.name in ("private_rabbitmq.py", "test_shared_broker.py") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if STOPS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "stop or restart a private node (tests/private_rabbitmq.py) instead:\n" + "\n".join(offenders)


def test_the_private_node_names_itself_in_every_rabbitmqctl_call():
    text = (ROOT / "tests" / "private_rabbitmq.py").read_text(encoding="utf-8")
    calls = re.findall(r'\["rabbitmqctl"[^\]]*\]', text)
    assert calls and all('"-n", self.node' in call for call in calls), calls
