"""The API document as schemathesis's command line judges it: no warnings.

test_fuzz.py checks every answer against the document in-process; this runs `st run`, as an integrator or a CI job
of theirs would, against the gateway served on a loopback port, and fails on any of its warnings: operations that
answer only 401/403 (missing auth), only 404 (missing test data), mostly 4xx to data the document calls valid
(a mismatch between document and server), 405, or content it cannot read. Real ids of a lab (test_isolation.Lab)
go into the path parameters through schemathesis.toml; tests/e2e/schemathesis_hooks.py puts real values into the
few body fields that reference other objects. A city key runs every operation a city may call, the admin key the
admin's; DELETE is left to test_fuzz.py and test_isolation.py (it would remove the objects the other calls use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.e2e.conftest import ADMIN, running_platform
from tests.e2e.test_isolation import UNLIMITED, Lab

ST = Path(sys.executable).with_name("st")


class Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # hundreds of requests: no line each
        pass
ADMIN_ONLY = ("addCity", "changeCity", "addPartnership", "addKey", "listKeys", "rotateKey", "readAudit",
              "changeMatchingSettings")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Lab, Path, dict[str, Any]]]:
    with running_platform("memory://", webhook_allow=("127.0.0.0/8",), rate_limit=UNLIMITED) as api:
        lab = Lab.build(api)
        ids = {"idea_id": lab.idea, "participant_id": lab.participant, "match_id": lab.match,
               "project_id": lab.project, "webhook_id": lab.webhook, "notification_id": lab.notification,
               "partnership_id": "karlsruhe-krasnodar", "city": "karlsruhe", "meeting_id": lab.meeting,
               "request_id": lab.request, "round_id": lab.round, "signup_id": lab.sign_up, "key_id": lab.new_key()}
        krasnodar_idea = api.ok("GET", "/ideas?city=krasnodar&limit=1", lab.keys["krasnodar"])["items"][0]["id"]
        twins = [api.ok("POST", "/cities", body=lab.city_body())["key"] for _ in range(2)]
        hooks_data = {"member": lab.member, "slot": lab.slot, "pair": [lab.idea, krasnodar_idea],
                      "cities_to_twin": twins}
        config = tmp_path_factory.mktemp("schemathesis") / "schemathesis.toml"
        config.write_text("\n".join([
            'hooks = "tests.e2e.schemathesis_hooks"', "", "[warnings]", "fail-on = true", "", "[parameters]",
            *(f'"path.{name}" = "{value}"' for name, value in ids.items()), "",
            # Withdrawing takes an idea out of every later change: it gets one of its own.
            "[[operations]]", 'include-operation-id = "withdrawIdea"',
            f'parameters = {{ "path.idea_id" = "{lab.new_idea()}" }}', ""]), encoding="utf-8")
        server = make_server("127.0.0.1", 0, api.platform.gateway, threaded=True, request_handler=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", lab, config, hooks_data
        finally:
            server.shutdown()


@pytest.mark.skipif(not ST.exists(), reason="schemathesis's `st` is not installed next to this Python")
@pytest.mark.parametrize("who", ["city key", "admin key"])
def test_schemathesis_runs_every_operation_without_a_warning(served, who: str):
    base, lab, config, hooks_data = served
    key, chosen = ((lab.keys["owner"], [a for op in ADMIN_ONLY for a in ("--exclude-operation-id", op)])
                   if who == "city key" else
                   (ADMIN, [a for op in ADMIN_ONLY for a in ("--include-operation-id", op)]))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
           "TWINCITY_ST_LAB": json.dumps(hooks_data), "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run(
        [str(ST), "--config-file", str(config), "run", f"{base}/api/v1/openapi.json", "--url", base,
         "--header", f"Authorization: Bearer {key}", "--phases", "fuzzing", "--max-examples", "8",
         "--exclude-method", "DELETE", "--checks", "not_a_server_error", "--seed", "20261203", "--no-color", *chosen],
        capture_output=True, text=True, timeout=300, env=env, cwd=config.parent)
    report = run.stdout[run.stdout.find("WARNINGS"):] if "WARNINGS" in run.stdout else run.stdout[-3000:]
    assert run.returncode == 0 and "Warnings:" not in run.stdout, f"{who}: {report}\n{run.stderr[-2000:]}"
    assert "Tested:" in run.stdout and " passed" in run.stdout
