"""Safe YAML reading, one parse: the node tree (for line numbers) and the data built from it.

This is `yaml.safe_load` (parse to nodes, then the *safe* constructor builds plain dicts, lists,
strings, numbers and dates: no tags, no objects, no code), with libyaml's C parser when PyYAML
has it (about 10x faster), the node tree kept for error messages, and the limits an untrusted
file needs before anything is built from it:

- a duplicate key is refused (YAML keeps the last silently: a second `when:` would replace
  the first);
- aliases are bounded: a recursive alias is refused, and so is a document whose aliases expand
  to more than MAX_NODES nodes (a 1 KB "billion laughs" file otherwise expands to gigabytes);
- nesting deeper than MAX_DEPTH is refused (the constructor recurses);
- a scalar that cannot be built (`2021-02-30`, month 13, hour 25, `!!int 'abc'`) is refused
  with its line instead of escaping as a Python ValueError;
- numbers that cannot be data are refused: `.nan`, `.inf`, integers of more than MAX_DIGITS
  digits (Python refuses 4,300-digit conversions with a ValueError);
- only the plain YAML types: `!!set`, `!!binary`, `!!omap`, `!!pairs` are refused.

Every refusal is a `YAMLLimitError` (a yaml.MarkedYAMLError) carrying the line and, where there is
one, the dotted key path, so callers report file:line:key as they do for any malformed YAML.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_NODES = 1_000_000     # expanded nodes (aliases counted each time they are used)
MAX_DEPTH = 100           # nesting of mappings and sequences
MAX_DIGITS = 30           # digits of an integer (no clinical quantity or threshold has more)

_REFUSED_TAGS = {"tag:yaml.org,2002:set", "tag:yaml.org,2002:binary", "tag:yaml.org,2002:omap",
                 "tag:yaml.org,2002:pairs"}


class YAMLLimitError(yaml.MarkedYAMLError):
    """A document refused by one of the limits above; `key` is the dotted path when known."""

    def __init__(self, problem: str, mark: Any, key: str | None = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.key = key


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, whose constructors refuse (with the node's line) what cannot be data."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            what = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            raise YAMLLimitError(f"cannot read {str(what)[:40]!r} as {_tag_name(node.tag)}: "
                                 f"{_reason(exc)}", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_DIGITS:
            raise YAMLLimitError(f"an integer of {digits} digits cannot be data "
                                 f"(at most {MAX_DIGITS})", node.start_mark)
        return SafeConstructor.construct_yaml_int(self, node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = SafeConstructor.construct_yaml_float(self, node)
        if value != value or value in (float("inf"), float("-inf")):
            raise YAMLLimitError(f"{node.value!r} is not a finite number", node.start_mark)
        return value

    def construct_undefined_or_refused(self, node: yaml.Node) -> Any:
        raise YAMLLimitError(f"the tag {node.tag} is not allowed here (plain mappings, lists, "
                             "text, numbers, booleans and dates only)", node.start_mark)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
for _tag in _REFUSED_TAGS:
    _Loader.add_constructor(_tag, _Loader.construct_undefined_or_refused)


def _tag_name(tag: str) -> str:
    return {"tag:yaml.org,2002:timestamp": "a date", "tag:yaml.org,2002:int": "an integer",
            "tag:yaml.org,2002:float": "a number", "tag:yaml.org,2002:bool": "true/false"
            }.get(tag, tag.rsplit(":", 1)[-1])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AttributeError):  # !!timestamp 'x': the regex did not match
        return "not in the form YYYY-MM-DD"
    return str(exc) or type(exc).__name__


def check_nodes(root: yaml.Node | None, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse duplicate keys, recursive aliases, alias expansion past `max_nodes` and nesting past
    `max_depth`, before anything is constructed. Iterative (no recursion on hostile input);
    an alias is the same node object reached twice, so its expanded size is memoised."""
    if root is None:
        return
    size: dict[int, int] = {}
    on_path: set[int] = set()
    # (node, depth, key path, state): state 0 = enter, 1 = leave
    stack: list[tuple[yaml.Node, int, tuple, int]] = [(root, 0, (), 0)]
    while stack:
        node, depth, path, state = stack.pop()
        nid = id(node)
        if state == 1:
            on_path.discard(nid)
            children = _children(node)
            total = 1 + sum(size[id(c)] for c in children)
            if total > max_nodes:
                raise YAMLLimitError(f"the document expands to more than {max_nodes:,} values "
                                     "(aliases used too often)", node.start_mark, _dotted(path))
            size[nid] = total
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise YAMLLimitError("a recursive alias (a node that contains itself)", node.start_mark,
                                 _dotted(path))
        if depth > max_depth:
            raise YAMLLimitError(f"nested deeper than {max_depth} levels", node.start_mark, _dotted(path))
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, path)
        on_path.add(nid)
        stack.append((node, depth, path, 1))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else "?"
                stack.append((k, depth + 1, path, 0))
                stack.append((v, depth + 1, path + (key,), 0))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                stack.append((v, depth + 1, path + (i,), 0))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_unique_keys(node: yaml.MappingNode, path: tuple) -> None:
    seen: set[Any] = set()
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode):
            continue
        if k.value == "<<" and k.tag == "tag:yaml.org,2002:merge":
            continue
        if k.value in seen:
            raise YAMLLimitError(f"duplicate key {k.value!r} (YAML would silently keep only the last)",
                                 k.start_mark, _dotted(path + (k.value,)))
        seen.add(k.value)


def _dotted(path: tuple) -> str | None:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def safe_load_with_node(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, root node). Raises yaml.YAMLError (YAMLLimitError for the limits above) on
    malformed or refused input."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        check_nodes(node)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, node


def error_location(exc: yaml.YAMLError) -> tuple[int | None, int | None, str, str | None]:
    """(line, column, problem, key) of a YAML error, for one-line messages."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ((mark.line + 1) if mark else None, (mark.column + 1) if mark else None, problem,
            getattr(exc, "key", None))
