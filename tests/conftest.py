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


@pytest.fixture(autouse=True)
def adjudicator_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keys, keyring and checkpoints of each test in a fresh folder (never the user's ~/.config).
    A reviewer without a key gets one on first use, registered in the test keyring, so tests
    that record overrides need no key setup (tests of the refusal remove this with
    `monkeypatch.setattr(keys, "reviewer_signer", keys.reviewer_signer.__wrapped__)`)."""
    from engine.audit import keys
    home = tmp_path_factory.mktemp("adjudicator-home")
    for var in ("ADJUDICATOR_KEYRING", "ADJUDICATOR_CHECKPOINT_KEY", "ADJUDICATOR_CHECKPOINT_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADJUDICATOR_HOME", str(home))
    original = keys.reviewer_signer

    def signer_made_on_first_use(reviewer: str, key_path=None):  # noqa: ANN001, ANN202
        if key_path is None and not keys.default_key_path(reviewer).exists():
            keys.new_key(reviewer, "reviewer")
        return original(reviewer, key_path)

    signer_made_on_first_use.__wrapped__ = original  # type: ignore[attr-defined]
    monkeypatch.setattr(keys, "reviewer_signer", signer_made_on_first_use)
    return home


# --- audit stores: the same tests over SQLite and a real PostgreSQL server (tests/storetools.py)
_PG = None


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A running PostgreSQL server's URL; skipped loudly when none can start, failed in CI."""
    import os

    import storetools
    global _PG
    if _PG is None:
        _PG = storetools.PgServer()
        _PG.start()
    if _PG.url is None:
        message = f"PostgreSQL store tests NOT RUN: no server could start ({_PG.error})"
        if os.environ.get("ADJUDICATOR_REQUIRE_PG"):
            pytest.fail(message)
        pytest.skip(message)
    return _PG.url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _PG is not None:
        _PG.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path):
    """An audit store location: a SQLite file path, or a PostgreSQL URL with a fresh schema."""
    if request.param == "sqlite":
        yield tmp_path / "audit.sqlite"
        return
    import storetools
    server = request.getfixturevalue("pg_url")
    url, schema = storetools.new_schema(server)
    yield url
    storetools.drop_schema(server, schema)
