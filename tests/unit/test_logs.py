"""Logs are JSON lines carrying the service, correlation id and event id."""

import json
import logging

from services import context, logs


def test_log_lines_carry_the_correlation(capsys):
    logs.setup("ideas", "info", "json")
    with context.correlated("req-1234abcd", event="ev-1"):
        logging.getLogger("ideas.test").info("idea stored", extra={"idea_id": "i1"})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "ideas" and line["correlation_id"] == "req-1234abcd" and line["event_id"] == "ev-1"
    assert line["msg"] == "idea stored" and line["idea_id"] == "i1" and line["level"] == "info"
