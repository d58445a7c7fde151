"""Shared fixtures: the repository's rule registry, both evaluators, a fresh audit store."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.reference import ReferenceEvaluator
from engine.rules.load import load_registry

ROOT = Path(__file__).resolve().parents[1]

# The registry cache (engine/rules/cache.py) of this test run: private to it (and to the commands
# it starts), removed at the end, never the user's own.
_CACHE = tempfile.mkdtemp(prefix="adjudicator-test-cache-")
os.environ.setdefault("ADJUDICATOR_CACHE", _CACHE)
atexit.register(shutil.rmtree, _CACHE, True)


@pytest.fixture(scope="session")
def registry():
    return load_registry(ROOT / "rules")


@pytest.fixture(params=["durable", "reference"])
def evaluator(request):
    return DurableEvaluator() if request.param == "durable" else ReferenceEvaluator()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.sqlite"
