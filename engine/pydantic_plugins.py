"""pydantic's plugin loader, skipped when plugins are disabled (issue 15: cold start).

pydantic imports `pydantic.plugin._loader` on the first model it builds, and that module imports
`importlib.metadata` (with email, socket, zipfile, csv: ~95 M instructions, about 5 % of a cold
`screen`) even when `PYDANTIC_DISABLE_PLUGINS` says no plugin is wanted and `get_plugins()` then
returns nothing without reading any metadata. `skip_plugin_loader()` puts a stand-in module in its
place whose `get_plugins()` returns the same nothing while plugins are disabled, and otherwise
imports the real loader and defers to it: the plugins pydantic uses are the same either way.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

LOADER = "pydantic.plugin._loader"
DISABLED = ("__all__", "1", "true")   # the values for which pydantic's get_plugins() returns ()


def _get_plugins() -> Any:
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in DISABLED:
        return ()
    if sys.modules.get(LOADER) is _STAND_IN:   # plugins enabled since: the real loader decides
        del sys.modules[LOADER]
    return importlib.import_module(LOADER).get_plugins()


_STAND_IN = types.ModuleType(LOADER, "Stand-in for pydantic's plugin loader while plugins are "
                                     "disabled (engine/pydantic_plugins.py).")
_STAND_IN.get_plugins = _get_plugins  # type: ignore[attr-defined]


def skip_plugin_loader() -> None:
    """Install the stand-in, when plugins are disabled and pydantic's loader is not imported yet."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in DISABLED and LOADER not in sys.modules:
        sys.modules[LOADER] = _STAND_IN
