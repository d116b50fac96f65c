"""The code's shape, held in CI: style and complexity (ruff), the layers (import-linter), short functions, and the
same rooms in every service (docs/architecture.md: domain, usecases, repository, schemas, handlers, api, bootstrap)."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PRODUCTION = ["services", "gateway", "ideas-service/ideas", "matching-service/matching", "notify-service/notify",
              "twincity"]
LONGEST = 60  # lines a production function may have
ROOMS = ("domain", "usecases", "repository", "schemas", "handlers", "api", "bootstrap")


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed in this virtualenv: scripts/test installs the test extras")
    return found


def test_ruff_finds_nothing_complexity_included():
    done = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_the_layers_hold():
    """Services never import each other; only the kernel imports kombu, pika, pymongo, mongomock; the kernel
    imports no service (pyproject.toml, [tool.importlinter])."""
    done = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_no_production_function_is_longer_than_sixty_lines():
    long = []
    for root in PRODUCTION:
        for path in sorted((ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > LONGEST:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("service", ["ideas", "matching", "notify"])
def test_every_service_has_the_same_rooms(service: str):
    for room in ROOMS:
        importlib.import_module(f"{service}.{room}")
    handlers = importlib.import_module(f"{service}.handlers")
    bootstrap = importlib.import_module(f"{service}.bootstrap")
    assert isinstance(handlers.EVENT_HANDLERS, dict) and handlers.EVENT_HANDLERS, "a static table of handlers"
    assert tuple(bootstrap.SPEC.event_types) == tuple(sorted(handlers.EVENT_HANDLERS))
    assert all(callable(getattr(bootstrap, name)) for name in ("bootstrap", "create_app", "run_worker"))


def test_the_gateway_has_its_rooms_too():
    """The gateway owns cities, partnerships, keys and sign-in (no events to handle): the same rooms but handlers,
    and its use cases (sign-in included) in one file."""
    for room in ("domain", "usecases", "repository", "schemas", "api", "bootstrap"):
        importlib.import_module(f"gateway.{room}")
    usecases = importlib.import_module("gateway.usecases")
    for name in ("add_city", "add_partnership", "add_key", "revoke_key", "rotate_key", "request_sign_in",
                 "sign_in_with_link", "sign_in_coordinator", "sign_out"):
        assert callable(getattr(usecases, name)), name
    assert callable(importlib.import_module("gateway.bootstrap").create_app)
