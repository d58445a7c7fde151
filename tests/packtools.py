"""Helpers for tests that build small packs in a temporary folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.rules.load import load_pack

BASE = {"version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "test"}


def write_pack(root: Path, pack_id: str, body: dict[str, Any], tests: list | None = None) -> Path:
    folder = root / pack_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.yaml").write_text(yaml.safe_dump({"id": pack_id, **BASE, **body}, sort_keys=False))
    if tests is not None:
        (folder / "tests.yaml").write_text(yaml.safe_dump({"tests": tests}, sort_keys=False))
    return folder


def make_pack(root: Path, pack_id: str, body: dict[str, Any]):
    return load_pack(write_pack(root, pack_id, body))


def rule(rid: str, when: Any, **kw: Any) -> dict[str, Any]:
    return {"id": rid, "title": rid, "source": {"citation": "test", "text": "test"}, "when": when, **kw}
