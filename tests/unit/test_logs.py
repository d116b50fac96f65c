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


def test_email_addresses_never_reach_a_log_line(capsys):
    logs.setup("notify", "info", "json")
    log = logging.getLogger("notify.test")
    log.warning("send failed: %r", {"lena.hoffmann+lab@example.org": (550, b"no such user")},
                extra={"detail": "to anna@mail.example.ru"})
    try:
        raise ValueError("bad recipient o'brien@example.co.uk")
    except ValueError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert "@" not in err and err.count(logs.REDACTED_EMAIL) == 4, err
    logs.setup("notify", "info", "text")
    log.info("mail to a.b@example.org")
    assert capsys.readouterr().err.rstrip().endswith(f"mail to {logs.REDACTED_EMAIL}")


def test_text_lines_show_a_correlation_id_only_where_there_is_one(capsys):
    logs.setup("dev", "info", "text")
    log = logging.getLogger("dev.test")
    log.info("consuming ideas.events")
    with context.correlated("req-1234abcd"):
        log.info("idea stored")
    started, stored = capsys.readouterr().err.strip().splitlines()[-2:]
    assert " dev dev.test: consuming ideas.events" in started and "[None]" not in started
    assert " dev [req-1234abcd] dev.test: idea stored" in stored


def test_gunicorn_builds_no_access_line_per_request(monkeypatch):
    """The web commands give gunicorn a logging config (for its own lines), which alone makes it build every
    request's access-log fields; their logger class skips that."""
    from datetime import timedelta

    import pytest
    from gunicorn import glogging
    from gunicorn.config import Config

    cfg = Config()
    cfg.set("logger_class", "twincity.weblog.Logger")
    cfg.set("logconfig_dict", {"version": 1, "disable_existing_loggers": False, "root": {}})
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logger = cfg.logger_class(cfg)  # applies the logging config: the root logger is put back below
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    monkeypatch.setattr(glogging.Logger, "atoms", lambda *_: pytest.fail("access-log fields built"))
    logger.access(object(), object(), {}, timedelta(milliseconds=3))
    assert isinstance(logger, glogging.Logger)
