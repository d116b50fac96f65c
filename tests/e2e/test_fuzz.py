"""Fuzzing: schemathesis against /api/v1/openapi.json of a running gateway (in-process, memory://).

For every documented operation, Hypothesis draws valid and invalid requests from the document (bounded and
derandomized: the same requests on every run); half of them aim at real objects (ids of a lab made once for
the module). No answer may be a 5xx, and every answer must be one the document lists for the operation, with
the documented content type and a body matching its schema. Once with the admin key, once with Karlsruhe's key.

Nothing leaves the machine: webhook URLs resolve only when they are loopback addresses (no DNS), so the sender
never delivers anywhere but 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import running_platform
from tests.e2e.test_isolation import ROUTES, UNLIMITED, Lab

PREFIX = "/api/v1"
MAX_EXAMPLES = 15  # per operation and key: ~1,100 requests in all, well under a minute on two cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = [(r.method, r.path) for r in ROUTES]  # test_isolation checks that ROUTES covers the document

# Known failures: (key, method, path) -> what is wrong (see the report of each).
KNOWN: dict[tuple[str, str, str], str] = {}


def loopback_only(url: str) -> list[str]:
    """notify's resolve() without DNS: loopback literals resolve, every other host 'does not resolve'."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise OSError(f"{host}: no DNS in the fuzz run") from None
    if not address.is_loopback:
        raise OSError(f"{host}: only loopback targets in the fuzz run")
    return [str(address)]


@dataclass
class Fuzz:
    schema: Any
    keys: dict[str, str]
    ids: dict[str, str]  # path parameter -> a real object's id


@pytest.fixture(scope="module")
def fuzz() -> Iterator[Fuzz]:
    import notify.sender
    import notify.usecases

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(notify.usecases, "resolve", loopback_only)
        patch.setattr(notify.sender, "resolve", loopback_only)
        with running_platform("memory://", webhook_allow=("127.0.0.0/8",), rate_limit=UNLIMITED) as api:
            lab = Lab.build(api)
            ids = {"idea_id": lab.idea, "participant_id": lab.participant, "match_id": lab.match,
                   "project_id": lab.project, "webhook_id": lab.webhook, "notification_id": lab.notification,
                   "partnership_id": "karlsruhe-krasnodar", "key_id": lab.new_key()}
            schema = schemathesis.openapi.from_wsgi(f"{PREFIX}/openapi.json", api.platform.gateway)
            yield Fuzz(schema=schema, keys={"admin": lab.keys["admin"], "karlsruhe": lab.keys["owner"]}, ids=ids)


def test_the_fuzzer_sees_every_route(fuzz: Fuzz):
    operations = {(op.method.upper(), op.path.removeprefix(PREFIX))
                  for op in (result.ok() for result in fuzz.schema.get_all_operations())}
    assert operations == set(OPERATIONS)


def fuzz_case(key: str, method: str, path: str) -> Any:
    reason = KNOWN.get((key, method, path))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(key, method, path, marks=marks, id=f"{key}-{method} {path}")


@pytest.mark.parametrize(("key", "method", "path"),
                         [fuzz_case(key, method, path)
                          for key in ("admin", "karlsruhe") for method, path in OPERATIONS])
def test_no_request_gets_a_5xx_or_an_undocumented_answer(fuzz: Fuzz, key: str, method: str, path: str):
    operation = fuzz.schema[PREFIX + path][method]
    drawn = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    def on_real_objects(case: Any, real: bool) -> Any:
        if real and case.path_parameters:
            case.path_parameters = {name: fuzz.ids.get(name, value) for name, value in case.path_parameters.items()}
        return case

    cases = st.tuples(drawn, st.booleans()).map(lambda pair: on_real_objects(*pair))
    auth = {"Authorization": f"Bearer {fuzz.keys[key]}"}

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def run(case: Any) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    run()
