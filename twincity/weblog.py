"""gunicorn's logger for the web commands: gunicorn's own lines go through ours, no line per request."""

from __future__ import annotations

from typing import Any

from gunicorn import glogging


class Logger(glogging.Logger):
    """No access lines (latency and status are in /metrics; one line per request would drown the rest).

    gunicorn writes them when `accesslog` is set or when a logging configuration is given, which the web
    commands give to route gunicorn's own lines through ours. It then builds every request's log fields
    (a dict of the environment, a formatted date) for the access logger to drop them; this skips that.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
