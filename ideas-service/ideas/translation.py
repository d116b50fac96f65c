"""Idea texts translated on demand by a LibreTranslate-compatible service (TWINCITY_TRANSLATE_URL).

The service is an outside helper, not a part the platform waits for: a call waits at most a few seconds, and after
a failure none is made for half a minute, so that a page shows the original at once while the helper is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import urllib3

log = logging.getLogger(__name__)

PAUSE_AFTER_FAILURE = 30.0  # seconds without calls once the service failed


class Unavailable(Exception):
    """The translation service is off, down, slow or answered something else than translations."""


class Translator(Protocol):
    name: str

    def translate(self, texts: Sequence[str], source: str | None, target: str) -> list[str]: ...


class LibreTranslate:
    """POST {url}/translate {"q": [...], "source", "target", "format": "text"} -> {"translatedText": [...]}."""

    name = "LibreTranslate"

    def __init__(self, url: str, key: str = "", *, timeout: float = 3.0) -> None:
        self.url = url.rstrip("/") + "/translate"
        self.key = key
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1.0, read=timeout))
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def translate(self, texts: Sequence[str], source: str | None, target: str) -> list[str]:
        with self._lock:
            if time.monotonic() < self._paused_until:
                raise Unavailable("the translation service failed a moment ago")
        body = {"q": list(texts), "source": source or "auto", "target": target, "format": "text",
                **({"api_key": self.key} if self.key else {})}
        try:
            answer = self.http.request("POST", self.url, json=body)
            found = answer.json().get("translatedText") if answer.status == 200 else None
        except (urllib3.exceptions.HTTPError, ValueError, AttributeError) as exc:
            self._pause(f"{type(exc).__name__}: {exc}")
            raise Unavailable("the translation service does not answer") from None
        if isinstance(found, str):
            found = [found]
        if not isinstance(found, list) or len(found) != len(texts) or not all(isinstance(t, str) for t in found):
            self._pause(f"status {answer.status}")
            raise Unavailable(f"the translation service answered {answer.status} without translations")
        return found

    def _pause(self, why: str) -> None:
        log.warning("translation service %s failed (%s): no calls for %.0f s", self.url, why, PAUSE_AFTER_FAILURE)
        with self._lock:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
