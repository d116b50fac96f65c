"""No personal data in logs: a whole flow with names and e-mail addresses, including the paths that log
errors (a refused recipient, bad input, an erasure), leaves none of them in what the platform logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services import logs
from tests.conftest import free_port, wait_for
from tests.e2e.conftest import running_platform, transport_url
from tests.e2e.test_matching import GARDEN_DE, GARDEN_RU

LENA = {"name": "Lena Hoffmann", "email": "lena.hoffmann@example.org", "language": "de"}
ANNA = {"name": "Анна Смирнова", "email": "anna.smirnova@example.org", "language": "ru"}
PERSONAL = ("Lena", "Hoffmann", "Анна", "Смирнова", "lena.hoffmann", "anna.smirnova", "example.org",
            "kim.wrong")


class RefusingSmtp:
    """A real SMTP server (aiosmtpd, on loopback) that refuses some recipients with 550, as a mail host does."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.delivered: list[str] = []
        outer = self

        class Handler:
            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                                  rcpt_options: Any) -> str:
                if address in outer.refused:
                    return f"550 5.1.1 <{address}>: no such user here"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                outer.delivered.extend(envelope.rcpt_tos)
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> RefusingSmtp:
        self.controller.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the platform, formatted as in production (JSON lines)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(lambda record: not record.name.startswith("mail.log"))  # the test's SMTP server, not ours
    handler.addFilter(logs.ContextFilter("test"))
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(params=["memory", "amqp"])
def transport(request: pytest.FixtureRequest) -> str:
    return transport_url(request)


def test_a_whole_flow_logs_no_names_and_no_email_addresses(transport: str, captured: io.StringIO):
    with RefusingSmtp(refused={ANNA["email"]}) as smtp, running_platform(
            transport, smtp_url=smtp.url, notify_retry_base=0.2, notify_max_attempts=2) as api:
        keys = api.lab()
        lena = api.ok("POST", "/participants", keys["karlsruhe"],
                      {**LENA, "preferences": {"channels": ["email", "inbox"]}})
        anna = api.ok("POST", "/participants", keys["krasnodar"],
                      {**ANNA, "preferences": {"channels": ["email", "inbox"]}})
        # Bad input that carries personal data: refused with a message, and not logged.
        bad = api.call("POST", "/participants", keys["karlsruhe"],
                       {"name": "Kim Wrong", "email": "kim.wrong@example.org", "language": "xx"})
        assert bad.status_code == 422
        api.settle()
        api.ok("POST", "/ideas", keys["karlsruhe"], {**GARDEN_DE, "author_id": lena["id"]})
        api.ok("POST", "/ideas", keys["krasnodar"], {**GARDEN_RU, "author_id": anna["id"]})

        wait_for(lambda: LENA["email"] in smtp.delivered, 20, message="Lena's e-mail")
        # Anna's address is refused: the sender logs the failure (smtplib's error names the address).
        wait_for(lambda: "failed (try" in captured.getvalue(), 20, message="the refused e-mail logged")
        api.ok("PATCH", f"/participants/{lena['id']}", keys["karlsruhe"], {"name": "Lena H.-Berg"})
        assert api.call("DELETE", f"/participants/{anna['id']}", keys["krasnodar"]).status_code == 204
        api.settle()

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert len(lines) > 5, "the flow logged something to check"
    text = captured.getvalue()
    assert logs.REDACTED_EMAIL in text, "the refused recipient's address reached a log call and was redacted"
    leaks = [word for word in (*PERSONAL, "H.-Berg") if word in text]
    assert not leaks, f"personal data in the logs: {leaks}\n{text}"
