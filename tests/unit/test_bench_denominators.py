"""The pipeline bench's denominators (bench/pipeline.py) run: a few samples of each one measured in process. The
bench is run by hand, not in CI, so a mistake in it would otherwise show only when someone needs the figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pipeline.py"


@pytest.fixture(scope="module")
def pipeline():
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encoding_and_search_denominators_give_figures(pipeline):
    encode = pipeline.encode_one(3)
    search = pipeline.search_one(50, 3)
    for figures in (encode, search):
        assert figures["n"] == 3 and 0 < figures["p50_ms"] <= figures["p99_ms"], figures
