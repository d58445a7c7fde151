"""Reading subject files (YAML or JSON) and subject tables (JSON Lines) into `SubjectRecord`,
with one-line errors.

Every failure is an `InputError` naming the file (with the line when known), the subject, the
dotted field (e.g. `on_study.assessments[1].marrow.blasts_pct`) and the expectation. A table
(`.jsonl`/`.ndjson`) holds one subject JSON object per non-blank line, for bulk runs where a
folder of a million files is impractical; its subjects are named `<table>:<line>`.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from engine.yamlio import safe_load_with_node
from pydantic import ValidationError

from engine.errors import InputError
from engine.record.base import FieldError
from engine.record.history import HISTORY_TYPES
from engine.record.subject import SubjectRecord

SUFFIXES = (".yaml", ".yml", ".json")
TABLE_SUFFIXES = (".jsonl", ".ndjson")


def load_subject(path: str | Path) -> SubjectRecord:
    """Read and validate one subject file; raise InputError on any bad input."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        return parse_subject_json(text, str(path))
    data, node = _parse_yaml(text, path)
    return _validate(data, str(path), node)


def parse_subject_json(text: str, origin: str, *, one_line: bool = False) -> SubjectRecord:
    """Validate one subject from JSON text; errors name `origin` (a .json file, or a table line
    `cohort.jsonl:17`). one_line: the text is one table line, so `origin` already names the line
    and a syntax error adds only its column (a file's syntax error adds its line)."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        if one_line:
            raise InputError(f"malformed JSON: {exc.msg} at column {exc.colno}", file=origin) from None
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}", file=f"{origin}:{exc.lineno}") from None
    except _DuplicateKey as exc:
        raise InputError(f"duplicate key {exc.key!r}", file=origin, field=exc.key,
                         expected="each key once") from None
    return _validate(data, origin, None)


def is_table(path: str | Path) -> bool:
    """A subject table (JSON Lines) by its suffix."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def iter_table(path: str | Path) -> Iterator[tuple[int, str | InputError]]:
    """(line number, text) of every non-blank line of a table, streamed (the table is never read
    whole). A line that is not UTF-8 comes as an InputError naming `table:line` instead of its
    text, so that a caller reports it and goes on; a table that cannot be opened raises."""
    for number, raw in _table_lines(path):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})",
                                     file=f"{path}:{number}", expected="a UTF-8 JSON Lines file")


def count_table(path: str | Path) -> int:
    """The number of subjects (non-blank lines) of a table: one streaming pass, no decoding."""
    return sum(1 for _ in _table_lines(path))


def _table_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(1-based physical line number, stripped bytes) of the non-blank lines."""
    path = Path(path)
    if not is_table(path):
        raise InputError(f"unsupported table type {path.suffix or '(none)'!r}", file=str(path),
                         expected="a .jsonl or .ndjson file")
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    with fh:
        for number, raw in enumerate(fh, 1):
            raw = raw.strip()
            if raw:
                yield number, raw


def _validate(data: Any, origin: str, node: Any) -> SubjectRecord:
    if not isinstance(data, dict):
        raise InputError(f"the file holds a {type(data).__name__}, not a mapping",
                         file=origin, expected="one subject as a mapping of fields")
    subject = data.get("subject_id") if isinstance(data.get("subject_id"), str) else None
    try:
        return SubjectRecord.model_validate(data)
    except ValidationError as exc:
        raise _to_input_error(exc, origin, subject, node) from None


def load_subjects(folder: str | Path) -> Iterator[tuple[Path, SubjectRecord | InputError]]:
    """Every subject file in a folder (not recursive, sorted by name): (path, record or error).

    A subject_id already seen in an earlier file is reported as an error for the later file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", file=str(folder), expected="a folder of subject files")
    seen: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
        try:
            record = load_subject(path)
        except InputError as exc:
            yield path, exc
            continue
        if record.subject_id in seen:
            yield path, InputError(f"subject_id also used by {seen[record.subject_id]}",
                                   file=str(path), subject=record.subject_id,
                                   field="subject_id", expected="one file per subject")
            continue
        seen[record.subject_id] = path
        yield path, record


def field_source(path: str | Path, dotted_field: str) -> str:
    """Provenance of a value: `<file>#<dotted field>`, e.g. `S001.yaml#screening.labs.bilirubin`."""
    return f"{_posix(str(path))}#{dotted_field}"


@functools.lru_cache(maxsize=256)
def _posix(path: str) -> str:  # called once per fact: cache the path conversion
    return Path(path).as_posix()


# --- reading -----------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"unsupported file type {suffix or '(none)'!r}", file=str(path),
                         expected="a .yaml, .yml or .json file")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read file: {exc}", file=str(path),
                         expected="a UTF-8 text file") from None


def _parse_yaml(text: str, path: Path) -> tuple[Any, Any]:
    """The parsed data and its node tree (for line numbers of errors)."""
    try:
        data, node = safe_load_with_node(text)  # one parse: nodes for lines, safe data
        _check_duplicate_keys(node, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" at line {line} column {mark.column + 1}" if mark else ""
        raise InputError(f"malformed YAML: {problem}{where}",
                         file=f"{path}:{line}" if line else str(path)) from None
    return data, node


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _check_duplicate_keys(node: Any, path: Path) -> None:
    """YAML silently keeps the last of two equal keys: refuse them instead."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                raise InputError(f"duplicate key {key.value!r}", file=f"{path}:{key.start_mark.line + 1}",
                                 field=str(key.value), expected="each key once")
            seen.add(key.value)
            _check_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, path)


# --- errors ------------------------------------------------------------------------------

def _to_input_error(exc: ValidationError, origin: str, subject: str | None,
                    node: Any) -> InputError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = _clean_loc(first["loc"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = loc + ("type",)
    cause = (first.get("ctx") or {}).get("error")
    expected = None
    if isinstance(cause, FieldError):
        message, expected = cause.message, cause.expected
        if cause.field:
            loc = loc + tuple(_split_dotted(cause.field))
    elif first["type"] == "missing":
        message = "required field is missing"
    else:
        message = first["msg"].removeprefix("Value error, ").replace("valid decimal",
                                                                      "valid number")
        value = first.get("input")
        if not isinstance(value, (dict, list)) and first["type"] != "extra_forbidden":
            message += f" (got {value!r})"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    line = _line_of(node, loc)
    file = f"{origin}:{line}" if line else origin
    return InputError(message, file=file, subject=subject, field=_dotted(loc) or None,
                      expected=expected)


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the discriminator tag pydantic inserts after a history index."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if (isinstance(part, str) and part in HISTORY_TYPES and i >= 2
                and isinstance(loc[i - 1], int) and loc[i - 2] == "treatment_history"):
            continue
        out.append(part)
    return tuple(out)


def _split_dotted(dotted: str) -> list[Any]:
    parts: list[Any] = []
    for piece in dotted.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.lstrip("[")
    return parts


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node on the path of `loc` (None for JSON)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
