"""Configuration: defaults for the embedded mode, and errors that name the variable."""

from pathlib import Path

import pytest

from services.config import VARIABLES, ConfigError, Settings


def test_defaults_are_the_embedded_mode():
    s = Settings.from_env({})
    assert s.embedded and s.amqp_url == "memory://" and s.mongo_url == "mongomock://"
    assert s.exchange == "twincity.events" and s.retry_delays_ms == (1000, 10000, 60000)
    assert s.database_name("ideas") == "twincity_ideas"


def test_values_are_read():
    s = Settings.from_env({"AMQP_URL": "amqp://u:p@rabbit:5672//", "MONGO_URL": "mongodb://mongo:27017",
                           "BUS_PREFETCH": "8", "BUS_RETRY_DELAYS_MS": "100, 200,200", "LOG_LEVEL": "DEBUG"})
    assert not s.embedded and s.prefetch == 8 and s.retry_delays_ms == (100, 200, 200) and s.log_level == "debug"


def test_blank_values_fall_back_to_defaults():
    assert Settings.from_env({"AMQP_URL": "  ", "BUS_PREFETCH": ""}).prefetch == 32


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"AMQP_URL": "rabbit:5672"}, "AMQP_URL"),
        ({"AMQP_URL": "http://x"}, "AMQP_URL"),
        ({"MONGO_URL": "postgres://x"}, "MONGO_URL"),
        ({"BUS_PREFETCH": "many"}, "BUS_PREFETCH"),
        ({"BUS_PREFETCH": "0"}, "BUS_PREFETCH"),
        ({"BUS_RETRY_DELAYS_MS": "5000,1000"}, "BUS_RETRY_DELAYS_MS"),
        ({"BUS_RETRY_DELAYS_MS": ","}, "BUS_RETRY_DELAYS_MS"),
        ({"BUS_CONFIRM_TIMEOUT": "soon"}, "BUS_CONFIRM_TIMEOUT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"TWINCITY_EXCHANGE": "Events With Spaces"}, "TWINCITY_EXCHANGE"),
        ({"PORT": "99999"}, "PORT"),
        ({"WORKER_METRICS_PORT": "70000"}, "WORKER_METRICS_PORT"),
        ({"TWINCITY_RATE_LIMIT": "0/minute"}, "TWINCITY_RATE_LIMIT"),
        ({"TWINCITY_SIGNIN_RATE_LIMIT": "5 per 0 minutes"}, "TWINCITY_SIGNIN_RATE_LIMIT"),
    ],
)
def test_malformed_values_name_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_docs_configuration_documents_every_variable():
    """docs/configuration.md's table has a row for every variable, with its default, and no row for one the
    platform does not read."""
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    missing = [v.name for v in VARIABLES if v.name not in rows]
    assert not missing, f"docs/configuration.md's configuration table lacks {missing}"
    unknown = sorted(set(rows) - {v.name for v in VARIABLES})
    assert not unknown, f"docs/configuration.md's table names variables the platform does not read: {unknown}"
    wrong = [v.name for v in VARIABLES if rows[v.name] != f"`{v.default or '(empty)'}`"]
    assert not wrong, f"docs/configuration.md gives other defaults than services/config.py for {wrong}"


def test_twincity_config_lists_every_variable_and_fails_on_a_malformed_one():
    from click.testing import CliRunner

    from twincity.cli import main

    fine = CliRunner().invoke(main, ["config"], env={"PORT": "8001"})
    assert fine.exit_code == 0 and fine.output.rstrip().endswith("configuration is valid")
    names = [line.split()[0] for line in fine.output.splitlines()[:len(VARIABLES)]]
    assert names == [v.name for v in VARIABLES]
    assert len({line.index(line.split()[1]) for line in fine.output.splitlines()[:len(VARIABLES)]}) == 1, "aligned"
    bad = CliRunner().invoke(main, ["config"], env={"PORT": "99999"})
    assert bad.exit_code == 1 and "INVALID: PORT='99999' must be at most 65535" in bad.output


def test_twincity_config_shows_no_secret():
    from click.testing import CliRunner

    from twincity.cli import main

    env = {"AMQP_URL": "amqp://twin:broker-pass@rabbit:5672//", "MONGO_URL": "mongodb://u:mongo-pass@db:27017",
           "SMTP_URL": "smtp://mail:smtp-pass@mail:25", "NOTIFY_SECRET": "notify-secret-value",
           "TWINCITY_SECRET": "session-secret-value", "TWINCITY_ADMIN_KEY": "tcl_admin-key-value"}
    out = CliRunner().invoke(main, ["config"], env=env).output
    for secret in ("broker-pass", "mongo-pass", "smtp-pass", "notify-secret-value", "session-secret-value",
                   "admin-key-value"):
        assert secret not in out, secret
    assert "amqp://twin:***@rabbit:5672//" in out and "configuration is valid" in out
    for url in ("rabbit://u:broker-pass@x", "amqp//u:broker-pass@x", "amqp://u:broker-pass@[::1/"):
        bad = CliRunner().invoke(main, ["config"], env={"AMQP_URL": url})
        assert bad.exit_code == 1 and "broker-pass" not in bad.output and "u:***@" in bad.output, bad.output
