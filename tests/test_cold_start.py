"""What keeps a cold command cheap (issue 15 item 2; docs/performance.md section 2, session 4):
pydantic's plugin loader is not imported while plugins are disabled, and the model modules on the
screen / marrow path do not defer their annotations to strings that pydantic must compile."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from engine import pydantic_plugins

MODEL_MODULES = sorted((ROOT / "engine" / "record").glob("*.py")) + [
    ROOT / "engine" / p for p in ("rules/model.py", "rules/protocol.py", "audit/record.py", "audit/store.py",
                                  "adjudicate/screening.py", "report/screening.py")]


def test_model_modules_evaluate_their_annotations_when_defined():
    deferred = [str(p.relative_to(ROOT)) for p in MODEL_MODULES if "from __future__ import annotations" in p.read_text()]
    assert deferred == []


def test_a_screen_does_not_import_the_package_metadata_reader():
    code = ("import sys, cli, engine.adjudicate.screening, engine.report.screening, engine.rules.protocol\n"
            "print(sorted(m for m in sys.modules if m.startswith(('importlib.metadata', 'email'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_stand_in_finds_no_plugins_while_disabled_and_defers_otherwise(monkeypatch):
    monkeypatch.delitem(sys.modules, pydantic_plugins.LOADER, raising=False)
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")
    pydantic_plugins.skip_plugin_loader()
    assert sys.modules[pydantic_plugins.LOADER] is pydantic_plugins._STAND_IN
    from pydantic.plugin._loader import get_plugins
    assert tuple(get_plugins()) == ()
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "")   # plugins wanted: pydantic's own loader decides
    assert list(get_plugins()) == []                       # (none installed here) ...
    assert sys.modules[pydantic_plugins.LOADER] is not pydantic_plugins._STAND_IN   # ... read by the real one
    assert hasattr(sys.modules[pydantic_plugins.LOADER], "entry_points")
