"""Safe YAML reading, one parse: the node tree (for line numbers) and the data built from it.

This is exactly what `yaml.safe_load` does (parse to nodes, then the *safe* constructor builds
plain dicts, lists, strings, numbers and dates: no tags, no objects, no code), except that the
node tree is kept for error messages, and libyaml's C parser is used when PyYAML has it
(about 10x faster than the pure-Python one; same safe constructor).
"""
from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load_with_node(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, root node). Raises yaml.YAMLError on malformed input."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, node
