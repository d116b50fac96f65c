"""A small stand-in for a LibreTranslate server on loopback: POST /translate {"q", "source", "target", "format"}
answers {"translatedText": ...} with each text marked "[target] ", as the real API's shape has it. Tests count its
calls, make it fail (HTTP 500) or slow, and stop it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandIn:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False
        self.delay = 0.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                stand_in.calls.append(body)
                time.sleep(stand_in.delay)
                if self.path != "/translate" or stand_in.fail:
                    self._answer(500, {"error": "stand-in told to fail"})
                    return
                texts = body.get("q")
                marked = ([f"[{body['target']}] {t}" for t in texts] if isinstance(texts, list)
                          else f"[{body['target']}] {texts}")
                self._answer(200, {"translatedText": marked})

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running() -> Iterator[StandIn]:
    stand_in = StandIn()
    stand_in.thread.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
